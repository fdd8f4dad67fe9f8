//! CA key material and issued certificates.

use serde::{Deserialize, Serialize};

use super::ids::{AccountId, OrderId, Serial};
use crate::clock::UnixTime;

/// The CA's certificates and private keys (PKCS#8 DER). `Debug` never prints keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaMaterial {
    #[serde(with = "b64")]
    pub root_cert: Vec<u8>,
    /// Empty when the root key is kept offline.
    #[serde(with = "b64")]
    pub root_key: Vec<u8>,
    #[serde(with = "b64")]
    pub intermediate_cert: Vec<u8>,
    #[serde(with = "b64")]
    pub intermediate_key: Vec<u8>,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("root_cert_len", &self.root_cert.len())
            .field("intermediate_cert_len", &self.intermediate_cert.len())
            .field("keys", &"[elided]")
            .finish()
    }
}

/// A certificate idca issued, kept byte for byte as it was served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub serial: Serial,
    /// The ACME account that ordered it; `None` for `idca issue`.
    pub account: Option<AccountId>,
    /// The ACME order it finalized; `None` for `idca issue`.
    pub order: Option<OrderId>,
    /// The PEM chain served at the certificate URL: leaf, then intermediate.
    pub chain_pem: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub issued: UnixTime,
    /// Set once the certificate is revoked (RFC 8555 §7.6).
    #[serde(default)]
    pub revoked: Option<Revocation>,
    /// The order that replaces this certificate (RFC 9773 §5), if any.
    #[serde(default)]
    pub replaced_by: Option<OrderId>,
}

impl IssuedCertificate {
    /// A certificate just signed: not revoked, not replaced. `ordered_by` is the ACME
    /// account and order it finalized; `None` for `idca issue`.
    pub fn new(
        serial: Serial,
        chain_pem: String,
        (not_before, not_after): (UnixTime, UnixTime),
        issued: UnixTime,
        ordered_by: Option<(AccountId, OrderId)>,
    ) -> Self {
        let (account, order) = ordered_by.unzip();
        Self { serial, account, order, chain_pem, not_before, not_after, issued, revoked: None, replaced_by: None }
    }

    /// The leaf certificate, DER (the first block of the chain).
    pub fn leaf_der(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let body =
            self.chain_pem.split("-----BEGIN CERTIFICATE-----").nth(1)?.split("-----END CERTIFICATE-----").next()?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// A revocation: when and why (RFC 5280 §5.3.1 reason code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: u8,
    pub at: UnixTime,
}

/// serde helper: bytes as unpadded base64url strings.
pub mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::jose::b64_encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        crate::jose::b64_decode(&s).map_err(serde::de::Error::custom)
    }
}
