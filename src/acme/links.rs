//! Every URL idca emits, built from the configured public URL (smallstep's Linker).

use crate::model::{AccountId, AuthzId, ChallengeId, OrderId, Serial};

/// Paths of the ACME resources, relative to the public URL.
pub mod paths {
    pub const DIRECTORY: &str = "/directory";
    pub const NEW_NONCE: &str = "/acme/new-nonce";
    pub const NEW_ACCOUNT: &str = "/acme/new-account";
    pub const NEW_ORDER: &str = "/acme/new-order";
    pub const REVOKE_CERT: &str = "/acme/revoke-cert";
    pub const KEY_CHANGE: &str = "/acme/key-change";
    pub const RENEWAL_INFO: &str = "/acme/renewal-info";
    pub const CRL: &str = "/crl";
    pub const ACCOUNT: &str = "/acme/acct/";
    pub const ORDER: &str = "/acme/order/";
    pub const AUTHZ: &str = "/acme/authz/";
    pub const CHALLENGE: &str = "/acme/chall/";
    pub const CERT: &str = "/acme/cert/";
}

/// Builds absolute URLs under one base.
#[derive(Debug, Clone)]
pub struct Links {
    base: String,
}

impl Links {
    /// `base` is the public URL without a trailing slash.
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn directory(&self) -> String {
        self.url(paths::DIRECTORY)
    }

    pub fn account(&self, id: &AccountId) -> String {
        format!("{}{}{id}", self.base, paths::ACCOUNT)
    }

    pub fn account_orders(&self, id: &AccountId) -> String {
        format!("{}{}{id}/orders", self.base, paths::ACCOUNT)
    }

    pub fn order(&self, id: &OrderId) -> String {
        format!("{}{}{id}", self.base, paths::ORDER)
    }

    pub fn finalize(&self, id: &OrderId) -> String {
        format!("{}{}{id}/finalize", self.base, paths::ORDER)
    }

    pub fn authz(&self, id: &AuthzId) -> String {
        format!("{}{}{id}", self.base, paths::AUTHZ)
    }

    pub fn challenge(&self, authz: &AuthzId, id: &ChallengeId) -> String {
        format!("{}{}{authz}/{id}", self.base, paths::CHALLENGE)
    }

    pub fn certificate(&self, serial: &Serial) -> String {
        format!("{}{}{serial}", self.base, paths::CERT)
    }

    /// Chain `n` of a certificate: its URL for 0, `{URL}/alternate/{n}` for the others.
    pub fn certificate_chain(&self, serial: &Serial, n: usize) -> String {
        match n {
            0 => self.certificate(serial),
            n => format!("{}/alternate/{n}", self.certificate(serial)),
        }
    }

    /// The account id named by a JWS `kid`, if the kid is one of our account URLs.
    pub fn account_id_from_kid(&self, kid: &str) -> Option<AccountId> {
        let id = kid.strip_prefix(&self.base)?.strip_prefix(paths::ACCOUNT)?;
        let valid =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| AccountId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_round_trips_and_foreign_kids_are_refused() {
        let l = Links::new("https://localhost:14000");
        let id = AccountId("abc_DEF-1".into());
        assert_eq!(l.account_id_from_kid(&l.account(&id)), Some(id));
        assert_eq!(l.account_id_from_kid("https://evil.example/acme/acct/abc"), None);
        assert_eq!(l.account_id_from_kid("https://localhost:14000/acme/acct/a/../b"), None);
    }
}
