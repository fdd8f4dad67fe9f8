//! Defences that had no test of their own (issue 21): tokens never trusted for a key
//! they carry, and the JWT size cap.

use serde_json::{Value, json};

use crate::client::{Key, b64};
use crate::oauth::{Browser, authorize_with_login, exchange, oauth_server, public_client};

/// `token`'s claims re-signed by `key` with `header` (the forger's choice of header).
fn forged(token: &str, key: &Key, header: Value) -> String {
    let claims = token.split('.').nth(1).unwrap();
    let input = format!("{}.{claims}", b64(header.to_string()));
    format!("{input}.{}", b64(key.sign(input.as_bytes())))
}

async fn userinfo_status(b: &Browser, token: &str) -> u16 {
    let r = b.http.get(format!("{}/oauth/userinfo", b.base)).bearer_auth(token).send().await.unwrap();
    r.status().as_u16()
}

#[tokio::test]
async fn tokens_are_never_trusted_for_a_key_they_carry() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let (code, verifier, _) = authorize_with_login(&mut b, &cli, &["openid"]).await;
    let t = exchange(&b, &cli, code, verifier).await;
    let access = oauth2::TokenResponse::access_token(&t).secret().clone();
    assert_eq!(userinfo_status(&b, &access).await, 200);
    let kid: Value =
        serde_json::from_slice(&idca::jose::b64_decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    let kid = kid["kid"].clone();

    let mallory = Key::p256();
    let jwk = mallory.jwk();
    for (what, header) in [
        ("jwk", json!({"alg": "ES256", "typ": "at+jwt", "jwk": jwk})),
        ("jwk and idca's kid", json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jwk": jwk})),
        ("jku", json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jku": "https://mallory.example/jwks"})),
        ("x5u", json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x5u": "https://mallory.example/cert.pem"})),
        ("x5c", json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x5c": ["MIIB"]})),
        ("no kid", json!({"alg": "ES256", "typ": "at+jwt"})),
    ] {
        assert_eq!(userinfo_status(&b, &forged(&access, &mallory, header)).await, 401, "{what}");
    }
    // Past the JWT size cap (16 KiB): refused as a bad token, not a server error.
    let huge = format!("{access}{}", "A".repeat(20 * 1024));
    assert_eq!(userinfo_status(&b, &huge).await, 401);
    server.stop().await;
}

/// Every attribute of `name`'s Set-Cookie in `headers`, lower-cased, value dropped.
fn cookie_attributes(headers: &reqwest::header::HeaderMap, name: &str) -> Vec<String> {
    let set = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} cookie in {headers:?}"));
    let mut attrs: Vec<String> = set.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
    attrs.retain(|a| !a.starts_with("max-age="));
    attrs.sort();
    attrs
}

#[tokio::test]
async fn login_and_session_cookies_are_secure_http_only_lax_and_scoped_to_oauth() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let login = b.http.get(crate::dpop::cli_authorize_url(&b.base, "openid")).send().await.unwrap();
    let expected = ["httponly", "path=/oauth", "samesite=lax", "secure"];
    assert_eq!(cookie_attributes(login.headers(), "idca_login_"), expected);
    let login_cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = crate::oauth::Page { status: 200, headers: login.headers().clone(), text: login.text().await.unwrap() };
    let form = [
        ("request", page.field("request")),
        ("csrf", page.field("csrf")),
        ("username", "alice".to_owned()),
        ("password", crate::oauth::PASSWORD.to_owned()),
    ];
    let done =
        b.http.post(format!("{}/oauth/login", b.base)).header("cookie", login_cookie).form(&form).send().await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(cookie_attributes(done.headers(), "idca_session="), expected);
    server.stop().await;
}

/// RFC 9449 §11.1: a proof's `jti` is remembered in the store, so a restart does not make
/// a used proof good again.
#[tokio::test]
async fn a_used_dpop_proof_stays_used_across_a_restart() {
    let mut server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let url = format!("{}/oauth/token", b.base);
    let key = crate::dpop::DpopKey::new();
    let request = |http: &reqwest::Client, proof: &str| {
        http.post(&url)
            .basic_auth("backend", Some(crate::oauth::SECRET))
            .header("DPoP", proof)
            .form(&[("grant_type", "client_credentials"), ("scope", "acme")])
            .send()
    };
    let first = request(&b.http, &key.proof("POST", &url, None, None)).await.unwrap();
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof("POST", &url, Some(&nonce), None);
    assert_eq!(request(&b.http, &proof).await.unwrap().status(), 200);

    // The same process stops; a new one starts on the same data directory and port.
    let port: u16 = b.base.rsplit(':').next().unwrap().parse().unwrap();
    server.server.take().unwrap().stop().await;
    let mut config = server.config.clone();
    config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.management.listen = String::new();
    let restarted = idca::app::start(config, idca::app::StartOptions::default()).await.unwrap();
    assert_eq!(restarted.addr.port(), port);
    let replay = request(&b.http, &proof).await.unwrap();
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap_or_default().contains("already used"), "{body}");
    restarted.stop().await;
}

/// The data directory (keys, the store) is its owner's only: 0700 when created, and
/// made so again at start when something widened it.
#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = crate::harness::start().await;
    let dir = server.data_dir();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    server.server.take().unwrap().stop().await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = server.config.clone();
    config.management.listen = String::new();
    let restarted = idca::app::start(config, idca::app::StartOptions::default()).await.unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    restarted.stop().await;
}
