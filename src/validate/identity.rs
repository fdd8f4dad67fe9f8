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
    /// `{token}.{account thumbprint}`.
    pub key_authorization: &'a str,
    pub handle: &'a str,
    pub name: &'a str,
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
    if t.get("cnf").map(|cnf| s(cnf, "kid")) != Some(c.account_jkt) {
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
/// 1. an id_token signed by idca's authorization server, issued by the target issuer,
///    unexpired;
/// 2. `keyauth` is `{challenge token}.{account thumbprint}`;
/// 3. `acme_aud` is the challenge URL;
/// 4. `name` is the identifier's display name and `handle` its handle (set by idca from
///    the user's record, never from the request).
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
    let exp = t.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp < now - LEEWAY {
        return Err(unauthorized("id_token has expired"));
    }
    // 2.
    if !crate::jose::ct_eq(s(&t, "keyauth").as_bytes(), c.key_authorization.as_bytes()) {
        return Err(unauthorized("id_token keyauth is not this challenge's key authorization"));
    }
    // 3.
    if s(&t, "acme_aud") != c.url {
        return Err(unauthorized("id_token acme_aud is not the challenge URL"));
    }
    // 4.
    if s(&t, "name") != c.name {
        return Err(unauthorized("id_token name is not the identifier's"));
    }
    // An external provider may give the bare handle; it names the identifier's user when
    // `wireapp://%40{handle}@{domain}` is the identifier's handle.
    let handle = s(&t, "handle");
    let domain = c.handle.rsplit_once('@').map_or("", |(_, d)| d);
    if handle.is_empty() || (handle != c.handle && format!("wireapp://%40{handle}@{domain}") != c.handle) {
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
        let c = OidcChallenge { issuer: ISSUER, url: URL, key_authorization: &keyauth, handle: HANDLE, name: NAME };
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
    }
}
