//! DPoP (RFC 9449) through the HTTP surface: the token endpoint, userinfo, the ACME API.

use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::client::b64;
use crate::oauth::{Browser, oauth_server, verify_jwt};

/// A device key making DPoP proofs.
pub(crate) struct DpopKey {
    pair: EcdsaKeyPair,
}

impl DpopKey {
    pub(crate) fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self { pair: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap() }
    }

    pub(crate) fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty":"EC","crv":"P-256","x":b64(&p[1..33]),"y":b64(&p[33..])})
    }

    pub(crate) fn jkt(&self) -> String {
        let j = self.jwk();
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, j["x"], j["y"]);
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
    }

    /// A proof for `htm htu`, with a nonce and an access token's `ath` when given.
    pub(crate) fn proof(&self, htm: &str, htu: &str, nonce: Option<&str>, access_token: Option<&str>) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut claims = json!({"jti": idca::model::random_token(), "htm": htm, "htu": htu, "iat": now});
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        if let Some(t) = access_token {
            claims["ath"] = json!(b64(ring::digest::digest(&ring::digest::SHA256, t.as_bytes())));
        }
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.pair.sign(&ring::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// The PKCE pair (RFC 7636 appendix B) the public client `idca-cli` uses in these tests.
pub(crate) const CLI_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub(crate) const CLI_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// `idca-cli`'s authorization request at `base` for `scope` (space-separated, `%20`).
pub(crate) fn cli_authorize_url(base: &str, scope: &str) -> String {
    format!(
        "{base}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=http://127.0.0.1/callback\
         &scope={scope}&code_challenge={CLI_CHALLENGE}&code_challenge_method=S256"
    )
}

/// `idca-cli`'s token request for `code` (with the PKCE verifier).
pub(crate) fn cli_code_form(code: &str) -> [(&'static str, &str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", CLI_VERIFIER),
        ("client_id", "idca-cli"),
        ("redirect_uri", "http://127.0.0.1/callback"),
    ]
}

/// The `code` of a redirect to the client.
pub(crate) fn code_of(location: &str) -> String {
    location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned()
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub(crate) async fn send(r: reqwest::RequestBuilder) -> Reply {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Reply { status, headers, body: r.json().await.unwrap_or(Value::Null) }
}

/// A token request from the confidential `backend` client, with these proofs.
async fn backend_token(b: &Browser, proofs: &[String]) -> Reply {
    let mut r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("backend", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "acme")]);
    for p in proofs {
        r = r.header("DPoP", p);
    }
    send(r).await
}

