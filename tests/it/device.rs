//! The device authorization grant (RFC 8628), with the oauth2 crate as the device and
//! the HTML pages as the user's browser; one test per known implementation bug.

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl};
use serde_json::Value;

use crate::oauth::{Browser, Page, oauth_http, oauth_server, verify_jwt};

async fn device_code(b: &Browser, client_id: &str) -> Value {
    let r = b
        .http
        .post(format!("{}/oauth/device", b.base))
        .form(&[("client_id", client_id), ("scope", "openid acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

async fn poll(b: &Browser, device_code: &str) -> Value {
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "idca-cli"),
        ])
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

/// Opens the verification page for `code` and decides.
pub(crate) async fn decide(b: &mut Browser, code: &str, action: &str, password: &str) -> Page {
    let confirm = b.get(&format!("{}/oauth/device/verify?user_code={code}", b.base)).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    let form = [
        ("user_code", confirm.field("user_code")),
        ("csrf", confirm.field("csrf")),
        ("username", "alice".to_owned()),
        ("password", password.to_owned()),
        ("action", action.to_owned()),
    ];
    let r = b.http.post(format!("{}/oauth/device/verify", b.base)).form(&form).send().await.unwrap();
    Page { status: r.status().as_u16(), headers: r.headers().clone(), text: r.text().await.unwrap() }
}

#[tokio::test]
async fn oauth2_crate_completes_the_device_flow() {
    let server = oauth_server(|c| c.oauth.device_poll_interval_secs = 1).await;
    let mut b = Browser::new(&server);
    let http = oauth_http(b.http.clone());
    let client = BasicClient::new(ClientId::new("idca-cli".into()))
        .set_device_authorization_url(DeviceAuthorizationUrl::new(format!("{}/oauth/device", b.base)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", b.base)).unwrap());
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("acme".into()))
        .request_async(&http)
        .await
        .unwrap();
    let user_code = details.user_code().secret().clone();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX");
    assert!(details.verification_uri_complete().unwrap().secret().ends_with(&user_code));
    // The user approves in a browser (typing the code in lower case, without the dash).
    let typed = user_code.replace('-', "").to_lowercase();
    let done = decide(&mut b, &typed, "approve", "wonderland").await;
    assert_eq!(done.status, 303, "{}", done.text);
    let token = client
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    let at = verify_jwt(&b, token.access_token().secret(), "at+jwt").await;
    assert_eq!(at["sub"], "alice");
    server.stop().await;
}

#[tokio::test]
async fn polling_follows_rfc8628_section_3_5() {
    let server = oauth_server(|c| c.oauth.device_poll_interval_secs = 2).await;
    let mut b = Browser::new(&server);
    let d = device_code(&b, "idca-cli").await;
    assert_eq!(d["interval"], 2, "interval is always sent");
    let code = d["device_code"].as_str().unwrap();
    // The first poll is never throttled, even right after issuance.
    assert_eq!(poll(&b, code).await["error"], "authorization_pending");
    // Too fast: slow_down, and the interval grows for later polls.
    assert_eq!(poll(&b, code).await["error"], "slow_down");
    assert_eq!(poll(&b, code).await["error"], "slow_down");
    // Approval, then the tokens once, then never again.
    decide(&mut b, d["user_code"].as_str().unwrap(), "approve", "wonderland").await;
    let tokens = poll(&b, code).await;
    assert!(tokens["access_token"].is_string(), "{tokens}");
    assert_eq!(poll(&b, code).await["error"], "invalid_grant");
    server.stop().await;
}

#[tokio::test]
async fn rejects_denied_expired_and_foreign_device_codes() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let d = device_code(&b, "idca-cli").await;
    let done = decide(&mut b, d["user_code"].as_str().unwrap(), "deny", "wonderland").await;
    assert_eq!(done.status, 303);
    assert_eq!(poll(&b, d["device_code"].as_str().unwrap()).await["error"], "access_denied");
    // Unknown device codes and codes of other clients.
    assert_eq!(poll(&b, "nonsense").await["error"], "invalid_grant");
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("webapp", Some("s3cret-s3cret-s3cret"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", d["device_code"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(matches!(body["error"].as_str(), Some("invalid_grant") | Some("unauthorized_client")), "{body}");
    // A client without the device grant cannot start one.
    let r = b
        .http
        .post(format!("{}/oauth/device", b.base))
        .basic_auth("backend", Some("s3cret-s3cret-s3cret"))
        .form(&[("scope", "acme")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized_client");
    server.stop().await;

    let server = oauth_server(|c| c.oauth.device_code_lifetime_secs = 0).await;
    let b = Browser::new(&server);
    let d = device_code(&b, "idca-cli").await;
    assert_eq!(poll(&b, d["device_code"].as_str().unwrap()).await["error"], "expired_token");
    server.stop().await;
}

#[tokio::test]
async fn rejects_guessed_user_codes_wrong_passwords_and_forged_forms() {
    let server = oauth_server(|c| c.oauth.device_max_user_code_failures = 3).await;
    let mut b = Browser::new(&server);
    let d = device_code(&b, "idca-cli").await;
    let real = d["user_code"].as_str().unwrap().to_owned();
    // A wrong password keeps the request pending.
    let wrong = decide(&mut b, &real, "approve", "nope").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(poll(&b, d["device_code"].as_str().unwrap()).await["error"], "authorization_pending");
    // A forged CSRF token is refused.
    let confirm = b.get(&format!("{}/oauth/device/verify?user_code={real}", b.base)).await;
    let form = [
        ("user_code", real.clone()),
        ("csrf", "forged".to_owned()),
        ("username", "alice".to_owned()),
        ("password", "wonderland".to_owned()),
        ("action", "approve".to_owned()),
    ];
    let r = b.http.post(format!("{}/oauth/device/verify", b.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(confirm.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    // Guessing: three wrong codes, then even the right one is refused for a while.
    for guess in ["BCDF-GHJK", "ZZZZ-ZZZZ", "not-a-code"] {
        let p = b.get(&format!("{}/oauth/device/verify?user_code={guess}", b.base)).await;
        assert_eq!(p.status, 400, "{guess}");
    }
    let locked = b.get(&format!("{}/oauth/device/verify?user_code={real}", b.base)).await;
    assert_eq!(locked.status, 400);
    assert!(locked.text.contains("Too many wrong codes"), "{}", locked.text);
    server.stop().await;
}

#[tokio::test]
async fn the_claims_parameter_reaches_the_id_token_on_the_device_grant() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let claims =
        r#"{"id_token":{"keyauth":{"essential":true,"value":"tok.thumb"},"acme_aud":{"value":"https://a/ch"}}}"#;
    let r = b
        .http
        .post(format!("{}/oauth/device", b.base))
        .form(&[("client_id", "idca-cli"), ("scope", "openid profile"), ("claims", claims)])
        .send()
        .await
        .unwrap();
    let d: Value = r.json().await.unwrap();
    decide(&mut b, d["user_code"].as_str().unwrap(), "approve", "wonderland").await;
    let tokens = poll(&b, d["device_code"].as_str().unwrap()).await;
    let id = verify_jwt(&b, tokens["id_token"].as_str().unwrap(), "JWT").await;
    assert_eq!(id["keyauth"], "tok.thumb");
    assert_eq!(id["acme_aud"], "https://a/ch");
    assert_eq!(id["sub"], "alice");
    // A malformed claims parameter is refused up front, and a claim idca sets itself
    // cannot be requested.
    for bad in ["not json", r#"{"id_token":{"sub":{"value":"mallory"}}}"#] {
        let r = b
            .http
            .post(format!("{}/oauth/device", b.base))
            .form(&[("client_id", "idca-cli"), ("scope", "openid"), ("claims", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{bad}");
    }
    server.stop().await;
}
