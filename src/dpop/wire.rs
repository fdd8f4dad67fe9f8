//! Wire's DPoP profile (rusty-jwt-tools `dpop::verify`): the proof a device sends to
//! `POST /clients/{cid}/access-token`. It differs from RFC 9449: `exp`, `nbf`, `sub`,
//! `chal`, `handle`, `name` are required (`team` too, for a user in a team), and
//! freshness comes from the backend's single-use nonce and the `exp` cap, with brig's
//! small clock skew (`devices.max_skew_secs`, Wire: 1 s) on every time claim.

use serde::Deserialize;

use super::{DpopError, normalize_htu};
use crate::clock::UnixTime;
use crate::jose::{Algorithm, CompactJws, Jkt, JsonDepth, Jwk};

/// What the proof must say.
#[derive(Debug, Clone)]
pub struct WireExpected<'a> {
    /// The device's client id, `wireapp://{user}!{device}@{domain}` (`sub`).
    pub client_id: &'a str,
    /// The backend nonce handed out by `/clients/{cid}/nonce` (already taken, once).
    pub nonce: &'a str,
    /// `{public URL}/clients/{cid}/access-token`.
    pub htu: &'a str,
    /// `wireapp://%40{handle}@{domain}`.
    pub handle: &'a str,
    /// The user's team; empty for a user without one (then the proof's `team` is absent,
    /// null or empty).
    pub team: &'a str,
    pub name: &'a str,
    /// The latest `exp` accepted.
    pub max_exp: UnixTime,
    /// Clock skew tolerated on `iat`, `nbf` and `exp`, in seconds.
    pub max_skew_secs: i64,
    /// How deeply the proof's JSON may nest.
    pub depth: JsonDepth,
}

/// A verified Wire proof.
#[derive(Debug, Clone)]
pub struct WireProof {
    pub jkt: Jkt,
    pub jti: String,
    /// The ACME challenge URL the token is for.
    pub aud: String,
    /// The ACME challenge token.
    pub chal: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    aud: Option<String>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    nonce: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    chal: Option<String>,
    handle: Option<String>,
    team: Option<String>,
    name: Option<String>,
}

/// Verifies a Wire-profile proof, step by step:
/// 1. a JWT with `typ` `dpop+jwt`, an ES256, ES384, ES512 or EdDSA `alg` (Wire's cipher
///    suites; no RSA),
///    and a public `jwk` of that type;
/// 2. the signature with that `jwk`;
/// 3. every claim present: `sub aud iat nbf exp jti nonce htm htu chal handle name`, and
///    `team` when the user has one;
/// 4. `sub` is the device's client id;
/// 5. `nonce` is the backend nonce (compared in constant time);
/// 6. `htm` is POST and `htu` the access-token URL (normalised, no query);
/// 7. `iat` and `nbf` are not in the future, `exp` not in the past, and `exp` not beyond
///    `max_exp` (each within `max_skew_secs`, as brig checks them);
/// 8. `handle`, `team` and `name` are the user's.
pub fn verify_wire_proof(proof: &str, want: &WireExpected<'_>, now: UnixTime) -> Result<WireProof, DpopError> {
    let bad = |m: &str| DpopError::InvalidProof(m.to_owned());
    // 1.
    let jws = CompactJws::parse(proof, want.depth).map_err(|_| bad("the DPoP proof is not a JWT"))?;
    if jws.header.typ.as_deref() != Some("dpop+jwt") {
        return Err(bad("typ must be dpop+jwt"));
    }
    let alg = match Algorithm::parse(&jws.header.alg) {
        Ok(a @ (Algorithm::ES256 | Algorithm::ES384 | Algorithm::ES512 | Algorithm::EdDSA)) => a,
        _ => return Err(bad("unsupported algorithm: use ES256, ES384, ES512 or EdDSA")),
    };
    let jwk = jws.header.jwk.as_ref().ok_or_else(|| bad("the DPoP proof has no jwk"))?;
    let jwk = Jwk::from_value(jwk).map_err(|e| bad(&format!("DPoP proof jwk: {e}")))?;
    if !jwk.matches(alg) {
        return Err(bad("the DPoP proof jwk does not match its alg"));
    }
    // 2.
    let c: Claims = jws.verify(&jwk).map_err(|_| bad("bad signature"))?;
    // 3.
    let (Some(sub), Some(aud), Some(iat), Some(nbf), Some(exp), Some(jti), Some(nonce)) =
        (c.sub, c.aud, c.iat, c.nbf, c.exp, c.jti, c.nonce)
    else {
        return Err(bad("the proof needs sub, aud, iat, nbf, exp, jti and nonce"));
    };
    let (Some(htm), Some(htu), Some(chal), Some(handle), Some(name)) = (c.htm, c.htu, c.chal, c.handle, c.name) else {
        return Err(bad("the proof needs htm, htu, chal, handle and name"));
    };
    let team = c.team.unwrap_or_default();
    if jti.is_empty() || jti.len() > 256 || chal.is_empty() {
        return Err(bad("jti and chal must be non-empty"));
    }
    // 4.
    if sub != want.client_id {
        return Err(bad("sub is not this device's client id"));
    }
    // 5.
    if !crate::jose::ct_eq(nonce.as_bytes(), want.nonce.as_bytes()) {
        return Err(bad("nonce is not the backend nonce"));
    }
    // 6.
    if htm != "POST" {
        return Err(bad("htm must be POST"));
    }
    if htu.contains(['?', '#']) || normalize_htu(&htu).is_none() || normalize_htu(&htu) != normalize_htu(want.htu) {
        return Err(bad("htu is not the access-token URL"));
    }
    // 7.
    let skew = want.max_skew_secs;
    if iat > now.saturating_add(skew) {
        return Err(bad("the proof was issued in the future (iat)"));
    }
    if nbf > now.saturating_add(skew) {
        return Err(bad("the proof is not yet valid (nbf)"));
    }
    if exp < now.saturating_sub(skew) {
        return Err(bad("the proof has expired (exp)"));
    }
    // The same skew as the other time claims: a client sets `exp` from its own clock
    // (Wire's core-crypto: iat + the lifetime asked for).
    if exp > want.max_exp.saturating_add(skew) {
        return Err(bad("the proof lives too long (exp)"));
    }
    // 8.
    if handle != want.handle {
        return Err(bad("handle does not match the user"));
    }
    if team != want.team {
        return Err(bad(if want.team.is_empty() {
            "this user has no team: the proof's team must be absent or null"
        } else {
            "team does not match the user"
        }));
    }
    if name != want.name {
        return Err(bad("name does not match the user"));
    }
    Ok(WireProof { jkt: jwk.thumbprint(), jti, aud, chal })
}
