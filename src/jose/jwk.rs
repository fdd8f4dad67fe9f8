//! Public JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037) and thumbprints (RFC 7638).

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::{Algorithm, JoseError, b64_decode, b64_encode};

/// A public key as a JWK. Holds the members exactly as the client sent them (so the
/// RFC 7638 thumbprint matches the client's own), after checking that they decode.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum Jwk {
    /// An elliptic-curve key (RFC 7518 §6.2): P-256, P-384 or P-521.
    #[serde(rename = "EC")]
    Ec { crv: EcCurve, x: String, y: String },
    /// An octet key pair (RFC 8037 §2): Ed25519 only.
    #[serde(rename = "OKP")]
    Okp { crv: OkpCurve, x: String },
    /// An RSA key (RFC 7518 §6.3), 2048 to 4096 bits.
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Public keys are not secret, but they are long; the thumbprint names them.
        write!(f, "Jwk({})", self.thumbprint().0)
    }
}

/// The NIST curves idca accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EcCurve {
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
    #[serde(rename = "P-521")]
    P521,
}

/// The Edwards curves idca accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OkpCurve {
    Ed25519,
}

/// A JWK SHA-256 thumbprint, base64url (RFC 7638 §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Jkt(pub String);

impl std::fmt::Display for Jkt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every member a JWK may carry; private ones are there to be refused.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<serde_json::Value>,
    p: Option<serde_json::Value>,
    q: Option<serde_json::Value>,
    dp: Option<serde_json::Value>,
    dq: Option<serde_json::Value>,
    qi: Option<serde_json::Value>,
    oth: Option<serde_json::Value>,
    k: Option<serde_json::Value>,
}

fn member(v: Option<String>, name: &str) -> Result<(String, Vec<u8>), JoseError> {
    let s = v.ok_or_else(|| JoseError::BadKey(format!("missing `{name}`")))?;
    let bytes = b64_decode(&s).map_err(|_| JoseError::BadKey(format!("`{name}` is not base64url")))?;
    Ok((s, bytes))
}

