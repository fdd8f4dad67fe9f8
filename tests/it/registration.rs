//! Dynamic client registration (RFC 7591 / 7592) and the consent page its clients get.

use serde_json::{Value, json};

use crate::oauth::{Browser, Page, oauth_server};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn register(b: &Browser, metadata: Value) -> (u16, Value) {
    let r = b.http.post(format!("{}/oauth/register", b.base)).json(&metadata).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_owned()))
}

async fn start_authorization(b: &mut Browser, client_id: &str, scope: &str) -> Page {
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri=http://127.0.0.1/cb&scope={}&state=st&code_challenge={CHALLENGE}&code_challenge_method=S256",
        b.base,
        scope.replace(' ', "%20")
    );
    b.get(&url).await
}

async fn consent(b: &mut Browser, page: &Page, action: &str) -> Page {
    let form = [("request", page.field("request")), ("csrf", page.field("csrf")), ("action", action.to_owned())];
    let mut r = b.http.post(format!("{}/oauth/consent", b.base)).form(&form);
    if let Some(c) = &b.cookie {
        r = r.header("cookie", c.clone());
    }
    let r = r.send().await.unwrap();
    Page { status: r.status().as_u16(), headers: r.headers().clone(), text: r.text().await.unwrap() }
}

#[tokio::test]
async fn a_registered_public_client_needs_consent_once_until_the_user_revokes_it() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let meta: Value =
        b.http.get(format!("{}/.well-known/openid-configuration", b.base)).send().await.unwrap().json().await.unwrap();
    assert!(meta["registration_endpoint"].as_str().unwrap().ends_with("/oauth/register"));
    let (status, reg) = register(
        &b,
        json!({"client_name": "Note app", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile"}),
    )
    .await;
    assert_eq!(status, 201, "{reg}");
    assert!(reg.get("client_secret").is_none());
    let client_id = reg["client_id"].as_str().unwrap().to_owned();

    let login = start_authorization(&mut b, &client_id, "openid").await;
    assert_eq!(login.status, 200);
    let consent_page = b.login(&login, "alice", "wonderland").await;
    assert_eq!(consent_page.status, 200, "{}", consent_page.text);
    assert!(consent_page.text.contains("Note app") && consent_page.text.contains("Allow"));
    assert!(consent_page.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    // A forged consent form is refused; the real one issues the code.
    let mut forged = Page {
        status: 200,
        headers: consent_page.headers.clone(),
        text: consent_page.text.replace(&consent_page.field("csrf"), "x"),
    };
    forged.status = 200;
    assert_eq!(consent(&mut b, &forged, "allow").await.status, 403);
    let done = consent(&mut b, &consent_page, "allow").await;
    assert_eq!(done.status, 303, "{}", done.text);
    let code = param(&done.location(), "code").unwrap();
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
            ("client_id", client_id.as_str()),
            ("redirect_uri", "http://127.0.0.1/cb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    // Next time, with a session, consent is remembered for the same scopes: the code at once.
    let again = start_authorization(&mut b, &client_id, "openid").await;
    assert_eq!(again.status, 303, "{}", again.text);
    assert!(param(&again.location(), "code").is_some(), "{}", again.location());
    // More scopes than approved, or prompt=consent: asked again (and can be denied).
    let wider = start_authorization(&mut b, &client_id, "openid profile").await;
    assert_eq!(wider.status, 200, "{}", wider.text);
    assert!(wider.text.contains("Allow"));
    let prompted = start_authorization(&mut b, &client_id, "openid&prompt=consent").await;
    assert_eq!(prompted.status, 200, "{}", prompted.text);
    let denied = consent(&mut b, &prompted, "deny").await;
    assert_eq!(param(&denied.location(), "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&denied.location(), "state").as_deref(), Some("st"));

    // The account page lists the grant; revoking it stops its tokens and the consent.
    let account = b.get(&format!("{}/oauth/account", b.base)).await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert!(
        account.text.contains("Note app") && account.text.contains("Signed in as <strong>alice"),
        "{}",
        account.text
    );
    assert!(account.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(account.headers["x-frame-options"], "DENY");
    let revoke = |b: &Browser, grant: String, csrf: String, cookie: Option<String>| {
        let mut r = b.http.post(format!("{}/oauth/account/revoke", b.base)).form(&[("grant", grant), ("csrf", csrf)]);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let (grant, csrf) = (account.field("grant"), account.field("csrf"));
    // Introspection (by the confidential webapp) sees the access token active until then.
    let (http, base) = (b.http.clone(), b.base.clone());
    let introspect = |token: String| {
        http.post(format!("{base}/oauth/introspect"))
            .basic_auth("webapp", Some(crate::oauth::SECRET))
            .form(&[("token", token)])
            .send()
    };
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let active: Value = introspect(access.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(active["active"], json!(true), "{active}");
    // A forged form (wrong CSRF), and the right form without the session: refused.
    assert_eq!(revoke(&b, grant.clone(), "x".into(), b.cookie.clone()).await.unwrap().status(), 403);
    assert_eq!(revoke(&b, grant.clone(), csrf.clone(), None).await.unwrap().status(), 401);
    assert_eq!(revoke(&b, "another".into(), csrf.clone(), b.cookie.clone()).await.unwrap().status(), 403);
    let r = revoke(&b, grant, csrf, b.cookie.clone()).await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/oauth/account"));
    let account = b.get(&format!("{}/oauth/account", b.base)).await;
    assert!(account.text.contains("No application has access"), "{}", account.text);
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a revoked grant's refresh token");
    let inactive: Value = introspect(access.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(inactive, json!({"active": false}), "introspection of a revoked grant's access token");
    let userinfo = crate::oauth::userinfo(&b, tokens["access_token"].as_str().unwrap()).await;
    assert!(userinfo.get("sub").is_none(), "a revoked grant's access token: {userinfo}");
    let asked = start_authorization(&mut b, &client_id, "openid").await;
    assert_eq!(asked.status, 200, "consent asked again after revocation: {}", asked.text);
    assert!(asked.text.contains("Allow"));
    server.stop().await;
}

#[tokio::test]
async fn rejects_powerful_scopes_bad_redirects_and_grants() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    for (meta, error) in [
        (json!({"redirect_uris": ["http://127.0.0.1/cb"], "scope": "openid acme"}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["http://app.example.test/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://app.example.test/cb#frag"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.test/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.test/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": ["https://a.test/cb"], "response_types": ["token"]}), "invalid_client_metadata"),
        (
            json!({"redirect_uris": ["https://a.test/cb"], "post_logout_redirect_uris": ["http://a.test/out"]}),
            "invalid_redirect_uri",
        ),
    ] {
        let (status, body) = register(&b, meta.clone()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(error)), "{meta}: {body}");
    }
    let r = b
        .http
        .post(format!("{}/oauth/register", b.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    // A registered client cannot ask for a scope it was not given.
    let (_, reg) =
        register(&b, json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"})).await;
    let page = start_authorization(&mut b, reg["client_id"].as_str().unwrap(), "openid acme").await;
    assert_eq!(param(&page.location(), "error").as_deref(), Some("invalid_scope"));
    server.stop().await;

    let server = oauth_server(|c| c.oauth.dynamic_registration = false).await;
    let b = Browser::new(&server);
    let (status, _) = register(&b, json!({"redirect_uris": ["https://a.test/cb"]})).await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn registration_management_with_the_access_token() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let (status, reg) =
        register(&b, json!({"client_name": "Svc", "redirect_uris": ["https://svc.example.test/cb"]})).await;
    assert_eq!(status, 201);
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(reg["client_secret_expires_at"], 0);
    let uri = reg["registration_client_uri"].as_str().unwrap().to_owned();
    let token = reg["registration_access_token"].as_str().unwrap().to_owned();
    let client_id = reg["client_id"].as_str().unwrap().to_owned();
    // Read.
    let r = b.http.get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["client_name"], "Svc");
    assert!(read.get("client_secret").is_none(), "the secret is shown once");
    // Wrong token, other client's URI.
    assert_eq!(b.http.get(&uri).bearer_auth("nope").send().await.unwrap().status(), 401);
    // Update; escalation to acme is refused.
    let r = b
        .http
        .put(&uri)
        .bearer_auth(&token)
        .json(
            &json!({"client_id": client_id, "client_name": "Svc 2", "redirect_uris": ["https://svc.example.test/cb"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["client_name"], "Svc 2");
    let r = b
        .http
        .put(&uri)
        .bearer_auth(&token)
        .json(&json!({"client_id": client_id, "redirect_uris": ["https://svc.example.test/cb"], "scope": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");
    // The secret authenticates (the client may not use client_credentials, so it gets
    // unauthorized_client rather than invalid_client).
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized_client");
    // Delete: 204, then the client is gone.
    assert_eq!(b.http.delete(&uri).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(b.http.get(&uri).bearer_auth(&token).send().await.unwrap().status(), 401);
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

/// A registered client's `post_logout_redirect_uris` (RP-Initiated Logout §3.1) are
/// echoed and honoured by the end-session endpoint, exactly.
#[tokio::test]
async fn registered_clients_name_their_post_logout_redirect_uris() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let meta = json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none",
                      "post_logout_redirect_uris": ["https://rp.example.test/bye"]});
    let (status, body) = register(&b, meta).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["post_logout_redirect_uris"], json!(["https://rp.example.test/bye"]));
    let (id, base) = (body["client_id"].as_str().unwrap(), b.base.clone());
    let out = |uri: &str| format!("{base}/oauth/logout?client_id={id}&post_logout_redirect_uri={uri}&state=s");
    let r = b.get(&out("https://rp.example.test/bye")).await;
    assert_eq!((r.status, r.location()), (303, "https://rp.example.test/bye?state=s".to_owned()));
    assert_eq!(b.get(&out("https://rp.example.test/other")).await.status, 400);
    server.stop().await;
}
