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

/// A certificate, DER (base64url in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Der(#[serde(with = "b64")] pub Vec<u8>);

/// One path from the issuing intermediate's key to a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerChain {
    /// From the certificate of the issuing intermediate's key (its name, its key) up to
    /// the one the root signed: what follows the leaf in a download.
    pub intermediates: Vec<Der>,
    /// The self-signed root the path ends at (not sent in downloads).
    pub root: Der,
}

/// The issuance chains built for one intermediate (Pebble's `PEBBLE_CHAIN_LENGTH` and
/// `PEBBLE_ALTERNATE_ROOTS`): chain 0 is the default download, each further one ends at
/// an alternate root and is offered with `Link: rel="alternate"` (RFC 8555 §7.4.2).
/// Certificates only: the keys of extra intermediates and alternate roots are dropped
/// once they have signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaChains {
    /// The issuing intermediate these chains certify (DER), so a rotation is noticed.
    #[serde(with = "b64")]
    pub intermediate_cert: Vec<u8>,
    /// Intermediates per chain, the issuing one included.
    pub chain_length: u32,
    pub chains: Vec<IssuerChain>,
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
    /// A renewal-information body set through the management API (Pebble's
    /// `/set-renewal-info/`), served verbatim instead of the computed window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_info: Option<String>,
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
        Self {
            serial,
            account,
            order,
            chain_pem,
            not_before,
            not_after,
            issued,
            revoked: None,
            replaced_by: None,
            renewal_info: None,
        }
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
