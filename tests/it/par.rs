//! Pushed authorization requests (RFC 9126) through the HTTP surface: the push (with each
//! client authentication), the request_uri at the authorization endpoint once and only
//! for its client, and clients that must push.

use serde_json::{Value, json};

use crate::client::Key;
use crate::client_auth::{TYPE, claims, keyed_client, signed};
use crate::dpop::{CLI_CHALLENGE, CLI_VERIFIER, send};
use crate::oauth::{Browser, PASSWORD, SECRET, oauth_server, query_param};

const WEBAPP_CB: &str = "https://app.example.test/cb";

fn webapp_request(state: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("redirect_uri", WEBAPP_CB.into()),
        ("scope", "openid profile".into()),
        ("state", state.into()),
        ("code_challenge", CLI_CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

async fn push(b: &Browser, client: (&str, &str), form: &[(&str, String)]) -> crate::dpop::Reply {
    send(b.http.post(format!("{}/oauth/par", b.base)).basic_auth(client.0, Some(client.1)).form(form)).await
}

fn authorize_url(b: &Browser, client_id: &str, request_uri: &str) -> String {
    format!("{}/oauth/authorize?client_id={client_id}&request_uri={}", b.base, idca::oauth::percent_encode(request_uri))
}

#[tokio::test]
async fn a_pushed_request_is_used_once_by_its_client() {
    let key = Key::p256();
    let jwks = json!({"keys": [key.jwk()]});
    let server = oauth_server(|c| {
        c.oauth.clients.push(keyed_client("keyed", |k| {
            k.jwks = Some(jwks);
            k.redirect_uris = vec!["https://keyed.example.test/cb".into()];
            k.scopes = vec!["openid".into()];
            k.grant_types = vec!["authorization_code".into()];
        }))
    })
    .await;
    let mut b = Browser::new(&server);
    let meta = send(b.http.get(format!("{}/.well-known/openid-configuration", b.base))).await.body;
    assert_eq!(meta["pushed_authorization_request_endpoint"], json!(format!("{}/oauth/par", b.base)));
    assert_eq!(meta["require_pushed_authorization_requests"], json!(false));

    let r = push(&b, ("webapp", SECRET), &webapp_request("st-1")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["expires_in"], 60);
    let request_uri = r.body["request_uri"].as_str().unwrap().to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"), "{request_uri}");

    // Another client presenting it: refused, and the request stays for its own client.
    let other = b.get(&authorize_url(&b, "idca-cli", &request_uri)).await;
    assert_eq!(other.status, 400, "{}", other.text);
    // The browser sends only client_id and request_uri; the pushed parameters apply
    // (the scope added here is ignored).
    let login = b.get(&(authorize_url(&b, "webapp", &request_uri) + "&scope=acme")).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let done = b.login(&login, "alice", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let redirect = done.location();
    assert!(redirect.starts_with(WEBAPP_CB), "{redirect}");
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("st-1"));
    let code = query_param(&redirect, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", WEBAPP_CB),
        ("code_verifier", CLI_VERIFIER),
    ];
    let t = send(b.http.post(format!("{}/oauth/token", b.base)).basic_auth("webapp", Some(SECRET)).form(&form)).await;
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!(t.body["scope"], "openid profile", "the pushed scope, not the query's");

    // Used once: the same request_uri again is refused (with a live session too).
    let again = b.get(&authorize_url(&b, "webapp", &request_uri)).await;
    assert_eq!(again.status, 400, "{}", again.text);
    let made_up = b.get(&authorize_url(&b, "webapp", "urn:ietf:params:oauth:request_uri:made-up")).await;
    assert_eq!(made_up.status, 400, "{}", made_up.text);

    // Pushes that fail: bad client secret, an unregistered redirect URI, no PKCE,
    // a pushed request_uri, a field twice, a client_id other than the authenticated one.
    let r = push(&b, ("webapp", "wrong"), &webapp_request("x")).await;
    assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{}", r.body);
    let mut bad: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    let mut f = webapp_request("x");
    f[1].1 = "https://evil.example/cb".into();
    bad.push(("redirect_uri", f));
    bad.push(("no PKCE", webapp_request("x").into_iter().filter(|(k, _)| !k.starts_with("code_")).collect()));
    let mut f = webapp_request("x");
    f.push(("request_uri", request_uri.clone()));
    bad.push(("request_uri pushed", f));
    let mut f = webapp_request("x");
    f.push(("state", "twice".into()));
    bad.push(("state twice", f));
    let mut f = webapp_request("x");
    f.push(("client_id", "keyed".into()));
    bad.push(("another client_id", f));
    for (what, f) in bad {
        let r = push(&b, ("webapp", SECRET), &f).await;
        assert_eq!((r.status, r.body["error"].as_str()), (400, Some("invalid_request")), "{what}: {}", r.body);
    }

    // A private_key_jwt client pushes with an assertion.
    let issuer = meta["issuer"].as_str().unwrap().to_owned();
    let form = [
        ("client_assertion_type", TYPE.to_owned()),
        ("client_assertion", signed(&key, json!({}), &claims("keyed", &issuer))),
        ("response_type", "code".into()),
        ("scope", "openid".into()),
        ("code_challenge", CLI_CHALLENGE.into()),
        ("code_challenge_method", "S256".into()),
    ];
    let r = send(b.http.post(format!("{}/oauth/par", b.base)).form(&form)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // With the live session: straight to the code.
    let done = b.get(&authorize_url(&b, "keyed", r.body["request_uri"].as_str().unwrap())).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert!(done.location().starts_with("https://keyed.example.test/cb?code="), "{}", done.location());
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_must_push_is_refused_without_par() {
    let server = oauth_server(|c| {
        for cl in c.oauth.clients.iter_mut().filter(|cl| cl.client_id == "idca-cli") {
            cl.require_pushed_authorization_requests = true;
        }
    })
    .await;
    let mut b = Browser::new(&server);
    let direct = b.get(&crate::dpop::cli_authorize_url(&b.base, "openid")).await;
    assert_eq!(direct.status, 303, "{}", direct.text);
    let location = direct.location();
    assert!(location.starts_with("http://127.0.0.1/callback?"), "{location}");
    assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_request"));

    // A public client pushes naming itself; then the login page is shown.
    let form = [
        ("client_id", "idca-cli"),
        ("response_type", "code"),
        ("redirect_uri", "http://127.0.0.1/callback"),
        ("scope", "openid"),
        ("code_challenge", CLI_CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let r = send(b.http.post(format!("{}/oauth/par", b.base)).form(&form)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let login = b.get(&authorize_url(&b, "idca-cli", r.body["request_uri"].as_str().unwrap())).await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert!(login.text.contains("password"), "{}", login.text);
    let _: Value = r.body;
    server.stop().await;
}

#[tokio::test]
async fn every_client_must_push_when_configured() {
    let server = oauth_server(|c| c.oauth.require_pushed_authorization_requests = true).await;
    let mut b = Browser::new(&server);
    let meta = send(b.http.get(format!("{}/.well-known/oauth-authorization-server", b.base))).await.body;
    assert_eq!(meta["require_pushed_authorization_requests"], json!(true));
    let direct = b.get(&crate::dpop::cli_authorize_url(&b.base, "openid")).await;
    assert_eq!(query_param(&direct.location(), "error").as_deref(), Some("invalid_request"));
    server.stop().await;
}
