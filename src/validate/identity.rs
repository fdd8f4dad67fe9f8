//! The client-identity challenges (Wire's profile, as step-ca checks them):
//! `wire-dpop-01` answered with a client-identity access token, `wire-oidc-01` with an
//! OIDC id_token. The checks are pure; the token signatures are checked against idca's
//! published keys through [`IdentityTokens`].

use serde_json::Value;

use super::ValidationError;
use crate::clock::UnixTime;
use crate::dpop::normalize_htu;
use crate::jose::{CompactJws, JsonDepth, Jwk};

/// Verifies tokens signed by idca's authorization server (by `kid`, or by a `jwk` in the
/// header that is one of its published keys) and returns their claims.
#[async_trait::async_trait]
pub trait IdentityTokens: Send + Sync {
    async fn verify(&self, token: &str, typ: &str) -> Result<Value, String>;
}

/// What a `wire-dpop-01` answer must match.
#[derive(Debug, Clone)]
pub struct DpopChallenge<'a> {
    /// The challenge's `target`: `{public URL}/clients/{device}/access-token`.
    pub target: &'a str,
    /// The challenge URL.
    pub url: &'a str,
    /// The challenge token.
    pub token: &'a str,
    /// RFC 7638 thumbprint of the ACME account key (the DPoP key must be it).
    pub account_jkt: &'a str,
    /// Every thumbprint of the account key a token's `cnf.kid` may carry
    /// (`Jwk::thumbprints`: SHA-256, and SHA-384/512 for P-384/P-521 as Wire's clients).
    pub account_thumbprints: &'a [String],
    pub client_id: &'a str,
    pub handle: &'a str,
    pub name: &'a str,
    /// How deeply the embedded proof's JSON may nest.
    pub depth: JsonDepth,
}

/// What a `wire-oidc-01` answer must match.
#[derive(Debug, Clone)]
pub struct OidcChallenge<'a> {
    /// The challenge's `target`: the issuer.
    pub issuer: &'a str,
    pub url: &'a str,
    /// `{token}.{account thumbprint}`, for each thumbprint of the account key (Wire's
    /// clients hash P-384 and P-521 keys with SHA-384 and SHA-512).
    pub key_authorizations: &'a [String],
    pub handle: &'a str,
    pub name: &'a str,
    /// Which client the id_token is for, and which claims carry the identity.
    pub claims: &'a OidcClaimMap,
}

/// How an id_token names the user (`[devices]`): the client its `aud` must name (always,
/// idca's own id_tokens included), and the claims with the handle and the display name.
/// step-ca maps claims with a template; Wire's own setup maps `preferred_username` to
/// `wireapp://%40{preferred_username}@{domain}`.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcClaimMap {
    pub client_id: String,
    /// The claim with the handle; empty: `handle`, else `preferred_username`.
    pub handle_claim: String,
    /// The claim with the display name.
    pub name_claim: String,
}

impl Default for OidcClaimMap {
    fn default() -> Self {
        Self { client_id: "idca-cli".into(), handle_claim: String::new(), name_claim: "name".into() }
    }
}

impl OidcClaimMap {
    /// The handle the id_token gives, as `wireapp://%40{handle}@{domain}`: the claim may
    /// hold that URI, `{handle}@{domain}` (then of this `domain`), or the bare handle.
    fn handle_of(&self, t: &Value, domain: &str) -> Option<String> {
        let value = match self.handle_claim.as_str() {
            "" => Some(s(t, "handle")).filter(|h| !h.is_empty()).unwrap_or_else(|| s(t, "preferred_username")),
            claim => s(t, claim),
        };
        if value.is_empty() {
            return None;
        }
        if value.starts_with("wireapp://") {
            return Some(value.to_owned());
        }
        match value.rsplit_once('@') {
            Some((h, d)) if d.eq_ignore_ascii_case(domain) => Some(format!("wireapp://%40{h}@{domain}")),
            Some(_) => None,
            None => Some(format!("wireapp://%40{value}@{domain}")),
        }
    }
}

/// Whether the `aud` claim (a string or an array) names `client_id` (OIDC Core §3.1.3.7).
fn audience_names(t: &Value, client_id: &str) -> bool {
    match t.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    }
}

/// Leeway on time claims, as step-ca.
const LEEWAY: i64 = 60;

