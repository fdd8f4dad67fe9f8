//! Compact JWS (RFC 7515 §7.1): the form of JWTs (RFC 7519). Signing with idca's own
//! ES256 keys, verification with any accepted public JWK.
//!
//! Written on ring like the ACME JWS code next to it, rather than through jsonwebtoken:
//! jsonwebtoken 11 has no ring backend, and the part idca needs (sign one algorithm,
//! verify with a JWK, read claims) is this file.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::json::JsonDepth;
use super::{Algorithm, JoseError, Jwk, b64_decode, b64_encode};

/// An ES256 signing key (PKCS#8), with its public JWK and key id (its thumbprint).
pub struct SigningKey {
    pair: EcdsaKeyPair,
    jwk: Jwk,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("private", &"[elided]").finish()
    }
}

impl SigningKey {
    /// A fresh P-256 key as PKCS#8 DER.
    pub fn generate_pkcs8() -> Result<Vec<u8>, JoseError> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| JoseError::BadKey("cannot generate a P-256 key".into()))
    }

    /// Loads a PKCS#8 P-256 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, JoseError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|_| JoseError::BadKey("not a PKCS#8 P-256 key".into()))?;
        let point = pair.public_key().as_ref();
        let (x, y) = (point.get(1..33).unwrap_or_default(), point.get(33..65).unwrap_or_default());
        let jwk = Jwk::Ec { crv: super::jwk::EcCurve::P256, x: b64_encode(x), y: b64_encode(y) };
        let kid = jwk.thumbprint().0;
        Ok(Self { pair, jwk, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` as a compact JWS with header `{"alg":"ES256","typ":typ,"kid":kid}`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JoseError> {
        self.sign_with_header(serde_json::json!({"alg": "ES256", "typ": typ, "kid": self.kid}), claims)
    }

    /// Signs with the public key itself in the header (`jwk`), as Wire's access tokens
    /// carry it.
    pub fn sign_embedding_jwk<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, JoseError> {
        self.sign_with_header(serde_json::json!({"alg": "ES256", "typ": typ, "jwk": self.jwk.to_value()}), claims)
    }

    fn sign_with_header<T: Serialize>(&self, header: serde_json::Value, claims: &T) -> Result<String, JoseError> {
        let payload = serde_json::to_vec(claims).map_err(|e| JoseError::Malformed(e.to_string()))?;
        let input = format!("{}.{}", b64_encode(header.to_string()), b64_encode(payload));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| JoseError::Malformed("signing failed".into()))?;
        Ok(format!("{input}.{}", b64_encode(sig.as_ref())))
    }
}

/// The header of a compact JWS, read before its signature is checked.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CompactHeader {
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
    pub jwk: Option<serde_json::Value>,
}

/// A compact JWS split into its parts (signature unchecked).
#[derive(Debug)]
pub struct CompactJws<'a> {
    pub header: CompactHeader,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
    depth: JsonDepth,
}

impl<'a> CompactJws<'a> {
    /// Splits and decodes `token`; refuses anything but three base64url parts.
    pub fn parse(token: &'a str, depth: JsonDepth) -> Result<Self, JoseError> {
        if token.len() > 16 * 1024 {
            return Err(JoseError::Malformed("token too long".into()));
        }
        let mut parts = token.splitn(4, '.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JoseError::Malformed("not a compact JWS".into()));
        };
        let header: CompactHeader = super::json::from_slice(&b64_decode(h)?, depth).map_err(JoseError::Header)?;
        let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or_default();
        Ok(Self { header, signing_input, payload_b64: p, signature: b64_decode(s)?, depth })
    }

    /// Verifies the signature with `key` and decodes the claims.
    pub fn verify<T: DeserializeOwned>(&self, key: &Jwk) -> Result<T, JoseError> {
        let alg = Algorithm::parse(&self.header.alg)?;
        key.verify(alg, self.signing_input.as_bytes(), &self.signature)?;
        self.payload_unverified()
    }

    /// Verifies an HMAC (HS256/384/512, RFC 7518 §3.2) with the shared `secret`, in
    /// constant time, and decodes the claims. Only for secrets both sides hold
    /// (`client_secret_jwt`): a public-key algorithm is refused here, as HMAC is in
    /// [`Self::verify`].
    pub fn verify_mac<T: DeserializeOwned>(&self, secret: &[u8]) -> Result<T, JoseError> {
        let alg = match self.header.alg.as_str() {
            "HS256" => ring::hmac::HMAC_SHA256,
            "HS384" => ring::hmac::HMAC_SHA384,
            "HS512" => ring::hmac::HMAC_SHA512,
            other => return Err(JoseError::UnsupportedAlgorithm(other.chars().take(32).collect())),
        };
        ring::hmac::verify(&ring::hmac::Key::new(alg, secret), self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JoseError::BadSignature)?;
        self.payload_unverified()
    }

    /// The claims, signature NOT checked: only to find which key to check it with
    /// (a client assertion's `sub` names its client).
    pub fn payload_unverified<T: DeserializeOwned>(&self) -> Result<T, JoseError> {
        super::json::from_slice(&b64_decode(self.payload_b64)?, self.depth).map_err(JoseError::Malformed)
    }
}

/// The signing keys of a JWK Set (RFC 7517 §5) idca can verify with, each with its `kid`;
/// keys for another `use` than `sig`, and keys of unsupported types, are left out.
pub fn jwk_set(jwks: &serde_json::Value) -> Vec<(Option<String>, Jwk)> {
    jwks.get("keys")
        .and_then(serde_json::Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter(|k| k.get("use").and_then(serde_json::Value::as_str).is_none_or(|u| u == "sig"))
                .filter_map(|k| {
                    let kid = k.get("kid").and_then(serde_json::Value::as_str).map(str::to_owned);
                    Jwk::from_value(k).ok().map(|jwk| (kid, jwk))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let token = key.sign("at+jwt", &json!({"sub": "alice"})).unwrap();
        let jws = CompactJws::parse(&token, JsonDepth::default()).unwrap();
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jws.header.kid.as_deref(), Some(key.kid()));
        let claims: Value = jws.verify(key.jwk()).unwrap();
        assert_eq!(claims["sub"], "alice");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64_encode(json!({"sub": "mallory"}).to_string());
        parts[1] = &forged;
        let forged = parts.join(".");
        assert_eq!(
            CompactJws::parse(&forged, JsonDepth::default()).unwrap().verify::<Value>(key.jwk()).unwrap_err(),
            JoseError::BadSignature
        );
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        assert!(CompactJws::parse(&token, JsonDepth::default()).unwrap().verify::<Value>(other.jwk()).is_err());
    }

    #[test]
    fn rejects_none_and_malformed_tokens() {
        let none = format!("{}.{}.", b64_encode(r#"{"alg":"none"}"#), b64_encode("{}"));
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        assert!(matches!(
            CompactJws::parse(&none, JsonDepth::default()).unwrap().verify::<Value>(key.jwk()),
            Err(JoseError::UnsupportedAlgorithm(_))
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(CompactJws::parse(bad, JsonDepth::default()).is_err(), "{bad}");
        }
    }
}
