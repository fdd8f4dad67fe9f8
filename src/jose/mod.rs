//! JWS and JWK on ring (RFC 7515, 7517, 7518, 7638), and P-521 on RustCrypto's `p521`.
//!
//! This module parses and verifies signatures. It knows nothing of ACME's header rules
//! (`url`, `nonce`, `jwk` xor `kid`: see `acme::request`), of HTTP, or of the store.
//! Accepted algorithms: ES256, ES384, ES512, EdDSA (Ed25519), RS256. Never `none`, never an
//! HMAC algorithm with a public key.

mod compact;
mod error;
pub mod json;
mod jwk;
mod jws;
mod mac;
pub(crate) mod p521;

pub use compact::{CompactHeader, CompactJws, SigningKey, jwk_set};
pub use error::JoseError;
pub use json::JsonDepth;
pub use jwk::{Jkt, Jwk};
pub use jws::{FlattenedJws, ProtectedHeader};
pub use mac::{MacAlgorithm, MacJws};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// A JWS signature algorithm idca accepts (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// ECDSA P-521 with SHA-512 (Wire's cipher suite 5).
    ES512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl Algorithm {
    /// Every accepted algorithm, as named in the `alg` header.
    pub const ALL: [&'static str; 5] = ["ES256", "ES384", "ES512", "EdDSA", "RS256"];

    /// Parses an `alg` header value; `none`, HMAC and anything unknown are refused.
    pub fn parse(alg: &str) -> Result<Self, JoseError> {
        match alg {
            "ES256" => Ok(Self::ES256),
            "ES384" => Ok(Self::ES384),
            "ES512" => Ok(Self::ES512),
            "EdDSA" => Ok(Self::EdDSA),
            "RS256" => Ok(Self::RS256),
            other => Err(JoseError::UnsupportedAlgorithm(other.chars().take(32).collect())),
        }
    }
}

/// Decodes unpadded base64url (RFC 7515 §2), rejecting padding and other alphabets.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| JoseError::Base64)
}

/// Compares two secrets in constant time (for equal lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Encodes as unpadded base64url.
pub fn b64_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_none_and_hmac() {
        for alg in ["none", "HS256", "HS512", "", "es256", "PS256"] {
            assert!(Algorithm::parse(alg).is_err(), "{alg}");
        }
        assert_eq!(Algorithm::parse("EdDSA").unwrap(), Algorithm::EdDSA);
    }

    #[test]
    fn rejects_padded_or_standard_base64() {
        assert!(b64_decode("YQ==").is_err());
        assert!(b64_decode("a+b/").is_err());
        assert_eq!(b64_decode("YQ").unwrap(), b"a");
    }
}
