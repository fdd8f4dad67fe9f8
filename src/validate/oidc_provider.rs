//! An external OpenID provider whose id_tokens answer `wire-oidc-01` (`devices.oidc_issuer`),
//! as step-ca's Wire provisioner trusts one: its keys come from the JWKS named in its
//! discovery document (OIDC Discovery §4), fetched at start and refreshed in the
//! background, so checking a token never waits on the network.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;

use crate::jose::{CompactJws, JsonDepth, Jwk};

/// The provider and the keys last fetched from it.
pub struct OidcProvider {
    issuer: String,
    jwks_uri: String,
    client_id: String,
    http: reqwest::Client,
    keys: RwLock<Vec<(Option<String>, Jwk)>>,
    depth: JsonDepth,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider").field("issuer", &self.issuer).finish()
    }
}

impl OidcProvider {
    /// `ca_file`: a PEM root to trust for this provider only (empty: the default roots).
    /// `client_id`: when set, the id_token's `aud` must name it (OIDC Core §3.1.3.7).
    /// `depth`: how deeply an id_token's JSON may nest.
    pub fn new(issuer: &str, jwks_uri: &str, client_id: &str, ca_file: &str, depth: JsonDepth) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if !ca_file.is_empty() {
            let pem = std::fs::read(ca_file).map_err(|e| format!("{ca_file}: {e}"))?;
            let root = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{ca_file}: {e}"))?;
            builder = builder.tls_certs_only([root]);
        }
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            jwks_uri: jwks_uri.to_owned(),
            client_id: client_id.to_owned(),
            http: builder.build().map_err(|e| e.to_string())?,
            keys: RwLock::new(Vec::new()),
            depth,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let r = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        let bytes = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if bytes.len() > 256 * 1024 {
            return Err(format!("{url}: larger than 256 KiB"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
    }

    /// Fetches the JWKS (discovering its URL first when not configured) and keeps the
    /// keys idca can verify with; returns how many.
    pub async fn refresh(&self) -> Result<usize, String> {
        let jwks_uri = if self.jwks_uri.is_empty() {
            let meta = self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer)).await?;
            if meta.get("issuer").and_then(Value::as_str).map(|i| i.trim_end_matches('/')) != Some(&self.issuer) {
                return Err("the discovery document names another issuer".into());
            }
            meta.get("jwks_uri").and_then(Value::as_str).ok_or("the discovery document has no jwks_uri")?.to_owned()
        } else {
            self.jwks_uri.clone()
        };
        let jwks = self.get_json(&jwks_uri).await?;
        let keys = crate::jose::jwk_set(&jwks);
        let n = keys.len();
        if let Ok(mut held) = self.keys.write() {
            *held = keys;
        }
        Ok(n)
    }

    /// Refreshes every `every`, logging failures (the last keys stay in use); after a
    /// failure (or when `fetched` is false: the first fetch failed) it retries within 10 s.
    pub fn keep_fresh(self: Arc<Self>, every: Duration, fetched: bool) {
        let retry = every.min(Duration::from_secs(10));
        tokio::spawn(async move {
            let mut wait = if fetched { every } else { retry };
            loop {
                tokio::time::sleep(wait).await;
                wait = match self.refresh().await {
                    Ok(n) => {
                        tracing::debug!(issuer = %self.issuer, keys = n, "OIDC provider keys refreshed");
                        every
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch the OIDC provider's keys");
                        retry
                    }
                };
            }
        });
    }

    /// Verifies an id_token's signature with the provider's keys (by `kid`, or any key
    /// when the token names none) and its audience; returns the claims. The other
    /// `wire-oidc-01` checks are [`super::check_wire_oidc`]'s.
    pub fn verify(&self, token: &str) -> Result<Value, String> {
        let jws = CompactJws::parse(token, self.depth).map_err(|e| e.to_string())?;
        let keys = self.keys.read().map_err(|_| "the key cache is poisoned".to_owned())?;
        let claims = keys
            .iter()
            .filter(|(kid, _)| jws.header.kid.is_none() || kid.as_deref() == jws.header.kid.as_deref())
            .find_map(|(_, jwk)| jws.verify::<Value>(jwk).ok())
            .ok_or_else(|| format!("not signed by a current key of {}", self.issuer))?;
        if !self.client_id.is_empty() {
            let aud = claims.get("aud");
            let named = match aud {
                Some(Value::String(a)) => a == &self.client_id,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&self.client_id)),
                _ => false,
            };
            if !named {
                return Err(format!("the id_token's aud does not name {}", self.client_id));
            }
        }
        Ok(claims)
    }
}
