//! idca: an embedded ACME certificate authority (RFC 8555) with a built-in OAuth 2.0 /
//! OpenID Connect authorization server and DPoP (RFC 9449), in one process.
//!
//! The protocol cores (`jose`, `ca`, `acme`, `validate`) are plain Rust over typed inputs
//! and a [`store::Store`]; only `http` knows actix-web, only `store`'s backends know sled
//! and PostgreSQL.
//! `app` wires them together.
//!
//! What idca is not: a public CA. Its root key lives in the data directory next to
//! everything else; it is meant for tests, CI and local development PKIs.

#![forbid(unsafe_code)]

pub mod acme;
pub mod app;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dpop;
pub mod files;
pub mod http;
pub mod jose;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod password;
pub mod pebble;
pub mod store;
mod tls_verify;
pub mod validate;

/// Installs ring as rustls' process-wide crypto provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // An `Err` means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
