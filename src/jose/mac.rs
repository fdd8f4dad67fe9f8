//! MAC-protected flattened JWS (RFC 7515 with RFC 7518 §3.2 HMAC), used only for ACME
//! external account binding (RFC 8555 §7.3.4), where the key is a shared secret.

use serde::Deserialize;

use super::json::JsonDepth;
use super::{JoseError, b64_decode};

/// The HMAC algorithms RFC 8555 §7.3.4 allows for the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlgorithm {
    HS256,
    HS384,
    HS512,
}

/// A parsed MAC JWS whose tag has not been checked yet.
#[derive(Debug)]
pub struct MacJws {
    pub alg: MacAlgorithm,
    pub kid: Option<String>,
    pub url: Option<String>,
    /// Whether the header carried a `nonce` (RFC 8555 §7.3.4 forbids it).
    pub has_nonce: bool,
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    tag: Vec<u8>,
}

#[derive(Deserialize)]
struct Raw {
    protected: String,
    payload: String,
    signature: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    url: Option<String>,
    nonce: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

impl MacJws {
    /// Parses a flattened JWS object (as a JSON value) protected by an HMAC.
    pub fn parse(value: &serde_json::Value, depth: JsonDepth) -> Result<Self, JoseError> {
        let raw: Raw = serde_json::from_value(value.clone()).map_err(|e| JoseError::Malformed(e.to_string()))?;
        let header: Header = super::json::from_slice(&b64_decode(&raw.protected)?, depth).map_err(JoseError::Header)?;
        if header.crit.is_some() {
            return Err(JoseError::UnsupportedCrit);
        }
        let alg = match header.alg.as_str() {
            "HS256" => MacAlgorithm::HS256,
            "HS384" => MacAlgorithm::HS384,
            "HS512" => MacAlgorithm::HS512,
            other => return Err(JoseError::UnsupportedAlgorithm(other.chars().take(32).collect())),
        };
        Ok(Self {
            alg,
            kid: header.kid,
            url: header.url,
            has_nonce: header.nonce.is_some(),
            payload: b64_decode(&raw.payload)?,
            signing_input: format!("{}.{}", raw.protected, raw.payload).into_bytes(),
            tag: b64_decode(&raw.signature)?,
        })
    }

    /// Checks the tag with `key`, in constant time.
    pub fn verify(&self, key: &[u8]) -> Result<(), JoseError> {
        let alg = match self.alg {
            MacAlgorithm::HS256 => ring::hmac::HMAC_SHA256,
            MacAlgorithm::HS384 => ring::hmac::HMAC_SHA384,
            MacAlgorithm::HS512 => ring::hmac::HMAC_SHA512,
        };
        ring::hmac::verify(&ring::hmac::Key::new(alg, key), &self.signing_input, &self.tag)
            .map_err(|_| JoseError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64_encode;
    use serde_json::json;

    fn mac(alg: &str, key: &[u8], header: serde_json::Value, payload: &[u8]) -> serde_json::Value {
        let mut h = header;
        h["alg"] = json!(alg);
        let p = b64_encode(h.to_string());
        let pl = b64_encode(payload);
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        let tag = ring::hmac::sign(&k, format!("{p}.{pl}").as_bytes());
        json!({"protected": p, "payload": pl, "signature": b64_encode(tag.as_ref())})
    }

    #[test]
    fn verifies_hs256_and_rejects_a_wrong_key() {
        let jws = mac("HS256", b"secret", json!({"kid":"k1","url":"u"}), b"{}");
        let parsed = MacJws::parse(&jws, JsonDepth::default()).unwrap();
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        parsed.verify(b"secret").unwrap();
        assert_eq!(parsed.verify(b"other"), Err(JoseError::BadSignature));
    }

    #[test]
    fn rejects_asymmetric_and_none_algorithms() {
        for alg in ["ES256", "none", "RS256"] {
            let jws = mac(alg, b"k", json!({"kid":"k1"}), b"{}");
            assert!(
                matches!(MacJws::parse(&jws, JsonDepth::default()), Err(JoseError::UnsupportedAlgorithm(_))),
                "{alg}"
            );
        }
    }
}
