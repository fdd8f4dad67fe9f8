//! Domain records, held by value, with no I/O.

pub mod acme;
pub mod ids;
pub mod names;
pub mod oauth;
pub mod pki;

pub use acme::*;
pub use ids::*;
pub use names::check_dns_name;
pub use pki::*;