fn s<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn unauthorized(m: &str) -> ValidationError {
    ValidationError::Unauthorized(m.to_owned())
}

fn check_times(claims: &Value, now: UnixTime, what: &str) -> Result<(), ValidationError> {
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| unauthorized(&format!("{what}: no exp")))?;
    if exp < now - LEEWAY {
        return Err(unauthorized(&format!("{what} has expired")));
    }
    if exp > now + 3600 + LEEWAY {
        return Err(unauthorized(&format!("{what} lives more than an hour")));
    }
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(unauthorized(&format!("{what} is not yet valid")));
    }
    Ok(())
}

/// `wire-dpop-01`, step-ca's `parseAndVerifyWireAccessToken` as numbered steps:
/// 1. the access token is an `at+jwt` signed by idca's authorization server;
/// 2. `iss` is the challenge target and `aud` the challenge URL; times within leeway and
///    `exp` at most an hour ahead;
/// 3. `chal` is the challenge token, `cnf.kid` the ACME account key's thumbprint,
///    `client_id` and `sub` the device's client id, `scope` `wire_client_id`,
///    `api_version` 5;
/// 4. the embedded `proof` is signed by the account key (its `jwk` has that thumbprint);
/// 5. the proof's `aud`, `htu`, times, `sub`, `nonce` and `chal` agree with the token and
///    the challenge;
/// 6. the proof's `handle` and `name` are the identifier's.
pub async fn check_wire_dpop(
    keys: &dyn IdentityTokens,
    access_token: &str,
    c: &DpopChallenge<'_>,
    now: UnixTime,
) -> Result<(), ValidationError> {
    // 1.
    let t = keys.verify(access_token, "at+jwt").await.map_err(|e| unauthorized(&format!("access token: {e}")))?;
    // 2.
    if s(&t, "iss") != c.target {
        return Err(unauthorized("access token iss is not the challenge target"));
    }
    if s(&t, "aud") != c.url {
        return Err(unauthorized("access token aud is not the challenge URL"));
    }
    check_times(&t, now, "the access token")?;
    // 3.
    if s(&t, "chal") != c.token {
        return Err(unauthorized("access token chal is not the challenge token"));
    }
    let kid = t.get("cnf").map(|cnf| s(cnf, "kid")).unwrap_or_default();
    if !c.account_thumbprints.iter().any(|j| j == kid) {
        return Err(unauthorized("the DPoP key (cnf.kid) is not the ACME account key"));
    }
    if s(&t, "client_id") != c.client_id || s(&t, "sub") != c.client_id {
        return Err(unauthorized("access token client_id is not this device"));
    }
    if s(&t, "scope") != "wire_client_id" || t.get("api_version").and_then(Value::as_u64) != Some(5) {
        return Err(unauthorized("access token scope or api_version is wrong"));
    }
    // 4.
    let proof = s(&t, "proof");
    let jws = CompactJws::parse(proof, c.depth).map_err(|_| unauthorized("the embedded proof is not a JWT"))?;
    let jwk = jws.header.jwk.as_ref().ok_or_else(|| unauthorized("the embedded proof has no jwk"))?;
    let jwk = Jwk::from_value(jwk).map_err(|_| unauthorized("the embedded proof jwk is invalid"))?;
    if jwk.thumbprint().0 != c.account_jkt {
        return Err(unauthorized("the embedded proof is not signed by the ACME account key"));
    }
    let p: Value = jws.verify(&jwk).map_err(|_| unauthorized("the embedded proof signature is invalid"))?;
    // 5.
    if s(&p, "aud") != c.url {
        return Err(unauthorized("proof aud is not the challenge URL"));
    }
    if normalize_htu(s(&p, "htu")).is_none() || normalize_htu(s(&p, "htu")) != normalize_htu(c.target) {
        return Err(unauthorized("proof htu is not the challenge target"));
    }
    check_times(&p, now, "the proof")?;
    if s(&p, "sub") != c.client_id {
        return Err(unauthorized("proof sub is not this device"));
    }
    if s(&p, "nonce").is_empty() || s(&p, "nonce") != s(&t, "nonce") {
        return Err(unauthorized("proof and token nonces differ"));
    }
    if s(&p, "chal") != c.token {
        return Err(unauthorized("proof chal is not the challenge token"));
    }
    // 6.
    if s(&p, "handle") != c.handle || s(&p, "name") != c.name {
        return Err(unauthorized("proof handle or name is not the identifier's"));
    }
    Ok(())
}

