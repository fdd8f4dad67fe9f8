//! The ACME API as a protected resource: `acme.require_token`.

use serde_json::json;

use crate::client::{Key, RawClient};
use crate::oauth::{Browser, oauth_server};

async fn client_credentials_token(b: &Browser, scope: &str) -> String {
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("backend", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
}

#[tokio::test]
async fn acme_requires_a_token_with_scope_acme_and_binds_the_account() {
    let server = oauth_server(|c| c.acme.require_token = true).await;
    let b = Browser::new(&server);
    let mut c = RawClient::new(&server, Key::p256()).await;

    // No token: 401 with a Bearer challenge; nothing stored.
    let r = c.register().await;
    r.assert_problem(401, "unauthorized");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    // A forged token: 401 invalid_token.
    c.bearer = Some("eyJhbGciOiJub25lIn0.e30.".into());
    let r = c.register().await;
    r.assert_problem(401, "unauthorized");
    assert!(r.header("www-authenticate").unwrap().contains("invalid_token"));

    // A valid token: the account is created and bound to its subject.
    c.bearer = Some(client_credentials_token(&b, "acme").await);
    assert_eq!(c.register().await.status, 201);
    let order = c.new_order(&["gated.example.test"]).await;
    assert_eq!(order.status, 201, "{}", order.text);

    // newOrder without a token is refused.
    let token = c.bearer.take();
    c.new_order(&["gated.example.test"]).await.assert_problem(401, "unauthorized");
    c.bearer = token;

    // Revoking the token's grant makes it unusable at once.
    let t = c.bearer.clone().unwrap();
    b.http
        .post(format!("{}/oauth/revoke", b.base))
        .basic_auth("backend", Some("s3cret-s3cret-s3cret"))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    c.new_order(&["gated.example.test"]).await.assert_problem(401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn acme_accounts_stay_with_their_subject() {
    let server = oauth_server(|c| {
        c.acme.require_token = true;
        c.oauth.clients.push(idca::config::ClientConfig {
            client_id: "other".into(),
            name: "Other backend".into(),
            secret_hash: c.oauth.clients.iter().find(|k| k.client_id == "backend").unwrap().secret_hash.clone(),
            redirect_uris: vec![],
            scopes: vec!["acme".into(), "profile".into()],
            grant_types: vec!["client_credentials".into()],
            post_logout_redirect_uris: vec![],
            ..Default::default()
        });
    })
    .await;
    let b = Browser::new(&server);
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.bearer = Some(client_credentials_token(&b, "acme").await);
    assert_eq!(c.register().await.status, 201);
    // A token for another subject cannot use this account, nor reclaim its key.
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("other", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "acme")])
        .send()
        .await
        .unwrap();
    let other: serde_json::Value = r.json().await.unwrap();
    c.bearer = Some(other["access_token"].as_str().unwrap().to_owned());
    c.new_order(&["x.example.test"]).await.assert_problem(403, "unauthorized");
    let o = crate::client::Overrides { kid: Some(None), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(403, "unauthorized");
    // A token without the acme scope is refused.
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .basic_auth("other", Some("s3cret-s3cret-s3cret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "profile")])
        .send()
        .await
        .unwrap();
    let profile_only: serde_json::Value = r.json().await.unwrap();
    let mut d = RawClient::new(&server, Key::p256()).await;
    d.bearer = Some(profile_only["access_token"].as_str().unwrap().to_owned());
    d.register().await.assert_problem(403, "unauthorized");
    server.stop().await;
}
