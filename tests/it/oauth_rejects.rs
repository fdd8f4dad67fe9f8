//! Every OAuth rule, broken one at a time (RFC 6749, RFC 7636, RFC 9700).

use serde_json::Value;

use crate::oauth::{Browser, Page, authorize_with_login, oauth_server, public_client};

fn param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_owned()))
}

async fn token(b: &Browser, form: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = b.http.post(format!("{}/oauth/token", b.base)).form(form).send().await.unwrap();
    (r.status().as_u16(), r.headers().clone(), r.json().await.unwrap_or(Value::Null))
}

/// An authorization URL with raw parameters.
fn authorize_url(b: &Browser, params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", v.replace(' ', "%20"))).collect();
    format!("{}/oauth/authorize?{}", b.base, q.join("&"))
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Logs in through the page and returns the code for a public-client request.
async fn code_for(b: &mut Browser, redirect: &str) -> String {
    let url = authorize_url(
        b,
        &[
            ("response_type", "code"),
            ("client_id", "idca-cli"),
            ("redirect_uri", redirect),
            ("scope", "openid acme"),
            ("state", "xyz"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );
    let first = b.get(&url).await;
    // With a session from an earlier login, the code comes at once.
    let done = if first.status == 303 { first } else { b.login(&first, "alice", "wonderland").await };
    assert_eq!(done.status, 303, "{}", done.text);
    param(&done.location(), "code").unwrap()
}

fn exchange<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("client_id", "idca-cli"),
        ("redirect_uri", "http://127.0.0.1/callback"),
    ]
}

#[tokio::test]
async fn rejects_wrong_missing_and_malformed_verifiers() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    for (verifier, error) in [
        ("A".repeat(43), "invalid_grant"),
        ("short".to_owned(), "invalid_grant"),
        (format!("{}!", &VERIFIER[..43]), "invalid_grant"),
    ] {
        let code = code_for(&mut b, "http://127.0.0.1/callback").await;
        let (status, _, body) = token(&b, &exchange(&code, &verifier)).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(error)), "{verifier}: {body}");
    }
    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let mut form = exchange(&code, VERIFIER);
    form.retain(|(k, _)| *k != "code_verifier");
    let (_, _, body) = token(&b, &form).await;
    assert_eq!(body["error"], "invalid_request");
    server.stop().await;
}