/// `wire-oidc-01`, as step-ca checks it:
/// 1. an id_token signed by idca's authorization server (or the configured provider),
///    issued by the target issuer, for the configured client (`aud`), unexpired;
/// 2. `keyauth` is `{challenge token}.{account thumbprint}`;
/// 3. `acme_aud` is the challenge URL;
/// 4. the display name (`name`, or the configured claim) is the identifier's and the
///    handle (`handle`, else `preferred_username`, or the configured claim; as the URI,
///    `{handle}@{domain}` or bare) its handle.
pub async fn check_wire_oidc(
    keys: &dyn IdentityTokens,
    id_token: &str,
    c: &OidcChallenge<'_>,
    now: UnixTime,
) -> Result<(), ValidationError> {
    // 1.
    let t = keys.verify(id_token, "JWT").await.map_err(|e| unauthorized(&format!("id_token: {e}")))?;
    if s(&t, "iss") != c.issuer {
        return Err(unauthorized("id_token iss is not the challenge target"));
    }
    if !audience_names(&t, &c.claims.client_id) {
        return Err(unauthorized(&format!(
            "id_token aud does not name the client {} (devices.oidc_client_id)",
            c.claims.client_id
        )));
    }
    let exp = t.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp < now - LEEWAY {
        return Err(unauthorized("id_token has expired"));
    }
    // 2.
    let keyauth = s(&t, "keyauth").as_bytes();
    if !c.key_authorizations.iter().any(|k| crate::jose::ct_eq(keyauth, k.as_bytes())) {
        return Err(unauthorized("id_token keyauth is not this challenge's key authorization"));
    }
    // 3.
    if s(&t, "acme_aud") != c.url {
        return Err(unauthorized("id_token acme_aud is not the challenge URL"));
    }
    // 4.
    if s(&t, &c.claims.name_claim) != c.name {
        return Err(unauthorized(&format!("id_token {} is not the identifier's display name", c.claims.name_claim)));
    }
    let domain = c.handle.rsplit_once('@').map_or("", |(_, d)| d);
    if c.claims.handle_of(&t, domain).as_deref() != Some(c.handle) {
        return Err(unauthorized("id_token handle is not the identifier's"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! One test per binding of each challenge: the good answer passes, and each single
    //! change to it is refused as `unauthorized`.
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;
    use crate::jose::SigningKey;

    const NOW: UnixTime = 1_800_000_000;
    const TARGET: &str = "https://idca.test/clients/9ff0457928ebe5f4/access-token";
    const URL: &str = "https://idca.test/acme/chall/abc";
    const TOKEN: &str = "Gvg5AyOaw0uIQOWKE8lCSIP9nIYwcQiY";
    const CLIENT: &str = "wireapp://K9gGyX8OAK8aH8Myj6djqQ!9ff0457928ebe5f4@wire.test";
    const HANDLE: &str = "wireapp://%40alice_wire@wire.test";
    const NAME: &str = "Alice Smith";
    const ISSUER: &str = "https://idca.test";

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    /// idca's authorization server: checks its own signature and the `typ`.
    struct Server(SigningKey);

    #[async_trait::async_trait]
    impl IdentityTokens for Server {
        async fn verify(&self, token: &str, typ: &str) -> Result<Value, String> {
            let jws = CompactJws::parse(token, JsonDepth::default()).map_err(|e| e.to_string())?;
            if jws.header.typ.as_deref() != Some(typ) {
                return Err("wrong typ".into());
            }
            jws.verify(self.0.jwk()).map_err(|e| e.to_string())
        }
    }

    fn proof_claims() -> Value {
        json!({"sub": CLIENT, "aud": URL, "iat": NOW, "nbf": NOW, "exp": NOW + 120, "jti": "j1",
               "nonce": "WE88EvOBzbqGerznM-2P_A", "htm": "POST", "htu": TARGET, "chal": TOKEN,
               "handle": HANDLE, "team": "wire", "name": NAME})
    }

    fn token_claims(proof: &str, jkt: &str) -> Value {
        json!({"iss": TARGET, "aud": URL, "iat": NOW, "nbf": NOW, "exp": NOW + 300, "jti": "j2", "chal": TOKEN,
               "cnf": {"kid": jkt}, "client_id": CLIENT, "sub": CLIENT, "scope": "wire_client_id",
               "api_version": 5, "nonce": "WE88EvOBzbqGerznM-2P_A", "proof": proof})
    }

    fn dpop(server: &Server, account: &SigningKey, token: &str) -> Result<(), ValidationError> {
        block_on(dpop_async(server, account, token))
    }

    async fn dpop_async(server: &Server, account: &SigningKey, token: &str) -> Result<(), ValidationError> {
        let c = DpopChallenge {
            target: TARGET,
            url: URL,
            token: TOKEN,
            account_jkt: account.kid(),
            account_thumbprints: &[account.kid().to_owned()],
            client_id: CLIENT,
            handle: HANDLE,
            name: NAME,
            depth: JsonDepth::default(),
        };
        check_wire_dpop(server, token, &c, NOW).await
    }

    /// Runs a future that never waits (the test key server answers at once).
    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(f)
    }

    #[test]
    fn wire_dpop_01_refuses_each_broken_binding() {
        let (server, account) = (Server(key()), key());
        let proof = account.sign_embedding_jwk("dpop+jwt", &proof_claims()).unwrap();
        let good = token_claims(&proof, account.kid());
        let at = |claims: &Value| server.0.sign_embedding_jwk("at+jwt", claims).unwrap();
        assert!(dpop(&server, &account, &at(&good)).is_ok());

        let token_changes: &[(&str, Value)] = &[
            ("iss", json!("https://elsewhere.test/clients/1/access-token")),
            ("aud", json!("https://idca.test/acme/chall/other")),
            ("exp", json!(NOW - 3600)),
            ("exp", json!(NOW + 7200)),
            ("chal", json!("another-challenge-token")),
            ("cnf", json!({"kid": key().kid()})),
            ("client_id", json!("wireapp://K9gGyX8OAK8aH8Myj6djqQ!1@wire.test")),
            ("sub", json!("wireapp://K9gGyX8OAK8aH8Myj6djqQ!1@wire.test")),
            ("scope", json!("openid")),
            ("api_version", json!(4)),
            ("nonce", json!("another-nonce")),
            ("proof", json!("not.a.jwt")),
        ];
        for (k, v) in token_changes {
            let mut t = good.clone();
            t[*k] = v.clone();
            let r = dpop(&server, &account, &at(&t));
            assert!(matches!(r, Err(ValidationError::Unauthorized(_))), "token {k}: {r:?}");
        }

        let proof_changes: &[(&str, Value)] = &[
            ("aud", json!("https://idca.test/acme/chall/other")),
            ("htu", json!("https://idca.test/clients/1/access-token")),
            ("exp", json!(NOW - 3600)),
            ("sub", json!("wireapp://K9gGyX8OAK8aH8Myj6djqQ!1@wire.test")),
            ("chal", json!("another-challenge-token")),
            ("handle", json!("wireapp://%40bob@wire.test")),
            ("name", json!("Bob")),
        ];
        for (k, v) in proof_changes {
            let mut p = proof_claims();
            p[*k] = v.clone();
            let proof = account.sign_embedding_jwk("dpop+jwt", &p).unwrap();
            let r = dpop(&server, &account, &at(&token_claims(&proof, account.kid())));
            assert!(matches!(r, Err(ValidationError::Unauthorized(_))), "proof {k}: {r:?}");
        }

        // A proof signed by another key, a token not signed by idca, and a token with
        // the wrong typ.
        let other = key();
        let foreign_proof = other.sign_embedding_jwk("dpop+jwt", &proof_claims()).unwrap();
        assert!(dpop(&server, &account, &at(&token_claims(&foreign_proof, account.kid()))).is_err());
        assert!(dpop(&server, &account, &other.sign_embedding_jwk("at+jwt", &good).unwrap()).is_err());
        assert!(dpop(&server, &account, &server.0.sign_embedding_jwk("JWT", &good).unwrap()).is_err());
    }

    #[test]
    fn wire_oidc_01_refuses_each_broken_binding() {
        let server = Server(key());
        let keyauth = format!("{TOKEN}.thumbprint");
        let map = OidcClaimMap::default();
        let c = OidcChallenge {
            issuer: ISSUER,
            url: URL,
            key_authorizations: std::slice::from_ref(&keyauth),
            handle: HANDLE,
            name: NAME,
            claims: &map,
        };
        let good = json!({"iss": ISSUER, "sub": "alice", "aud": "idca-cli", "iat": NOW, "exp": NOW + 300,
                          "keyauth": keyauth, "acme_aud": URL, "name": NAME, "handle": HANDLE});
        let id = |claims: &Value| server.0.sign("JWT", claims).unwrap();
        assert!(block_on(check_wire_oidc(&server, &id(&good), &c, NOW)).is_ok());
        let changes: &[(&str, Value)] = &[
            ("iss", json!("https://elsewhere.test")),
            ("exp", json!(NOW - 3600)),
            ("keyauth", json!(format!("{TOKEN}.another-thumbprint"))),
            ("keyauth", Value::Null),
            ("acme_aud", json!("https://idca.test/acme/chall/other")),
            ("name", json!("Bob")),
            ("handle", json!("wireapp://%40bob@wire.test")),
            ("aud", json!("another-client")),
            ("aud", json!(["another-client"])),
            ("aud", Value::Null),
        ];
        for (k, v) in changes {
            let mut t = good.clone();
            t[*k] = v.clone();
            let r = block_on(check_wire_oidc(&server, &id(&t), &c, NOW));
            assert!(matches!(r, Err(ValidationError::Unauthorized(_))), "{k}: {r:?}");
        }
        assert!(block_on(check_wire_oidc(&server, &key().sign("JWT", &good).unwrap(), &c, NOW)).is_err());
        // An external provider's bare handle names the same user; another bare handle not.
        let mut bare = good.clone();
        bare["handle"] = json!("alice_wire");
        assert!(block_on(check_wire_oidc(&server, &id(&bare), &c, NOW)).is_ok());
        bare["handle"] = json!("bob");
        assert!(block_on(check_wire_oidc(&server, &id(&bare), &c, NOW)).is_err());
        // An audience list naming the client is fine.
        let mut listed = good.clone();
        listed["aud"] = json!(["other", "idca-cli"]);
        assert!(block_on(check_wire_oidc(&server, &id(&listed), &c, NOW)).is_ok());
    }

    /// A provider with only `preferred_username` (Wire's Keycloak setup): the handle is
    /// taken from it, bare or as `{handle}@{domain}`; configured claims replace the
    /// defaults.
    #[test]
    fn wire_oidc_01_maps_the_providers_claims() {
        let server = Server(key());
        let keyauth = format!("{TOKEN}.thumbprint");
        let id = |claims: &Value| server.0.sign("JWT", claims).unwrap();
        let base = json!({"iss": ISSUER, "aud": "idca-cli", "exp": NOW + 300, "keyauth": keyauth, "acme_aud": URL});
        let check = |map: &OidcClaimMap, extra: Value| {
            let mut t = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                t[k] = v.clone();
            }
            let c = OidcChallenge {
                issuer: ISSUER,
                url: URL,
                key_authorizations: std::slice::from_ref(&keyauth),
                handle: HANDLE,
                name: NAME,
                claims: map,
            };
            block_on(check_wire_oidc(&server, &id(&t), &c, NOW)).is_ok()
        };
        let default = OidcClaimMap::default();
        assert!(check(&default, json!({"name": NAME, "preferred_username": "alice_wire"})));
        assert!(check(&default, json!({"name": NAME, "preferred_username": "alice_wire@wire.test"})));
        assert!(!check(&default, json!({"name": NAME, "preferred_username": "alice_wire@other.test"})));
        assert!(!check(&default, json!({"name": NAME, "preferred_username": "alice"})));
        assert!(!check(&default, json!({"name": NAME})), "no handle at all");
        // `handle` wins over preferred_username when both are there.
        assert!(!check(&default, json!({"name": NAME, "handle": "bob", "preferred_username": "alice_wire"})));
        let custom = OidcClaimMap { handle_claim: "nickname".into(), name_claim: "display".into(), ..default };
        assert!(check(&custom, json!({"display": NAME, "nickname": "alice_wire", "handle": "bob"})));
        assert!(!check(&custom, json!({"name": NAME, "handle": "alice_wire"})));
    }
}
