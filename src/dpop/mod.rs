//! DPoP proof verification (RFC 9449 §4.3) and server nonces (§8, §9).
//!
//! This module checks proofs. It does not read HTTP headers or keep sessions: the caller
//! passes the method, the URL, the access token at a resource, and whether a nonce is
//! required; the `jti` replay memory goes through the [`Store`], so it is shared and
//! survives restarts.

mod nonce;
mod wire;

pub use nonce::DpopNonces;
pub use wire::{WireExpected, WireProof, verify_wire_proof};

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::UnixTime;
use crate::jose::{Algorithm, CompactJws, Jkt, JsonDepth, Jwk, b64_encode};
use crate::store::{Store, StoreError};

/// Why a proof was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// `invalid_dpop_proof` (RFC 9449 §5, §7.1).
    #[error("{0}")]
    InvalidProof(String),
    /// `use_dpop_nonce` (§8, §9): retry with the nonce sent in `DPoP-Nonce`.
    #[error("{0}")]
    UseNonce(String),
    /// Our failure (the replay store).
    #[error("internal error")]
    Store(#[from] StoreError),
}

/// What the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request method (§4.3 step 8).
    pub htm: &'a str,
    /// The request URL, as idca's public URL plus path (§4.3 step 9).
    pub htu: &'a str,
    /// At a protected resource: the access token sent with the proof (§4.3 step 12).
    pub access_token: Option<&'a str>,
}

/// A verified proof: the key it was made with.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    pub jwk: Jwk,
    /// RFC 7638 thumbprint of `jwk`: what tokens are bound to (`cnf.jkt`).
    pub jkt: Jkt,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    nonce: Option<String>,
    ath: Option<String>,
}

/// The algorithms proofs may use (`dpop_signing_alg_values_supported`).
pub const ALGS: [&str; 5] = ["ES256", "ES384", "ES512", "EdDSA", "RS256"];

/// Normalises an `htu` for comparison (§4.3 step 9, RFC 3986 §6.2.2-6.2.3): scheme and
/// host lower-cased, default port dropped, query and fragment removed.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split(['?', '#']).next()?;
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host.to_owned(),
        _ => authority,
    };
    if scheme != "https" && scheme != "http" {
        return None;
    }
    Some(format!("{scheme}://{authority}{path}"))
}

/// `base64url(SHA-256(access token))` (§4.2 `ath`).
pub fn ath(access_token: &str) -> String {
    b64_encode(ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes()))
}

/// Checks proofs.
pub struct DpopVerifier {
    store: Arc<dyn Store>,
    nonces: DpopNonces,
    /// How far in the past (and, a little, the future) `iat` may be (§11.1).
    max_age_secs: i64,
    /// How deeply a proof's JSON may nest.
    depth: JsonDepth,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier").field("max_age_secs", &self.max_age_secs).finish()
    }
}

/// Clock skew tolerated for `iat` in the future.
const FUTURE_SKEW_SECS: i64 = 60;

impl DpopVerifier {
    /// `max_age`: how old a proof's `iat` may be (§11.1).
    pub fn new(store: Arc<dyn Store>, nonces: DpopNonces, max_age: Duration, depth: JsonDepth) -> Self {
        let max_age_secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        Self { store, nonces, max_age_secs, depth }
    }

    /// The nonce to send in `DPoP-Nonce` now.
    pub fn nonce(&self, now: UnixTime) -> String {
        self.nonces.current(now)
    }

    /// Verifies one `DPoP` header value, RFC 9449 §4.3 step by step (step 1, exactly one
    /// header, is the HTTP layer's: it never passes more than one value here).
    pub async fn verify(
        &self,
        proof: &str,
        expected: &Expected<'_>,
        require_nonce: bool,
        now: UnixTime,
    ) -> Result<VerifiedProof, DpopError> {
        let invalid = |m: &str| DpopError::InvalidProof(m.to_owned());
        // 2. A single well-formed JWT.
        let jws = CompactJws::parse(proof, self.depth).map_err(|_| invalid("the DPoP proof is not a JWT"))?;
        // 4. typ.
        if jws.header.typ.as_deref() != Some("dpop+jwt") {
            return Err(invalid("the DPoP proof must have typ dpop+jwt"));
        }
        // 5. An asymmetric algorithm we support (never none or a MAC).
        let alg = Algorithm::parse(&jws.header.alg).map_err(|_| invalid("unsupported DPoP proof algorithm"))?;
        // 7. A public jwk (Jwk::from_value refuses private members).
        let jwk_value = jws.header.jwk.as_ref().ok_or_else(|| invalid("the DPoP proof has no jwk"))?;
        let jwk = Jwk::from_value(jwk_value).map_err(|e| invalid(&format!("DPoP proof jwk: {e}")))?;
        if !jwk.matches(alg) {
            return Err(invalid("the DPoP proof jwk does not match its alg"));
        }
        // 6. The signature, with that key.
        let claims: Claims = jws.verify(&jwk).map_err(|_| invalid("the DPoP proof signature is invalid"))?;
        // 3. The required claims.
        let (Some(jti), Some(htm), Some(htu), Some(iat)) = (claims.jti, claims.htm, claims.htu, claims.iat) else {
            return Err(invalid("the DPoP proof needs jti, htm, htu and iat"));
        };
        if jti.is_empty() || jti.len() > 256 {
            return Err(invalid("the DPoP proof jti must be 1 to 256 characters"));
        }
        // 8. htm.
        if htm != expected.htm {
            return Err(invalid("the DPoP proof htm does not match the request method"));
        }
        // 9. htu, normalised, without query and fragment.
        if normalize_htu(&htu).is_none() || normalize_htu(&htu) != normalize_htu(expected.htu) {
            return Err(invalid("the DPoP proof htu does not match the request URL"));
        }
        // 10. The nonce we provided (§11.3: once required, never optional).
        match (&claims.nonce, require_nonce) {
            (Some(n), _) if self.nonces.accepts(n, now) => {}
            (Some(_), _) => {
                return Err(DpopError::UseNonce("the DPoP nonce is stale; use the one in DPoP-Nonce".into()));
            }
            (None, true) => {
                return Err(DpopError::UseNonce("a DPoP nonce is required; use the one in DPoP-Nonce".into()));
            }
            (None, false) => {}
        }
        // 11. iat within the window.
        if iat > now.saturating_add(FUTURE_SKEW_SECS) || iat < now.saturating_sub(self.max_age_secs) {
            return Err(invalid("the DPoP proof iat is outside the acceptance window"));
        }
        // 12. At a resource: ath binds the proof to the access token.
        if let Some(token) = expected.access_token {
            let want = ath(token);
            if !claims.ath.as_deref().is_some_and(|a| crate::jose::ct_eq(a.as_bytes(), want.as_bytes())) {
                return Err(invalid("the DPoP proof ath does not match the access token"));
            }
        }
        let jkt = jwk.thumbprint();
        // Replay (§11.1): each jti once per key and target, for the acceptance window.
        let key = b64_encode(ring::digest::digest(
            &ring::digest::SHA256,
            format!("{}\u{0}{jti}\u{0}{}", jkt.0, normalize_htu(&htu).unwrap_or_default()).as_bytes(),
        ));
        let fresh = self
            .store
            .remember_dpop_jti(&key, now.saturating_add(self.max_age_secs).saturating_add(FUTURE_SKEW_SECS), now)
            .await?;
        if !fresh {
            return Err(invalid("the DPoP proof was already used (jti replay)"));
        }
        Ok(VerifiedProof { jwk, jkt })
    }
}

#[cfg(test)]
mod tests;