fn rsa_bits(n: &[u8]) -> usize {
    let trimmed: &[u8] = match n.iter().position(|b| *b != 0) {
        Some(i) => n.get(i..).unwrap_or_default(),
        None => &[],
    };
    match trimmed.first() {
        Some(first) => (trimmed.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

impl Jwk {
    /// Parses a JWK from JSON, accepting only public keys of the supported types.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, JoseError> {
        let raw: RawJwk = serde_json::from_value(v.clone()).map_err(|e| JoseError::BadKey(e.to_string()))?;
        // RFC 7517 §9.2: a public key must not carry private members.
        if raw.d.is_some()
            || raw.p.is_some()
            || raw.q.is_some()
            || raw.dp.is_some()
            || raw.dq.is_some()
            || raw.qi.is_some()
            || raw.oth.is_some()
            || raw.k.is_some()
        {
            return Err(JoseError::PrivateKey);
        }
        match raw.kty.as_str() {
            "EC" => {
                let crv = match raw.crv.as_deref() {
                    Some("P-256") => EcCurve::P256,
                    Some("P-384") => EcCurve::P384,
                    Some("P-521") => EcCurve::P521,
                    other => {
                        return Err(JoseError::BadKey(format!("unsupported EC curve {other:?}")));
                    }
                };
                let len = match crv {
                    EcCurve::P256 => 32,
                    EcCurve::P384 => 48,
                    EcCurve::P521 => super::p521::COORDINATE_LEN,
                };
                let (x, xb) = member(raw.x, "x")?;
                let (y, yb) = member(raw.y, "y")?;
                if xb.len() != len || yb.len() != len {
                    return Err(JoseError::BadKey("EC coordinates have the wrong length".into()));
                }
                let key = Self::Ec { crv, x, y };
                key.check_point()?;
                Ok(key)
            }
            "OKP" => {
                if raw.crv.as_deref() != Some("Ed25519") {
                    return Err(JoseError::BadKey(format!("unsupported OKP curve {:?}", raw.crv)));
                }
                let (x, xb) = member(raw.x, "x")?;
                if xb.len() != 32 {
                    return Err(JoseError::BadKey("Ed25519 key must be 32 bytes".into()));
                }
                Ok(Self::Okp { crv: OkpCurve::Ed25519, x })
            }
            "RSA" => {
                let (n, nb) = member(raw.n, "n")?;
                let (e, eb) = member(raw.e, "e")?;
                let bits = rsa_bits(&nb);
                if !(2048..=4096).contains(&bits) {
                    return Err(JoseError::BadKey(format!("RSA key of {bits} bits (2048-4096 accepted)")));
                }
                if eb.is_empty() || eb.len() > 4 {
                    return Err(JoseError::BadKey("bad RSA exponent".into()));
                }
                Ok(Self::Rsa { n, e })
            }
            other => {
                Err(JoseError::BadKey(format!("unsupported key type `{}`", other.chars().take(16).collect::<String>())))
            }
        }
    }

    /// Rejects EC points that are not on the curve, at parse time rather than at the
    /// first verification. ring has no bare "validate point" call; an ECDH agreement
    /// with a fresh ephemeral key performs exactly the on-curve check.
    fn check_point(&self) -> Result<(), JoseError> {
        if let Self::Ec { crv, .. } = self {
            let alg = match crv {
                EcCurve::P256 => &ring::agreement::ECDH_P256,
                EcCurve::P384 => &ring::agreement::ECDH_P384,
                EcCurve::P521 => return super::p521::check_point(&self.ec_point()?),
            };
            let point = self.ec_point()?;
            let peer = ring::agreement::UnparsedPublicKey::new(alg, &point);
            let rng = ring::rand::SystemRandom::new();
            let ephemeral = ring::agreement::EphemeralPrivateKey::generate(alg, &rng)
                .map_err(|_| JoseError::BadKey("cannot check EC point".into()))?;
            ring::agreement::agree_ephemeral(ephemeral, &peer, |_| ())
                .map_err(|_| JoseError::BadKey("EC point is not on the curve".into()))?;
        }
        Ok(())
    }

    fn ec_point(&self) -> Result<Vec<u8>, JoseError> {
        match self {
            Self::Ec { x, y, .. } => {
                let mut point = vec![0x04];
                point.extend(b64_decode(x)?);
                point.extend(b64_decode(y)?);
                Ok(point)
            }
            _ => Err(JoseError::BadKey("not an EC key".into())),
        }
    }

    /// Whether this key can verify `alg` signatures (RFC 7518 §3.1).
    pub fn matches(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::Ec { crv: EcCurve::P256, .. }, Algorithm::ES256)
                | (Self::Ec { crv: EcCurve::P384, .. }, Algorithm::ES384)
                | (Self::Ec { crv: EcCurve::P521, .. }, Algorithm::ES512)
                | (Self::Okp { .. }, Algorithm::EdDSA)
                | (Self::Rsa { .. }, Algorithm::RS256)
        )
    }

    /// Verifies `signature` over `message` with this key and `alg`.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        if !self.matches(alg) {
            return Err(JoseError::KeyAlgorithmMismatch(alg));
        }
        let result = match self {
            Self::Ec { crv, .. } => {
                let point = self.ec_point()?;
                let ring_alg: &dyn signature::VerificationAlgorithm = match crv {
                    EcCurve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    EcCurve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                    EcCurve::P521 => return super::p521::verify_fixed(&point, message, signature),
                };
                UnparsedPublicKey::new(ring_alg, point).verify(message, signature)
            }
            Self::Okp { x, .. } => {
                UnparsedPublicKey::new(&signature::ED25519, b64_decode(x)?).verify(message, signature)
            }
            Self::Rsa { n, e } => {
                let (n, e) = (b64_decode(n)?, b64_decode(e)?);
                RsaPublicKeyComponents { n: &n, e: &e }.verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    message,
                    signature,
                )
            }
        };
        result.map_err(|_| JoseError::BadSignature)
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> Jkt {
        self.thumbprint_with(&ring::digest::SHA256)
    }

    /// Every thumbprint a client may name this key by: SHA-256 (RFC 7638, RFC 8555), and
    /// for P-384 and P-521 keys also SHA-384 and SHA-512, the hash Wire's clients
    /// (rusty-jwt-tools) pair with those curves in key authorizations and `cnf.kid`.
    pub fn thumbprints(&self) -> Vec<Jkt> {
        let mut all = vec![self.thumbprint()];
        match self {
            Self::Ec { crv: EcCurve::P384, .. } => all.push(self.thumbprint_with(&ring::digest::SHA384)),
            Self::Ec { crv: EcCurve::P521, .. } => all.push(self.thumbprint_with(&ring::digest::SHA512)),
            _ => {}
        }
        all
    }

    fn thumbprint_with(&self, hash: &'static ring::digest::Algorithm) -> Jkt {
        // Members are base64url strings and fixed curve names: no JSON escaping needed.
        let canonical = match self {
            Self::Ec { crv, x, y } => {
                let crv = match crv {
                    EcCurve::P256 => "P-256",
                    EcCurve::P384 => "P-384",
                    EcCurve::P521 => "P-521",
                };
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            Self::Okp { x, .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            Self::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        Jkt(b64_encode(ring::digest::digest(hash, canonical.as_bytes())))
    }

    /// The key as a JSON value (the `key` member of an ACME account).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1, the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let key = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let jwk = Jwk::from_value(&key).unwrap();
        assert_eq!(jwk.thumbprint().0, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    /// RFC 8037 §A.3, the Ed25519 thumbprint example.
    #[test]
    fn rfc8037_okp_thumbprint() {
        let key = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let jwk = Jwk::from_value(&key).unwrap();
        assert_eq!(jwk.thumbprint().0, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn rejects_private_members() {
        let key = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                         "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"});
        assert_eq!(Jwk::from_value(&key).unwrap_err(), JoseError::PrivateKey);
    }

    #[test]
    fn rejects_symmetric_and_unknown_keys() {
        assert!(Jwk::from_value(&json!({"kty":"oct","k":"AAAA"})).is_err());
        assert!(Jwk::from_value(&json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"})).is_err());
        assert!(Jwk::from_value(&json!({"kty":"OKP","crv":"X25519","x":"AA"})).is_err());
    }

    #[test]
    fn rejects_off_curve_points() {
        let x = b64_encode([1u8; 32]);
        let y = b64_encode([2u8; 32]);
        let err = Jwk::from_value(&json!({"kty":"EC","crv":"P-256","x":x,"y":y})).unwrap_err();
        assert!(matches!(err, JoseError::BadKey(_)), "{err:?}");
    }

    #[test]
    fn rejects_small_rsa() {
        let n = b64_encode([0xffu8; 128]);
        let err = Jwk::from_value(&json!({"kty":"RSA","n":n,"e":"AQAB"})).unwrap_err();
        assert!(matches!(err, JoseError::BadKey(ref m) if m.contains("1024")), "{err:?}");
    }

    #[test]
    fn verifies_es256_and_rejects_mismatched_alg() {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pt = kp.public_key().as_ref();
        let jwk = Jwk::from_value(&json!({"kty":"EC","crv":"P-256",
            "x": b64_encode(&pt[1..33]), "y": b64_encode(&pt[33..])}))
        .unwrap();
        let sig = kp.sign(&rng, b"hello").unwrap();
        jwk.verify(Algorithm::ES256, b"hello", sig.as_ref()).unwrap();
        assert_eq!(jwk.verify(Algorithm::ES256, b"hellO", sig.as_ref()), Err(JoseError::BadSignature));
        assert_eq!(
            jwk.verify(Algorithm::ES384, b"hello", sig.as_ref()),
            Err(JoseError::KeyAlgorithmMismatch(Algorithm::ES384))
        );
    }

    /// P-384 and P-521 keys are also named by SHA-384 and SHA-512 thumbprints (Wire's
    /// clients); the first is always RFC 7638's SHA-256.
    #[test]
    fn thumbprints_per_curve() {
        let rng = ring::rand::SystemRandom::new();
        let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let p = signature::KeyPair::public_key(&pair).as_ref().to_vec();
        let k = Jwk::from_value(&serde_json::json!({"kty": "EC", "crv": "P-384",
            "x": b64_encode(&p[1..49]), "y": b64_encode(&p[49..])}))
        .unwrap();
        let all = k.thumbprints();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], k.thumbprint());
        assert_eq!(b64_decode(&all[1].0).unwrap().len(), 48, "SHA-384");
        let ed = Jwk::from_value(&serde_json::json!({"kty":"OKP","crv":"Ed25519","x": b64_encode([7u8; 32])})).unwrap();
        assert_eq!(ed.thumbprints(), vec![ed.thumbprint()]);
    }
}
