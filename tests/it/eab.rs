//! External account binding (RFC 8555 §7.3.4).

use instant_acme::{Account, ExternalAccountKey, NewAccount};
use serde_json::{Value, json};

use crate::client::{Key, Overrides, RawClient, b64};
use crate::harness::{TestServer, start_with};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

async fn eab_server() -> TestServer {
    start_with(|c| {
        c.acme.eab.required = true;
        c.acme.eab.keys.insert("kid-1".into(), b64(SECRET));
        c.acme.eab.keys.insert("kid-2".into(), b64(SECRET));
    })
    .await
}

fn binding(kid: &str, secret: &[u8], url: &str, jwk: &Value) -> Value {
    let protected = b64(json!({"alg": "HS256", "kid": kid, "url": url}).to_string());
    let payload = b64(jwk.to_string());
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({"protected": protected, "payload": payload, "signature": b64(tag.as_ref())})
}

async fn new_account(c: &RawClient, eab: Option<Value>) -> crate::client::Resp {
    let mut payload = json!({"termsOfServiceAgreed": true});
    if let Some(b) = eab {
        payload["externalAccountBinding"] = b;
    }
    c.post_with(&c.url("newAccount"), Some(&payload), &Overrides { kid: Some(None), ..Default::default() }).await
}

#[tokio::test]
async fn instant_acme_binds_an_account() {
    let server = eab_server().await;
    let c = RawClient::new(&server, Key::p256()).await;
    assert_eq!(c.dir["meta"]["externalAccountRequired"], true);
    let eab = ExternalAccountKey::new("kid-1".into(), SECRET);
    let (account, _) = Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false },
            server.directory_url(),
            Some(&eab),
        )
        .await
        .unwrap();
    assert!(!account.id().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn rejects_missing_wrong_or_reused_bindings() {
    let server = eab_server().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    let jwk = c.key.jwk();
    new_account(&c, None).await.assert_problem(400, "externalAccountRequired");
    new_account(&c, Some(binding("kid-1", b"wrong-secret-wrong-secret", &url, &jwk)))
        .await
        .assert_problem(403, "unauthorized");
    new_account(&c, Some(binding("nope", SECRET, &url, &jwk))).await.assert_problem(403, "unauthorized");
    new_account(&c, Some(binding("kid-1", SECRET, &c.url("newOrder"), &jwk))).await.assert_problem(403, "unauthorized");
    new_account(&c, Some(binding("kid-1", SECRET, &url, &Key::ed25519().jwk()))).await.assert_problem(400, "malformed");
    // None of those created an account.
    let o = Overrides { kid: Some(None), ..Default::default() };
    c.post_with(&url, Some(&json!({"onlyReturnExisting": true})), &o).await.assert_problem(400, "accountDoesNotExist");
    // A good binding works once; the same kid cannot bind a second account.
    assert_eq!(new_account(&c, Some(binding("kid-1", SECRET, &url, &jwk))).await.status, 201);
    let d = RawClient::new(&server, Key::ed25519()).await;
    new_account(&d, Some(binding("kid-1", SECRET, &url, &d.key.jwk()))).await.assert_problem(403, "unauthorized");
    assert_eq!(new_account(&d, Some(binding("kid-2", SECRET, &url, &d.key.jwk()))).await.status, 201);
    server.stop().await;
}

/// As Pebble: required with no keys starts, and newAccount gets externalAccountRequired.
#[tokio::test]
async fn required_without_keys_starts_and_refuses_every_new_account() {
    let server = start_with(|c| c.acme.eab.required = true).await;
    let c = RawClient::new(&server, Key::p256()).await;
    assert_eq!(c.dir["meta"]["externalAccountRequired"], true);
    new_account(&c, None).await.assert_problem(400, "externalAccountRequired");
    let jwk = c.key.jwk();
    new_account(&c, Some(binding("kid-1", SECRET, &c.url("newAccount"), &jwk)))
        .await
        .assert_problem(403, "unauthorized");
    server.stop().await;
}

/// `acme.eab.reusable_keys` (Pebble's behaviour): one kid binds many accounts, each
/// binding still checked.
#[tokio::test]
async fn reusable_keys_bind_many_accounts() {
    let server = start_with(|c| {
        c.acme.eab.required = true;
        c.acme.eab.reusable_keys = true;
        c.acme.eab.keys.insert("kid-1".into(), b64(SECRET));
    })
    .await;
    for key in [Key::p256(), Key::ed25519(), Key::p384()] {
        let c = RawClient::new(&server, key).await;
        let url = c.url("newAccount");
        let jwk = c.key.jwk();
        new_account(&c, Some(binding("kid-1", b"wrong-secret-wrong-secret", &url, &jwk)))
            .await
            .assert_problem(403, "unauthorized");
        assert_eq!(new_account(&c, Some(binding("kid-1", SECRET, &url, &jwk))).await.status, 201);
    }
    server.stop().await;
}
