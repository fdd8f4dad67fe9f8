//! Access tokens (RFC 9068 JWTs), id_tokens (OIDC Core §2), and the signing keys.

use serde::{Deserialize, Serialize};

use super::OAuthError;
use crate::clock::UnixTime;
use crate::jose::{CompactJws, JsonDepth, Jwk, SigningKey};
use crate::model::oauth::OAuthKey;

/// The `typ` of an access token (RFC 9068 §2.1).
pub const AT_JWT: &str = "at+jwt";

/// Claims of an access token (RFC 9068 §2.2), plus `grant`: the grant it came from, so a
/// revoked grant revokes its access tokens at idca's own resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixTime>,
    pub grant: String,
    /// The key the token is bound to (RFC 9449 §6.1: `cnf.jkt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// A confirmation claim (RFC 7800) holding a JWK thumbprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

impl AccessTokenClaims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// Claims of an id_token (OIDC Core §2, §3.1.3.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// base64url of the left half of SHA-256(access token) (OIDC Core §3.1.3.6).
    pub at_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user name (with `profile`, as userinfo gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The user's Wire handle, `wireapp://%40{handle}@{domain}` (set from the user's record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// How the user authenticated (OIDC Core §2, RFC 8176): what idca did, never what a
    /// request asked for.
    pub amr: Vec<String>,
    /// Wire `wire-oidc-01`: the challenge's key authorization, echoed from the `claims`
    /// request (the only echoed claims, `claims::ECHOED_CLAIMS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyauth: Option<String>,
    /// Wire `wire-oidc-01`: the challenge URL, echoed from the `claims` request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_aud: Option<String>,
}

/// `at_hash` for an ES256-signed id_token.
pub(super) fn at_hash(access_token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    crate::jose::b64_encode(d.as_ref().get(..16).unwrap_or_default())
}

/// The active signing key and every published key (active and retired).
#[derive(Debug)]
pub struct Keys {
    active: SigningKey,
    published: Vec<(String, Jwk)>,
    /// How deeply a presented token's JSON may nest.
    depth: JsonDepth,
}

