//! Everything a store holds, as records: what `idca db copy` moves from one backend to
//! another, and compares afterwards to verify the copy.

use crate::model::oauth::{
    AuthorizationCode, Device, DeviceAuthorization, Grant, OAuthKey, PendingAuthorization, RefreshToken,
    RegisteredClient, SecretHash, Session,
};
use crate::model::{Account, Authorization, CaChains, CaMaterial, IssuedCertificate, Order};

use super::Versioned;

/// A store's whole content; each list sorted by its key, so two snapshots of the same
/// content are equal.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub ca: Option<CaMaterial>,
    pub retired_ca: Vec<CaMaterial>,
    pub ca_chains: Option<CaChains>,
    pub dpop_nonce_secret: Option<Vec<u8>>,
    pub accounts: Vec<Versioned<Account>>,
    pub orders: Vec<Versioned<Order>>,
    pub authorizations: Vec<Versioned<Authorization>>,
    pub certificates: Vec<Versioned<IssuedCertificate>>,
    pub oauth_keys: Vec<OAuthKey>,
    pub pending: Vec<(String, PendingAuthorization)>,
    pub sessions: Vec<(SecretHash, Session)>,
    pub codes: Vec<(SecretHash, AuthorizationCode)>,
    pub grants: Vec<Versioned<Grant>>,
    pub refresh_tokens: Vec<(SecretHash, Versioned<RefreshToken>)>,
    pub device_authorizations: Vec<(SecretHash, Versioned<DeviceAuthorization>)>,
    pub clients: Vec<Versioned<RegisteredClient>>,
    pub devices: Vec<Device>,
    /// (device id, nonce, expires).
    pub device_nonces: Vec<(String, String, i64)>,
    /// (DPoP replay key, expires).
    pub dpop_jti: Vec<(String, i64)>,
}

impl Snapshot {
    /// Sorts every list by its key (the order both backends are compared in).
    pub fn sorted(mut self) -> Self {
        self.accounts.sort_by(|a, b| a.value.id.0.cmp(&b.value.id.0));
        self.orders.sort_by(|a, b| a.value.id.0.cmp(&b.value.id.0));
        self.authorizations.sort_by(|a, b| a.value.id.0.cmp(&b.value.id.0));
        self.certificates.sort_by(|a, b| a.value.serial.0.cmp(&b.value.serial.0));
        self.oauth_keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        self.pending.sort_by(|a, b| a.0.cmp(&b.0));
        self.sessions.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        self.codes.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        self.grants.sort_by(|a, b| a.value.id.cmp(&b.value.id));
        self.refresh_tokens.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        self.device_authorizations.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        self.clients.sort_by(|a, b| a.value.client_id.cmp(&b.value.client_id));
        self.devices.sort_by(|a, b| a.id.cmp(&b.id));
        self.device_nonces.sort();
        self.dpop_jti.sort();
        self
    }

    /// How many records of each kind, for the copy's report.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("CA", usize::from(self.ca.is_some())),
            ("retired CAs", self.retired_ca.len()),
            ("accounts", self.accounts.len()),
            ("orders", self.orders.len()),
            ("authorizations", self.authorizations.len()),
            ("certificates", self.certificates.len()),
            ("OAuth signing keys", self.oauth_keys.len()),
            ("registered clients", self.clients.len()),
            ("grants", self.grants.len()),
            ("refresh tokens", self.refresh_tokens.len()),
            ("authorization codes", self.codes.len()),
            ("sessions", self.sessions.len()),
            ("pending authorizations", self.pending.len()),
            ("device authorizations", self.device_authorizations.len()),
            ("devices", self.devices.len()),
            ("device nonces", self.device_nonces.len()),
            ("DPoP replay keys", self.dpop_jti.len()),
        ]
    }
}
