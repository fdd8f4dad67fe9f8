//! Client authentication with a JWT assertion (RFC 7523 §2.2 and §3, OpenID Connect Core
//! §9): `private_key_jwt` (signed with a key the client registered, inline or at its
//! `jwks_uri`) and `client_secret_jwt` (MACed with a secret both sides hold).
//!
//! The audience must be **exactly the issuer identifier**, as one string: RFC 7523 let
//! the token endpoint URL (or any value "identifying" the server) do, and the 2025
//! audience-injection finding showed that an assertion a client made for one endpoint
//! could then be replayed at another server; draft-ietf-oauth-rfc7523bis narrows it to
//! the issuer, and so does idca.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{AuthServer, Client, ClientCredentials, OAuthError};
use crate::clock::UnixTime;
use crate::jose::{CompactJws, Jwk, b64_encode};

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Seconds of clock difference allowed on `exp`, `nbf` and `iat`.
const SKEW_SECS: i64 = 30;

/// How long keys fetched from a `jwks_uri` are used, and how soon an unknown `kid` may
/// fetch them again.
const JWKS_TTL: Duration = Duration::from_secs(300);
const JWKS_REFETCH: Duration = Duration::from_secs(10);
const JWKS_MAX_BYTES: usize = 64 * 1024;
const JWKS_CACHE_ENTRIES: usize = 1024;

/// A client's public keys for `private_key_jwt`.
#[derive(Clone, PartialEq)]
pub enum ClientKeys {
    /// Registered inline (`jwks`).
    Set(Vec<(Option<String>, Jwk)>),
    /// Fetched from the client's `jwks_uri`.
    Uri(String),
}

/// A shared secret for `client_secret_jwt` (never printed).
#[derive(Clone, PartialEq)]
pub struct MacSecret(pub Vec<u8>);

impl std::fmt::Debug for MacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacSecret([elided])")
    }
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set(keys) => write!(f, "Set({} keys)", keys.len()),
            Self::Uri(uri) => write!(f, "Uri({uri})"),
        }
    }
}

/// The claims RFC 7523 §3 requires of a client assertion.
#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<serde_json::Value>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
}

/// The client an assertion claims to be (its `sub`, RFC 7523 §3 item B), read before
/// anything is verified: only to find the client whose keys check it.
fn asserted_client_id(assertion: &str) -> Result<String, OAuthError> {
    let bad = |why: &str| OAuthError::InvalidClient(format!("malformed client assertion: {why}"));
    let jws = CompactJws::parse(assertion, crate::jose::JsonDepth::default()).map_err(|e| bad(&e.to_string()))?;
    let claims: AssertionClaims = jws.payload_unverified().map_err(|e| bad(&e.to_string()))?;
    claims.sub.filter(|s| !s.is_empty()).ok_or_else(|| bad("no sub"))
}

impl ClientCredentials {
    /// `client_assertion` credentials (RFC 7523 §2.2): the type must be the JWT bearer
    /// type; the client is the assertion's `sub`, and a `client_id` sent beside it must
    /// agree.
    pub fn assertion(
        assertion: &str,
        assertion_type: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<Self, OAuthError> {
        if assertion_type != Some(ASSERTION_TYPE) {
            return Err(OAuthError::InvalidClient(format!("client_assertion_type must be {ASSERTION_TYPE}")));
        }
        let asserted = asserted_client_id(assertion)?;
        if client_id.is_some_and(|c| c != asserted) {
            return Err(OAuthError::InvalidClient("client_id differs from the assertion's sub".into()));
        }
        Ok(Self::Assertion { client_id: asserted, assertion: assertion.to_owned() })
    }
}

/// Signing keys with their `kid`s (a verifiable JWK Set).
type KeySet = Arc<Vec<(Option<String>, Jwk)>>;

/// Keys fetched from clients' `jwks_uri`s, shared by all requests.
#[derive(Default)]
pub(super) struct JwksCache {
    http: OnceLock<Result<reqwest::Client, String>>,
    entries: Mutex<HashMap<String, (Instant, KeySet)>>,
}

impl JwksCache {
    fn http(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn cached(&self, uri: &str) -> Option<(Instant, KeySet)> {
        self.entries.lock().ok()?.get(uri).cloned()
    }

    /// The keys at `uri`: cached ones while fresh and holding `kid`, else fetched again
    /// (at most every ten seconds); when a fetch fails the last keys stay in use.
    async fn keys(&self, uri: &str, kid: Option<&str>) -> Result<KeySet, String> {
        let held = self.cached(uri);
        if let Some((at, keys)) = &held {
            let has_kid = kid.is_none_or(|k| keys.iter().any(|(id, _)| id.as_deref() == Some(k)));
            if at.elapsed() < JWKS_REFETCH || (at.elapsed() < JWKS_TTL && has_kid) {
                return Ok(keys.clone());
            }
        }
        match self.fetch(uri).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                if let Ok(mut entries) = self.entries.lock() {
                    if entries.len() >= JWKS_CACHE_ENTRIES {
                        entries.clear();
                    }
                    entries.insert(uri.to_owned(), (Instant::now(), keys.clone()));
                }
                Ok(keys)
            }
            Err(e) => {
                // Debug-formatted: a registered jwks_uri is the client's text, newlines
                // and all, and the log format does not escape them in a Display field.
                tracing::warn!(jwks_uri = ?uri, error = ?e.to_string(), "cannot fetch a client's keys");
                held.map(|(_, keys)| keys).ok_or(e)
            }
        }
    }

