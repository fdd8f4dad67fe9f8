//! idca's one integration-test binary: servers on 127.0.0.1 port 0, real clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

mod acme_flows;
mod acme_gated;
mod acme_rejects;
mod certs;
mod chains;
mod challenges;
mod client;
mod client_auth;
mod defences;
mod device;
mod devices;
mod dpop;
mod durability;
mod eab;
mod enrollment;
mod fuzz_seeds;
mod harness;
mod instances;
mod knobs;
mod layering;
mod lifecycle;
mod limits;
mod load;
mod load_balancer;
mod local_pki;
mod oauth;
mod oauth_rejects;
mod oidc_requests;
mod ops;
mod par;
mod pebble_compat;
mod postgres;
mod registration;
mod syscalls;
