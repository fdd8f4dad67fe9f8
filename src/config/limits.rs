//! `[limits]`: what one client may send, hold or try.

use serde::Deserialize;

/// `[limits]`: request size limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest JWS request body accepted by ACME endpoints, in bytes.
    pub jose_body_bytes: usize,
    /// Largest form body (OAuth token, login, consent, device, introspection,
    /// revocation), in bytes.
    pub form_body_bytes: usize,
    /// Largest JSON body (client and device registration), in bytes.
    pub json_body_bytes: usize,
    /// Deepest nesting of arrays and objects in the JSON of a JWS (header, payload) or a
    /// token.
    pub json_max_depth: usize,
    /// Milliseconds a client has to send a request's headers (slow clients).
    pub request_header_timeout_ms: u64,
    /// Milliseconds a client has to send a request's body.
    pub request_body_timeout_ms: u64,
    /// Failed client authentications at the token, device, introspection and revocation
    /// endpoints per client id and address, and per address for all client ids, before
    /// a lockout of `token_lockout_secs`.
    pub token_max_failures: u32,
    pub token_max_failures_per_address: u32,
    pub token_lockout_secs: u64,
    /// Failed logins from one address over all user names before a lockout of
    /// `oauth.login_lockout_secs` (per user and address: `oauth.login_max_failures`).
    pub login_max_failures_per_address: u32,
    /// New ACME accounts (RFC 8555 §7.3) per minute from one address (IPv6: its /48, as
    /// Boulder's NewRegistrationsPerIPv6Range), through the store; 0: no limit.
    pub new_accounts_per_minute_per_address: u32,
    /// Dynamic client registrations (RFC 7591) per minute from one address (an IPv6
    /// address counts by its /48, as Boulder counts registrations), counted through the
    /// store; 0: no limit.
    pub registrations_per_minute_per_address: u32,
    /// Device authorization requests (RFC 8628 §3.1) per minute from one address (IPv6:
    /// its /48) and per client, through the store; 0: no limit.
    pub device_authorizations_per_minute_per_address: u32,
    pub device_authorizations_per_minute_per_client: u32,
    /// Login (or consent) pages shown per minute to one address (IPv6: its /48): each
    /// stores the request until the form comes back; 0: no limit.
    pub login_pages_per_minute_per_address: u32,
    /// Devices one user may register (`POST /clients`) and backend nonces one user may
    /// get (`/clients/{cid}/nonce`) per minute; 0: no limit.
    pub device_registrations_per_minute_per_user: u32,
    pub backend_nonces_per_minute_per_user: u32,
    /// Orders that are not yet valid or invalid one account may hold; 0: no limit.
    pub pending_orders_per_account: usize,
    /// Pending authorizations in those orders one account may hold; 0: no limit.
    pub pending_authorizations_per_account: usize,
    /// Challenges waiting for a validation slot (`acme.validation.concurrency`) at once.
    pub queued_validations: usize,
    /// Outstanding ACME nonces remembered (one bit each); older ones are refused.
    pub nonce_window: u64,
    /// With a shared store (PostgreSQL): seconds an ACME nonce stays redeemable.
    pub nonce_lifetime_secs: u64,
    /// Unexpired DPoP proof ids (`jti`) remembered for replay detection at most.
    pub dpop_jti_max: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            jose_body_bytes: 64 * 1024,
            form_body_bytes: 16 * 1024,
            json_body_bytes: 16 * 1024,
            json_max_depth: crate::jose::json::DEFAULT_MAX_DEPTH,
            request_header_timeout_ms: 5_000,
            request_body_timeout_ms: 10_000,
            token_max_failures: 10,
            token_max_failures_per_address: 50,
            new_accounts_per_minute_per_address: 300,
            registrations_per_minute_per_address: 20,
            device_authorizations_per_minute_per_address: 30,
            device_authorizations_per_minute_per_client: 120,
            login_pages_per_minute_per_address: 120,
            device_registrations_per_minute_per_user: 30,
            backend_nonces_per_minute_per_user: 300,
            token_lockout_secs: 300,
            login_max_failures_per_address: 50,
            pending_orders_per_account: 300,
            pending_authorizations_per_account: 1000,
            queued_validations: 1000,
            // 1 Mi outstanding nonces: a 128 KiB bitmap (acme::nonce).
            nonce_window: 1 << 20,
            nonce_lifetime_secs: 300,
            dpop_jti_max: 1_000_000,
        }
    }
}