impl Keys {
    /// Loads the keys; the newest unretired one signs.
    pub fn load(keys: &[OAuthKey], depth: JsonDepth) -> Result<Self, OAuthError> {
        let active = keys
            .iter()
            .rev()
            .find(|k| k.retired.is_none())
            .ok_or_else(|| OAuthError::server(crate::jose::JoseError::BadKey("no active signing key".into())))?;
        let active = SigningKey::from_pkcs8(&active.pkcs8)?;
        let published = keys
            .iter()
            .map(|k| SigningKey::from_pkcs8(&k.pkcs8).map(|s| (s.kid().to_owned(), s.jwk().clone())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { active, published, depth })
    }

    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, OAuthError> {
        Ok(self.active.sign(typ, claims)?)
    }

    /// Signs with the public key in the header (`jwk`) instead of a `kid`.
    pub fn sign_embedding_jwk<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, OAuthError> {
        Ok(self.active.sign_embedding_jwk(typ, claims)?)
    }

    /// The JWKS (RFC 7517 §5) with `kid`, `use` and `alg` on each key.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published
            .iter()
            .map(|(kid, jwk)| {
                let mut v = jwk.to_value();
                v["kid"] = serde_json::json!(kid);
                v["use"] = serde_json::json!("sig");
                v["alg"] = serde_json::json!("ES256");
                v
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Verifies a token of type `typ` signed by one of the published keys, named by its
    /// `kid`, or (client-identity tokens) by a `jwk` in the header.
    pub fn verify<T: serde::de::DeserializeOwned>(&self, token: &str, typ: &str) -> Result<T, OAuthError> {
        let bad = |m: &str| OAuthError::InvalidToken(m.to_owned());
        let jws = CompactJws::parse(token, self.depth).map_err(|_| bad("malformed token"))?;
        if !jws.header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(bad("wrong token type"));
        }
        let kid = match (&jws.header.kid, &jws.header.jwk) {
            (Some(kid), _) => kid.clone(),
            (None, Some(jwk)) => Jwk::from_value(jwk).map_err(|_| bad("bad jwk in the header"))?.thumbprint().0,
            (None, None) => return Err(bad("token has no kid")),
        };
        let (_, key) = self.published.iter().find(|(k, _)| *k == kid).ok_or_else(|| bad("unknown signing key"))?;
        jws.verify(key).map_err(|_| bad("invalid token signature"))
    }
}

impl Keys {
    /// Whether `token`'s header names a `kid` none of these keys has (a key another
    /// instance made after these were loaded, or garbage).
    pub fn names_unknown_key(&self, token: &str) -> bool {
        CompactJws::parse(token, self.depth)
            .ok()
            .and_then(|jws| jws.header.kid)
            .is_some_and(|kid| !self.published.iter().any(|(k, _)| *k == kid))
    }
}

/// The keys as last loaded from the store, shared by every instance: reloaded when a
/// token names a key not among them (another instance rotated), at most once a second,
/// and every [`KeyRing::REFRESH_SECS`] (so that every instance signs with, and
/// publishes, the newest key soon after a rotation).
#[derive(Debug)]
pub struct KeyRing {
    keys: std::sync::RwLock<std::sync::Arc<Keys>>,
    /// When a token with an unknown `kid` last made a reload.
    reloaded_at: std::sync::atomic::AtomicI64,
}

impl KeyRing {
    pub const REFRESH_SECS: u64 = 30;

    pub fn new(keys: Keys) -> Self {
        Self { keys: std::sync::RwLock::new(std::sync::Arc::new(keys)), reloaded_at: i64::MIN.into() }
    }

    /// The keys now.
    pub fn current(&self) -> std::sync::Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a token with an unknown `kid` may reload the keys now (once a second at
    /// most, so that garbage tokens cannot load the store); claims it if so.
    pub fn may_reload(&self, now: UnixTime) -> bool {
        let last = self.reloaded_at.load(std::sync::atomic::Ordering::Relaxed);
        last < now
            && self
                .reloaded_at
                .compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
                .is_ok()
    }

    pub fn replace(&self, keys: Keys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(created: UnixTime, retired: Option<UnixTime>) -> OAuthKey {
        let pkcs8 = SigningKey::generate_pkcs8().unwrap();
        let kid = SigningKey::from_pkcs8(&pkcs8).unwrap().kid().to_owned();
        OAuthKey { kid, pkcs8, created, retired }
    }

    #[test]
    fn newest_active_key_signs_and_retired_keys_still_verify() {
        let old = key(1, None);
        let old_keys = Keys::load(std::slice::from_ref(&old), JsonDepth::default()).unwrap();
        let old_token = old_keys.sign(AT_JWT, &serde_json::json!({"a": 1})).unwrap();
        let new = key(2, None);
        let mut retired = old.clone();
        retired.retired = Some(2);
        let keys = Keys::load(&[retired, new.clone()], JsonDepth::default()).unwrap();
        let token = keys.sign(AT_JWT, &serde_json::json!({"a": 2})).unwrap();
        assert_eq!(
            CompactJws::parse(&token, JsonDepth::default()).unwrap().header.kid.as_deref(),
            Some(new.kid.as_str())
        );
        assert_eq!(keys.verify::<serde_json::Value>(&old_token, AT_JWT).unwrap()["a"], 1);
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(keys.verify::<serde_json::Value>(&token, "JWT").is_err(), "typ is checked");
    }

    /// OIDC Core §3.1.3.6 construction; the value is checked against a known digest.
    #[test]
    fn at_hash_is_left_half_of_sha256() {
        assert_eq!(at_hash("abc"), "ungWv48Bz-pBQUDeXa4iIw");
    }
}