/// RFC 6749 §4.1.3: a code whose authorization request named a redirect_uri is only
/// redeemed with that redirect_uri repeated.
#[tokio::test]
async fn rejects_a_token_request_without_the_redirect_uri_it_needs() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let mut form = exchange(&code, VERIFIER);
    form.retain(|(k, _)| *k != "redirect_uri");
    let (status, _, body) = token(&b, &form).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("redirect_uri is required"), "{body}");
    // The refusal did not use the code up: with the redirect_uri it is redeemed.
    let (status, _, body) = token(&b, &exchange(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn rejects_pkce_downgrade_by_a_confidential_client() {
    // With PKCE optional for confidential clients, a verifier sent for a code that had
    // no challenge is refused (RFC 9700 §2.1.1).
    let server = oauth_server(|c| c.oauth.require_pkce = false).await;
    let mut b = Browser::new(&server);
    let url = authorize_url(
        &b,
        &[
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", "https://app.example.test/cb"),
            ("scope", "openid"),
        ],
    );
    let login = b.get(&url).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let done = b.login(&login, "alice", "wonderland").await;
    let code = param(&done.location(), "code").unwrap();
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("webapp", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("code_verifier", VERIFIER)])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    server.stop().await;
}

#[tokio::test]
async fn rejects_bad_authorization_requests_without_open_redirects() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    // Unknown client or unregistered redirect URI: an error page, never a redirect.
    for params in [
        vec![("response_type", "code"), ("client_id", "nobody"), ("redirect_uri", "https://evil.example/cb")],
        vec![("response_type", "code"), ("client_id", "idca-cli"), ("redirect_uri", "https://evil.example/cb")],
        vec![("response_type", "code"), ("client_id", "idca-cli"), ("redirect_uri", "http://127.0.0.1:9/other")],
        vec![
            ("response_type", "code"),
            ("client_id", "webapp"),
            ("redirect_uri", "https://app.example.test/cb/../evil"),
        ],
    ] {
        let page = b.get(&authorize_url(&b, &params)).await;
        assert_eq!(page.status, 400, "{params:?}");
        assert!(page.headers.get("location").is_none(), "redirected for {params:?}");
    }
    // Errors the client may learn about come back to its redirect URI with state and iss.
    let base = [("client_id", "idca-cli"), ("redirect_uri", "http://127.0.0.1/callback"), ("state", "s1")];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("response_type", "token"),
                ("scope", "openid"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "unsupported_response_type",
        ),
        (
            vec![
                ("response_type", "code"),
                ("scope", "admin"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "S256"),
            ],
            "invalid_scope",
        ),
        (vec![("response_type", "code"), ("scope", "openid")], "invalid_request"),
        (
            vec![
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
    ];
    for (extra, error) in cases {
        let mut params = base.to_vec();
        params.extend(extra);
        let page = b.get(&authorize_url(&b, &params)).await;
        assert_eq!(page.status, 303, "{params:?}: {}", page.text);
        let loc = page.location();
        assert!(loc.starts_with("http://127.0.0.1/callback?"), "{loc}");
        assert_eq!(param(&loc, "error").as_deref(), Some(error), "{loc}");
        assert_eq!(param(&loc, "state").as_deref(), Some("s1"));
        assert!(param(&loc, "iss").is_some());
    }
    server.stop().await;
}

#[tokio::test]
async fn rejects_reused_codes_and_revokes_what_they_issued() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let (status, _, first) = token(&b, &exchange(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{first}");
    let (status, _, second) = token(&b, &exchange(&code, VERIFIER)).await;
    assert_eq!((status, second["error"].as_str()), (400, Some("invalid_grant")));
    // The first exchange's refresh and access tokens are revoked.
    let (_, _, refreshed) = token(
        &b,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ("client_id", "idca-cli"),
        ],
    )
    .await;
    assert_eq!(refreshed["error"], "invalid_grant");
    let r = b
        .http
        .get(format!("{}/oauth/userinfo", b.base))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn rejects_codes_of_other_clients_other_redirects_and_expired_codes() {
    let server = oauth_server(|c| c.oauth.code_lifetime_secs = 0).await;
    let mut b = Browser::new(&server);
    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let (_, _, body) = token(&b, &exchange(&code, VERIFIER)).await;
    assert_eq!(body["error"], "invalid_grant", "expired: {body}");
    server.stop().await;

    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let mut form = exchange(&code, VERIFIER);
    form.retain(|(k, _)| *k != "redirect_uri");
    form.push(("redirect_uri", "http://127.0.0.1/other"));
    let (_, _, body) = token(&b, &form).await;
    assert_eq!(body["error"], "invalid_grant", "redirect mismatch: {body}");
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("webapp", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("code_verifier", VERIFIER)])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(matches!(body["error"].as_str(), Some("invalid_grant") | Some("unauthorized_client")), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn rejects_wrong_passwords_locks_out_and_refuses_forged_forms() {
    let server = oauth_server(|c| c.oauth.login_max_failures = 2).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let url = crate::oauth::openid_authorize_url(&cli);
    let login = b.get(url.as_str()).await;
    assert_eq!(login.headers["x-frame-options"], "DENY");
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // Browsers apply form-action to the 303 that follows the login POST, which goes to
    // the client: it would block every login (seen in Chromium).
    assert!(!csp.contains("form-action"), "{csp}");
    // A forged CSRF token.
    let mut forged =
        Page { status: 200, headers: login.headers.clone(), text: login.text.replace(&login.field("csrf"), "forged") };
    forged.status = 200;
    assert_eq!(b.login(&forged, "alice", "wonderland").await.status, 403);
    // Wrong passwords, then a lockout that even the right password cannot pass.
    for _ in 0..2 {
        let again = b.login(&login, "alice", "nope").await;
        assert_eq!(again.status, 401);
        assert!(again.text.contains("Wrong user name or password"));
    }
    let locked = b.login(&login, "alice", "wonderland").await;
    // RFC 6585 §4: 429 with Retry-After while locked out.
    assert_eq!(locked.status, 429);
    let wait: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0, "Retry-After {wait}");
    assert!(locked.text.contains("Too many failed attempts"), "{}", locked.text);
    // An unknown user gets the same answer as a wrong password.
    let mut other = Browser::new(&server);
    let login2 = other.get(url.as_str()).await;
    let unknown = other.login(&login2, "mallory", "x").await;
    assert!(unknown.text.contains("Wrong user name or password"));
    server.stop().await;
}

/// Login CSRF (RFC 9700 §4.7): a login form the attacker opened in their own browser,
/// submitted from the victim's browser with the attacker's credentials, logs nobody in;
/// the same form from the browser that opened it works.
#[tokio::test]
async fn rejects_a_login_form_opened_in_another_browser() {
    let server = oauth_server(|_| {}).await;
    let mut attacker = Browser::new(&server);
    let cli = public_client(&attacker, "http://127.0.0.1/callback");
    let url = crate::oauth::openid_authorize_url(&cli);
    let form = attacker.get(url.as_str()).await;
    assert_eq!(form.status, 200);
    // The victim's browser has no cookie for that form, or one for a form of its own.
    let mut victim = Browser::new(&server);
    let refused = victim.login(&form, "alice", "wonderland").await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("not opened in this browser"), "{}", refused.text);
    assert!(refused.headers.get("set-cookie").is_none(), "no session is opened");
    let own = victim.get(url.as_str()).await;
    assert_eq!(own.status, 200);
    assert_eq!(victim.login(&form, "alice", "wonderland").await.status, 403);
    // The control: the browser that opened the form logs in.
    let done = attacker.login(&form, "alice", "wonderland").await;
    assert_eq!(done.status, 303, "{}", done.text);
    server.stop().await;
}

#[tokio::test]
async fn rejects_a_login_form_submitted_twice() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let url = crate::oauth::openid_authorize_url(&cli);
    let login = b.get(url.as_str()).await;
    assert_eq!(b.login(&login, "alice", "wonderland").await.status, 303);
    let replay = b.login(&login, "alice", "wonderland").await;
    assert_eq!(replay.status, 400);
    assert!(replay.headers.get("location").is_none());
    server.stop().await;
}