    async fn fetch(&self, uri: &str) -> Result<Vec<(Option<String>, Jwk)>, String> {
        let mut r = self.http()?.get(uri).send().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > JWKS_MAX_BYTES {
                return Err("the JWK Set is larger than 64 KiB".into());
            }
        }
        let jwks: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(crate::jose::jwk_set(&jwks))
    }
}

impl AuthServer {
    /// Checks a client assertion (RFC 7523 §3) for `client`, in order:
    /// 1. the signature (`private_key_jwt`: a registered key, chosen by `kid`; keys in
    ///    the header — `jwk`, `jku`, `x5u`, `x5c` — are never used) or the MAC
    ///    (`client_secret_jwt`);
    /// 2. `iss` = `sub` = the client id;
    /// 3. `aud` exactly the issuer identifier, one string (not an array, not the token
    ///    endpoint's URL);
    /// 4. `exp` present and not past, at most `oauth.client_assertion_max_lifetime_secs`
    ///    ahead; `nbf` and `iat` not in the future;
    /// 5. `jti` used once, decided by one insert into the replay store DPoP uses
    ///    (remembered until `exp`).
    ///
    /// Every failure is `invalid_client`.
    pub(super) async fn check_client_assertion(
        &self,
        client: &Client,
        assertion: &str,
        now: UnixTime,
    ) -> Result<(), OAuthError> {
        let bad = |why: &str| OAuthError::InvalidClient(format!("client assertion refused: {why}"));
        let jws = CompactJws::parse(assertion, self.json_depth).map_err(|e| bad(&e.to_string()))?;
        // 1.
        let claims: AssertionClaims = match &client.auth {
            super::ClientAuth::PrivateKeyJwt(keys) => {
                let kid = jws.header.kid.as_deref();
                let keys = match keys {
                    ClientKeys::Set(keys) => Arc::new(keys.clone()),
                    ClientKeys::Uri(uri) => {
                        self.jwks_cache.keys(uri, kid).await.map_err(|e| bad(&format!("the client's jwks_uri: {e}")))?
                    }
                };
                keys.iter()
                    .filter(|(id, _)| kid.is_none() || id.as_deref() == kid)
                    .find_map(|(_, jwk)| jws.verify(jwk).ok())
                    .ok_or_else(|| bad("not signed by a key the client registered"))?
            }
            super::ClientAuth::ClientSecretJwt(secret) => {
                jws.verify_mac(&secret.0).map_err(|e| bad(&format!("the MAC does not verify ({e})")))?
            }
            _ => return Err(OAuthError::InvalidClient("this client does not authenticate with a JWT".into())),
        };
        // 2.
        if claims.iss.as_deref() != Some(&client.client_id) || claims.sub.as_deref() != Some(&client.client_id) {
            return Err(bad("iss and sub must both be the client id"));
        }
        // 3.
        match &claims.aud {
            Some(serde_json::Value::String(aud)) if aud == &self.issuer => {}
            Some(serde_json::Value::Array(_)) => {
                return Err(bad("aud must be the issuer identifier as a single string, not an array"));
            }
            _ => return Err(bad(&format!("aud must be exactly the issuer identifier {}", self.issuer))),
        }
        // 4.
        let exp = claims.exp.ok_or_else(|| bad("exp is required"))?;
        if exp.saturating_add(SKEW_SECS) <= now {
            return Err(bad("expired"));
        }
        let max = i64::try_from(self.config.client_assertion_max_lifetime_secs).unwrap_or(i64::MAX);
        if exp.saturating_sub(now) > max.saturating_add(SKEW_SECS) {
            return Err(bad(&format!("exp is more than {max} s ahead")));
        }
        if claims.nbf.is_some_and(|t| t > now + SKEW_SECS) || claims.iat.is_some_and(|t| t > now + SKEW_SECS) {
            return Err(bad("nbf or iat is in the future"));
        }
        // 5.
        let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| bad("jti is required"))?;
        let key = b64_encode(ring::digest::digest(
            &ring::digest::SHA256,
            format!("client-assertion\u{0}{}\u{0}{jti}", client.client_id).as_bytes(),
        ));
        if !self.store.remember_dpop_jti(&key, exp + SKEW_SECS, now).await? {
            return Err(bad("its jti was already used"));
        }
        Ok(())
    }

    /// The `client_secret_jwt` secret of a dynamically registered client: derived from
    /// a server secret and the client id (HMAC-SHA-256), so the store never holds it.
    pub(super) fn derived_jwt_secret(&self, client_id: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.jwt_secret_key);
        b64_encode(ring::hmac::sign(&key, format!("client_secret_jwt\u{0}{client_id}").as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asserted_client_is_the_sub() {
        let token = |claims: serde_json::Value| {
            format!("{}.{}.{}", b64_encode(r#"{"alg":"ES256"}"#), b64_encode(claims.to_string()), b64_encode("sig"))
        };
        assert_eq!(asserted_client_id(&token(serde_json::json!({"sub": "c1", "iss": "c1"}))).unwrap(), "c1");
        for bad in [token(serde_json::json!({"iss": "c1"})), token(serde_json::json!({"sub": ""})), "x.y".into()] {
            assert!(matches!(asserted_client_id(&bad), Err(OAuthError::InvalidClient(_))), "{bad}");
        }
    }
}
