//! The public keys of an external Wire backend (wire-server's brig) whose client-identity
//! access tokens answer `wire-dpop-01` beside idca's own (`devices.backend_keys`; step-ca's
//! Wire provisioner calls it `dpop.key`). A token is trusted only for a configured key:
//! a `jwk` in its header names one (by thumbprint) and is never used for itself.

use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use crate::jose::{Algorithm, CompactJws, JsonDepth, Jwk, b64_encode};

/// The backend's keys.
#[derive(Debug, Clone)]
pub struct BackendKeys {
    keys: Vec<Jwk>,
    depth: JsonDepth,
}

/// A key as configured: a PEM SubjectPublicKeyInfo, or a JWK as JSON.
fn parse_key(text: &str) -> Result<Jwk, String> {
    let text = text.trim();
    if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not a JWK: {e}"))?;
        return Jwk::from_value(&v).map_err(|e| format!("not a public JWK: {e}"));
    }
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body.trim())
        .map_err(|_| "neither a JWK nor a PEM public key".to_owned())?;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
        .map_err(|_| "the PEM is not a SubjectPublicKeyInfo (BEGIN PUBLIC KEY)".to_owned())?;
    let data = spki.subject_public_key.data.as_ref();
    let oid = spki.algorithm.algorithm.to_id_string();
    let jwk = match oid.as_str() {
        "1.3.101.112" => json!({"kty": "OKP", "crv": "Ed25519", "x": b64_encode(data)}),
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            let crv = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "P-256",
                Some("1.3.132.0.34") => "P-384",
                Some("1.3.132.0.35") => "P-521",
                _ => return Err("an EC key on a curve idca does not take".into()),
            };
            let point = data.get(1..).filter(|_| data.first() == Some(&4)).ok_or("a compressed EC point")?;
            let (x, y) = point.split_at(point.len() / 2);
            json!({"kty": "EC", "crv": crv, "x": b64_encode(x), "y": b64_encode(y)})
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                let n = rsa.modulus.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
                json!({"kty": "RSA", "n": b64_encode(n), "e": b64_encode(rsa.exponent)})
            }
            _ => return Err("a malformed RSA key".into()),
        },
        other => return Err(format!("a key of type {other}, which idca does not take")),
    };
    Jwk::from_value(&jwk).map_err(|e| e.to_string())
}

impl BackendKeys {
    /// The configured keys (`None` when there are none); an unreadable one is an error.
    pub fn from_config(keys: &[String], depth: JsonDepth) -> Result<Option<Self>, String> {
        if keys.is_empty() {
            return Ok(None);
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| parse_key(k).map_err(|e| format!("devices.backend_keys[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self { keys, depth }))
    }

    /// Verifies a token of type `typ` signed by one of the backend's keys: the one its
    /// header `jwk` or `kid` names (by RFC 7638 thumbprint), else any.
    pub fn verify(&self, token: &str, typ: &str) -> Result<Value, String> {
        let jws = CompactJws::parse(token, self.depth).map_err(|e| e.to_string())?;
        if !jws.header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
            return Err("wrong token type".into());
        }
        let named = match (&jws.header.jwk, &jws.header.kid) {
            (Some(jwk), _) => Some(Jwk::from_value(jwk).map_err(|e| e.to_string())?.thumbprint().0),
            (None, Some(kid)) => Some(kid.clone()),
            (None, None) => None,
        };
        let alg = Algorithm::parse(&jws.header.alg).map_err(|e| e.to_string())?;
        let candidates =
            self.keys.iter().filter(|k| k.matches(alg) && named.as_ref().is_none_or(|n| *n == k.thumbprint().0));
        for key in candidates {
            if let Ok(claims) = jws.verify::<Value>(key) {
                return Ok(claims);
            }
        }
        Err("not signed by a configured backend key (devices.backend_keys)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::SigningKey;

    /// Keys read as PEM (Ed25519, P-256) or JWK; a token with another key in its header,
    /// or signed by another key, is refused; the type is checked.
    #[test]
    fn only_configured_keys_sign_backend_tokens() {
        let backend = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
        let jwk = backend.jwk().to_value().to_string();
        let keys = BackendKeys::from_config(std::slice::from_ref(&jwk), JsonDepth::default()).unwrap().unwrap();
        let claims = json!({"iss": "https://backend.test/clients/1/access-token"});
        let token = backend.sign_embedding_jwk("at+jwt", &claims).unwrap();
        assert_eq!(keys.verify(&token, "at+jwt").unwrap(), claims);
        assert!(keys.verify(&token, "JWT").is_err(), "typ");
        assert!(keys.verify(&other.sign_embedding_jwk("at+jwt", &claims).unwrap(), "at+jwt").is_err());
        assert!(keys.verify(&backend.sign("at+jwt", &claims).unwrap(), "at+jwt").is_ok(), "by kid or none");
        // PEM SubjectPublicKeyInfo, as brig's key bundle and step-ca's dpop.key hold it.
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        for (pem, kty) in [(ed.public_key_pem(), "OKP"), (p256.public_key_pem(), "EC")] {
            assert_eq!(parse_key(&pem).unwrap().to_value()["kty"], kty, "{pem}");
        }
        assert!(BackendKeys::from_config(&["not a key".into()], JsonDepth::default()).is_err());
        assert!(BackendKeys::from_config(&[], JsonDepth::default()).unwrap().is_none());
    }
}