#[tokio::test]
async fn rejects_bad_client_authentication_and_grants() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let post = |form: Vec<(&'static str, &'static str)>, basic: Option<(&'static str, &'static str)>| {
        let mut r = b.http.post(format!("{}/oauth/token", b.base)).form(&form);
        if let Some((id, secret)) = basic {
            r = r.basic_auth(id, Some(secret));
        }
        async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.headers().clone(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, headers, body) = post(vec![("grant_type", "client_credentials")], Some(("backend", "wrong"))).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let (status, _, body) = post(vec![("grant_type", "client_credentials")], Some(("nobody", "x"))).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    // A confidential client cannot pretend to be public.
    let (status, _, body) = post(vec![("grant_type", "client_credentials"), ("client_id", "backend")], None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    // Two authentication methods at once.
    let (_, _, body) = post(
        vec![("grant_type", "client_credentials"), ("client_secret", "s3cret-s3cret-s3cret")],
        Some(("backend", "s3cret-s3cret-s3cret")),
    )
    .await;
    assert_eq!(body["error"], "invalid_request");
    // A public client may not use client_credentials; nobody may use the password grant.
    let (_, _, body) = post(vec![("grant_type", "client_credentials"), ("client_id", "idca-cli")], None).await;
    assert_eq!(body["error"], "unauthorized_client");
    let (_, _, body) = post(
        vec![("grant_type", "password"), ("client_id", "idca-cli"), ("username", "alice"), ("password", "wonderland")],
        None,
    )
    .await;
    assert_eq!(body["error"], "unsupported_grant_type");
    let (_, _, body) = post(vec![("client_id", "idca-cli")], None).await;
    assert_eq!(body["error"], "invalid_request");
    // A scope the client does not have.
    let (_, _, body) = post(
        vec![("grant_type", "client_credentials"), ("scope", "openid")],
        Some(("backend", "s3cret-s3cret-s3cret")),
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
    // Not a form.
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    server.stop().await;
}

#[tokio::test]
async fn rejects_refresh_scope_widening_and_forged_tokens() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let (code, verifier, _) = authorize_with_login(&mut b, &cli, &["openid"]).await;
    let t = crate::oauth::exchange(&b, &cli, code, verifier).await;
    use oauth2::TokenResponse;
    let (_, _, body) = token(
        &b,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t.refresh_token().unwrap().secret()),
            ("client_id", "idca-cli"),
            ("scope", "openid acme"),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
    // Tampered and alg-none access tokens are refused at userinfo.
    let good = t.access_token().secret().clone();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = crate::client::b64(r#"{"sub":"mallory"}"#);
    let tampered = parts.join(".");
    let none = format!("{}.{}.", crate::client::b64(r#"{"alg":"none","typ":"at+jwt"}"#), parts[1]);
    for bad in [tampered, none, "not-a-jwt".to_owned()] {
        let r = b.http.get(format!("{}/oauth/userinfo", b.base)).bearer_auth(&bad).send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    let r = b.http.get(format!("{}/oauth/userinfo", b.base)).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

/// Concurrent redemption of one code or one refresh token (JanssenProject/jans#9074):
/// the store's atomic take lets exactly one through.
#[tokio::test]
async fn concurrent_redemptions_let_one_through() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let http = b.http.clone();
            let url = format!("{}/oauth/token", b.base);
            let form: Vec<(String, String)> =
                exchange(&code, VERIFIER).into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            tokio::spawn(async move { http.post(url).form(&form).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "one code, {ok} token responses");

    let code = code_for(&mut b, "http://127.0.0.1/callback").await;
    let (_, _, first) = token(&b, &exchange(&code, VERIFIER)).await;
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let http = b.http.clone();
            let url = format!("{}/oauth/token", b.base);
            let refresh = refresh.clone();
            tokio::spawn(async move {
                let form =
                    [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", "idca-cli")];
                http.post(url).form(&form).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert!(ok <= 1, "one refresh token, {ok} token responses");
    server.stop().await;
}

/// A NUL character in a parameter (`%00`) is the client's mistake on every store:
/// PostgreSQL cannot keep it in text, and that was a 500 `server_error` (the attempt
/// limiter keys short client ids and user names as they are).
#[tokio::test]
async fn a_nul_in_a_parameter_is_a_client_error() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    for form in [
        vec![("grant_type", "client_credentials"), ("client_id", "a\0b"), ("client_secret", "x")],
        vec![("grant_type", "authorization_code"), ("client_id", "idca-cli"), ("code", "a\0b"), ("code_verifier", "v")],
    ] {
        let (status, _, body) = token(&b, &form).await;
        assert!((400..500).contains(&status), "{form:?}: {status} {body}");
        assert!(
            ["invalid_client", "invalid_request", "invalid_grant"].contains(&body["error"].as_str().unwrap()),
            "{body}"
        );
    }
    let r = b
        .http
        .post(format!("{}/oauth/register", b.base))
        .json(&serde_json::json!({"redirect_uris": ["https://a.example/cb"], "client_name": "a\u{0}b"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 201 || (400..500).contains(&status), "{status} {}", r.text().await.unwrap());
    // RFC 6749 §3.1: a repeated parameter is invalid_request, as JSON, not actix's text.
    let r =
        b.http.get(format!("{}/oauth/authorize?client_id=idca-cli&client_id=idca-cli", b.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
}