/// Gets a nonce the way a client does: from the use_dpop_nonce error.
pub(crate) async fn token_nonce(b: &Browser, key: &DpopKey) -> String {
    let url = format!("{}/oauth/token", b.base);
    let r = backend_token(b, &[key.proof("POST", &url, None, None)]).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("use_dpop_nonce")), "{}", r.body);
    r.headers["dpop-nonce"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn token_endpoint_asks_for_a_nonce_then_binds_the_token() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let key = DpopKey::new();
    let url = format!("{}/oauth/token", b.base);
    let nonce = token_nonce(&b, &key).await;
    let r = backend_token(&b, &[key.proof("POST", &url, Some(&nonce), None)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    assert!(r.headers.get("dpop-nonce").is_some());
    let at = verify_jwt(&b, r.body["access_token"].as_str().unwrap(), "at+jwt").await;
    assert_eq!(at["cnf"]["jkt"], key.jkt());
    // Introspection shows the binding.
    let i: Value = b
        .http
        .post(format!("{}/oauth/introspect", b.base))
        .basic_auth("backend", Some("s3cret-s3cret-s3cret"))
        .form(&[("token", r.body["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((i["token_type"].as_str(), i["cnf"]["jkt"].as_str()), (Some("DPoP"), Some(key.jkt().as_str())));
    let meta: Value = b
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
    server.stop().await;
}

#[tokio::test]
async fn rejects_replayed_proofs_wrong_htm_htu_and_two_headers() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let key = DpopKey::new();
    let url = format!("{}/oauth/token", b.base);
    let nonce = token_nonce(&b, &key).await;
    let proof = key.proof("POST", &url, Some(&nonce), None);
    assert_eq!(backend_token(&b, std::slice::from_ref(&proof)).await.status, 200);
    for (proofs, why) in [
        (vec![proof.clone()], "replayed jti"),
        (vec![key.proof("GET", &url, Some(&nonce), None)], "htm"),
        (vec![key.proof("POST", &format!("{}/oauth/other", b.base), Some(&nonce), None)], "htu"),
        (vec![key.proof("POST", &url, Some("forged-nonce"), None)], "nonce"),
        (vec![key.proof("POST", &url, Some(&nonce), None), key.proof("POST", &url, Some(&nonce), None)], "two headers"),
        (vec!["not.a.proof".to_owned()], "malformed"),
    ] {
        let r = backend_token(&b, &proofs).await;
        assert_eq!(r.status, 400, "{why}");
        assert!(
            matches!(r.body["error"].as_str(), Some("invalid_dpop_proof") | Some("use_dpop_nonce")),
            "{why}: {}",
            r.body
        );
    }
    server.stop().await;
}

/// Code + PKCE for the public client with a DPoP key; returns the token response.
async fn public_dpop_tokens(b: &mut Browser, key: &DpopKey, dpop_jkt: Option<&str>) -> Reply {
    let mut url = cli_authorize_url(&b.base, "openid%20profile");
    if let Some(j) = dpop_jkt {
        url.push_str(&format!("&dpop_jkt={j}"));
    }
    let first = b.get(&url).await;
    let done = if first.status == 303 { first } else { b.login(&first, "alice", "wonderland").await };
    let code = code_of(&done.location());
    let token_url = format!("{}/oauth/token", b.base);
    let nonce = token_nonce(b, key).await;
    let form = cli_code_form(&code);
    send(b.http.post(&token_url).header("DPoP", key.proof("POST", &token_url, Some(&nonce), None)).form(&form)).await
}

#[tokio::test]
async fn bound_tokens_at_userinfo() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let key = DpopKey::new();
    let t = public_dpop_tokens(&mut b, &key, None).await;
    assert_eq!(t.body["token_type"], "DPoP", "{}", t.body);
    let token = t.body["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}/oauth/userinfo", b.base);
    // First a use_dpop_nonce challenge (401) with the resource's nonce.
    let r = send(
        b.http
            .get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", key.proof("GET", &url, None, Some(&token))),
    )
    .await;
    assert_eq!(r.status, 401);
    let challenge = r.headers["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("DPoP") && challenge.contains("use_dpop_nonce"), "{challenge}");
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let ok = send(
        b.http
            .get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", key.proof("GET", &url, Some(&nonce), Some(&token))),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["sub"], "alice");
    // The bound token as Bearer, a wrong ath, another key, no proof: all refused.
    let bearer = send(b.http.get(&url).bearer_auth(&token)).await;
    assert_eq!(bearer.status, 401);
    let other = DpopKey::new();
    for (proof, why) in [
        (Some(key.proof("GET", &url, Some(&nonce), Some("another token"))), "ath"),
        (Some(other.proof("GET", &url, Some(&nonce), Some(&token))), "other key"),
        (Some(key.proof("POST", &url, Some(&nonce), Some(&token))), "htm"),
        (None, "no proof"),
    ] {
        let mut r = b.http.get(&url).header("Authorization", format!("DPoP {token}"));
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        let r = send(r).await;
        assert_eq!(r.status, 401, "{why}");
        assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("DPoP"), "{why}");
    }
    server.stop().await;
}

#[tokio::test]
async fn public_refresh_tokens_are_bound_and_checked_before_use() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let key = DpopKey::new();
    let t = public_dpop_tokens(&mut b, &key, None).await;
    let refresh = t.body["refresh_token"].as_str().unwrap().to_owned();
    let url = format!("{}/oauth/token", b.base);
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "idca-cli")];
    // Without a proof, or with another key: refused, and the token is not used up.
    let other = DpopKey::new();
    let nonce = token_nonce(&b, &other).await;
    let r = send(b.http.post(&url).form(&form)).await;
    assert_eq!(r.body["error"], "invalid_dpop_proof", "{}", r.body);
    let r = send(b.http.post(&url).header("DPoP", other.proof("POST", &url, Some(&nonce), None)).form(&form)).await;
    assert_eq!(r.body["error"], "invalid_dpop_proof", "{}", r.body);
    let r = send(b.http.post(&url).header("DPoP", key.proof("POST", &url, Some(&nonce), None)).form(&form)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    server.stop().await;
}

#[tokio::test]
async fn dpop_jkt_binds_the_code_to_the_key() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let planned = DpopKey::new();
    let thief = DpopKey::new();
    let r = public_dpop_tokens(&mut b, &thief, Some(&planned.jkt())).await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{}", r.body);
    let r = public_dpop_tokens(&mut b, &planned, Some(&planned.jkt())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn the_acme_api_accepts_dpop_bound_tokens() {
    let server = oauth_server(|c| c.acme.require_token = true).await;
    let b = Browser::new(&server);
    let key = DpopKey::new();
    let token_url = format!("{}/oauth/token", b.base);
    let nonce = token_nonce(&b, &key).await;
    let t = backend_token(&b, &[key.proof("POST", &token_url, Some(&nonce), None)]).await;
    let token = t.body["access_token"].as_str().unwrap().to_owned();
    let mut c = crate::client::RawClient::new(&server, crate::client::Key::p256()).await;
    let new_account = c.url("newAccount");
    // The ACME client sends Authorization: DPoP and a proof for the ACME URL.
    let jws = c.jws(&new_account, Some(&json!({"termsOfServiceAgreed": true})), &Default::default()).await;
    let post = |proof: String| {
        c.http
            .post(&new_account)
            .header("content-type", "application/jose+json")
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .body(jws.to_string())
            .send()
    };
    let r = post(key.proof("POST", &new_account, None, Some(&token))).await.unwrap();
    assert_eq!(r.status(), 401);
    let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let r = post(key.proof("POST", &new_account, Some(&nonce), Some(&token))).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    c.bearer = Some(token);
    c.new_order(&["d.example.test"]).await.assert_problem(401, "unauthorized");
    server.stop().await;
}

/// The replay store is bounded (`limits.dpop_jti_max`): past it, fresh proofs are refused
/// with 429 and Retry-After until older ones expire; replays are still replays.
#[tokio::test]
async fn the_replay_store_is_bounded() {
    let server = oauth_server(|c| c.limits.dpop_jti_max = 2).await;
    let b = Browser::new(&server);
    let key = DpopKey::new();
    let url = format!("{}/oauth/token", b.base);
    let nonce = token_nonce(&b, &key).await;
    let first = key.proof("POST", &url, Some(&nonce), None);
    assert_eq!(backend_token(&b, std::slice::from_ref(&first)).await.status, 200);
    assert_eq!(backend_token(&b, &[key.proof("POST", &url, Some(&nonce), None)]).await.status, 200);
    let full = backend_token(&b, &[key.proof("POST", &url, Some(&nonce), None)]).await;
    assert_eq!(full.status, 429, "{}", full.body);
    assert_eq!(full.body["error"], "temporarily_unavailable");
    assert!(full.headers.get("retry-after").is_some());
    assert_eq!(backend_token(&b, &[first]).await.body["error"], "invalid_dpop_proof", "a replay stays a replay");
    server.stop().await;
}

/// A DPoP proof signed with P-521 (ES512, Wire's cipher suite 5) binds a token as ES256
/// does, and discovery says ES512 is accepted.
#[tokio::test]
async fn es512_proofs_bind_tokens() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let key = crate::client::Key::p521();
    let url = format!("{}/oauth/token", b.base);
    let proof = |nonce: Option<&str>| {
        let header = json!({"typ": "dpop+jwt", "alg": "ES512", "jwk": key.jwk()});
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut claims = json!({"jti": idca::model::random_token(), "htm": "POST", "htu": url, "iat": now});
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        format!("{input}.{}", b64(key.sign(input.as_bytes())))
    };
    let r = backend_token(&b, &[proof(None)]).await;
    assert_eq!(r.body["error"], "use_dpop_nonce", "{}", r.body);
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let r = backend_token(&b, &[proof(Some(&nonce))]).await;
    assert_eq!((r.status, r.body["token_type"].as_str()), (200, Some("DPoP")), "{}", r.body);
    let at = verify_jwt(&b, r.body["access_token"].as_str().unwrap(), "at+jwt").await;
    assert_eq!(at["cnf"]["jkt"], key.thumbprint());
    let meta: Value = b
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES512")));
    server.stop().await;
}
