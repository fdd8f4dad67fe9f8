//! Flattened JSON JWS serialization (RFC 7515 §7.2.2), the form ACME uses (RFC 8555 §6.2).

use serde::Deserialize;

use super::json::JsonDepth;
use super::{Algorithm, JoseError, Jwk, b64_decode};

/// A parsed flattened JWS whose signature has not been checked yet.
#[derive(Debug)]
pub struct FlattenedJws {
    /// The decoded protected header.
    pub header: ProtectedHeader,
    /// The decoded payload; empty for POST-as-GET (RFC 8555 §6.3).
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// The protected header members ACME uses (RFC 8555 §6.2).
#[derive(Debug, Clone)]
pub struct ProtectedHeader {
    pub alg: Algorithm,
    /// An embedded public key (newAccount, revokeCert by certificate key).
    pub jwk: Option<Jwk>,
    /// An account URL.
    pub kid: Option<String>,
    pub nonce: Option<String>,
    pub url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJws<'a> {
    #[serde(borrow)]
    protected: Option<&'a str>,
    #[serde(borrow)]
    payload: Option<&'a str>,
    #[serde(borrow)]
    signature: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    jwk: Option<serde_json::Value>,
    kid: Option<String>,
    nonce: Option<String>,
    url: Option<String>,
    crit: Option<serde_json::Value>,
    b64: Option<serde_json::Value>,
}

impl FlattenedJws {
    /// Parses a flattened JWS body. Refuses the general serialization (`signatures`), an
    /// unprotected `header`, unknown algorithms, `crit`, and keys with private parts.
    pub fn parse(body: &[u8], depth: JsonDepth) -> Result<Self, JoseError> {
        let raw: RawJws<'_> = super::json::from_slice(body, depth).map_err(JoseError::Malformed)?;
        let (Some(protected), Some(payload), Some(signature)) = (raw.protected, raw.payload, raw.signature) else {
            return Err(JoseError::Malformed("`protected`, `payload` and `signature` are required".into()));
        };
        let header_bytes = b64_decode(protected)?;
        let h: RawHeader = super::json::from_slice(&header_bytes, depth).map_err(JoseError::Header)?;
        // RFC 7515 §4.1.11: we implement no extensions, so any `crit` is unsupported;
        // RFC 7797's `b64` only has meaning with `crit`.
        if h.crit.is_some() || h.b64.is_some() {
            return Err(JoseError::UnsupportedCrit);
        }
        let alg = Algorithm::parse(h.alg.as_deref().unwrap_or("none"))?;
        let jwk = h.jwk.as_ref().map(Jwk::from_value).transpose()?;
        if let Some(key) = &jwk
            && !key.matches(alg)
        {
            return Err(JoseError::KeyAlgorithmMismatch(alg));
        }
        let payload_bytes = b64_decode(payload)?;
        let signature = b64_decode(signature)?;
        let mut signing_input = Vec::with_capacity(protected.len() + 1 + payload.len());
        signing_input.extend_from_slice(protected.as_bytes());
        signing_input.push(b'.');
        signing_input.extend_from_slice(payload.as_bytes());
        Ok(Self {
            header: ProtectedHeader { alg, jwk, kid: h.kid, nonce: h.nonce, url: h.url },
            payload: payload_bytes,
            signing_input,
            signature,
        })
    }

    /// Verifies the signature with `key` (RFC 7515 §5.2).
    pub fn verify(&self, key: &Jwk) -> Result<(), JoseError> {
        key.verify(self.header.alg, &self.signing_input, &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64_encode;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::json;

    fn signed(header: serde_json::Value, payload: &[u8], kp: &Ed25519KeyPair) -> Vec<u8> {
        let p = b64_encode(header.to_string());
        let pl = b64_encode(payload);
        let sig = kp.sign(format!("{p}.{pl}").as_bytes());
        json!({"protected": p, "payload": pl, "signature": b64_encode(sig.as_ref())}).to_string().into_bytes()
    }

    fn key() -> (Ed25519KeyPair, serde_json::Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty":"OKP","crv":"Ed25519","x": b64_encode(kp.public_key().as_ref())});
        (kp, jwk)
    }

    #[test]
    fn parses_and_verifies_post_as_get() {
        let (kp, jwk) = key();
        let body = signed(json!({"alg":"EdDSA","jwk":jwk,"nonce":"n","url":"u"}), b"", &kp);
        let jws = FlattenedJws::parse(&body, JsonDepth::default()).unwrap();
        assert!(jws.payload.is_empty());
        jws.verify(jws.header.jwk.as_ref().unwrap()).unwrap();
    }

    #[test]
    fn rejects_tampered_payload() {
        let (kp, jwk) = key();
        let body = signed(json!({"alg":"EdDSA","jwk":jwk}), b"{}", &kp);
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["payload"] = json!(b64_encode(b"{\"a\":1}"));
        let jws = FlattenedJws::parse(v.to_string().as_bytes(), JsonDepth::default()).unwrap();
        assert_eq!(jws.verify(jws.header.jwk.as_ref().unwrap()), Err(JoseError::BadSignature));
    }

    #[test]
    fn rejects_alg_none_and_hs256() {
        let (kp, jwk) = key();
        for alg in ["none", "HS256"] {
            let body = signed(json!({"alg":alg,"jwk":jwk}), b"{}", &kp);
            assert!(matches!(
                FlattenedJws::parse(&body, JsonDepth::default()),
                Err(JoseError::UnsupportedAlgorithm(_))
            ));
        }
    }

    #[test]
    fn rejects_crit_and_unprotected_header() {
        let (kp, jwk) = key();
        let body = signed(json!({"alg":"EdDSA","jwk":jwk,"crit":["exp"]}), b"{}", &kp);
        assert_eq!(FlattenedJws::parse(&body, JsonDepth::default()).unwrap_err(), JoseError::UnsupportedCrit);
        let mut v: serde_json::Value =
            serde_json::from_slice(&signed(json!({"alg":"EdDSA","jwk":jwk}), b"{}", &kp)).unwrap();
        v["header"] = json!({"kid":"x"});
        assert!(matches!(
            FlattenedJws::parse(v.to_string().as_bytes(), JsonDepth::default()),
            Err(JoseError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_key_not_matching_alg() {
        let (kp, jwk) = key();
        let body = signed(json!({"alg":"ES256","jwk":jwk}), b"{}", &kp);
        assert_eq!(
            FlattenedJws::parse(&body, JsonDepth::default()).unwrap_err(),
            JoseError::KeyAlgorithmMismatch(Algorithm::ES256)
        );
    }

    #[test]
    fn rejects_bad_base64_and_json() {
        assert!(matches!(FlattenedJws::parse(b"not json", JsonDepth::default()), Err(JoseError::Malformed(_))));
        let body = json!({"protected":"!!","payload":"","signature":""}).to_string();
        assert_eq!(FlattenedJws::parse(body.as_bytes(), JsonDepth::default()).unwrap_err(), JoseError::Base64);
    }
}
