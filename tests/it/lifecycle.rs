//! Revocation and the CRL, key change, and renewal information (ARI) with `replaces`.

use instant_acme::{Account, NewAccount, RevocationReason, RevocationRequest};
use rustls::pki_types::CertificateDer;
use serde_json::json;
use x509_parser::prelude::*;

use crate::certs::first_cert_der;
use crate::client::{Key, Overrides, RawClient, b64, csr};
use crate::harness::{TestServer, start};

fn ed25519_csr(names: &[&str]) -> Vec<u8> {
    let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/ed25519.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let mut p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.serialize_request(&key).unwrap().der().to_vec()
}

async fn registered(server: &TestServer) -> RawClient {
    let mut c = RawClient::new(server, Key::p256()).await;
    assert_eq!(c.register().await.status, 201);
    c
}

async fn crl_serials(server: &TestServer, c: &RawClient) -> Vec<String> {
    let url = server.directory_url().replace("/directory", "/crl");
    let r = c.http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    let der = r.bytes().await.unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
    let int_pem = std::fs::read_to_string(server.data_dir().join("intermediate.pem")).unwrap();
    let int_der = first_cert_der(&int_pem);
    let (_, int) = X509Certificate::from_der(&int_der).unwrap();
    crl.verify_signature(int.public_key()).unwrap();
    crl.iter_revoked_certificates().map(|r| r.raw_serial_as_string().replace(':', "")).collect()
}

fn serial_of(chain: &str) -> String {
    let der = first_cert_der(chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.raw_serial_as_string().replace(':', "")
}

#[tokio::test]
async fn instant_acme_revokes_and_the_crl_lists_it() {
    let server = start().await;
    let (account, _) = Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false },
            server.directory_url(),
            None,
        )
        .await
        .unwrap();
    // Issue with the raw client under the same account? instant-acme owns its key, so
    // issue through instant-acme itself.
    let ids = [instant_acme::Identifier::Dns("rev.example.test".into())];
    let mut order = account.new_order(&instant_acme::NewOrder::new(&ids)).await.unwrap();
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.unwrap();
        let mut ch = a.challenge(instant_acme::ChallengeType::Http01).unwrap();
        server.challenges.set(&ch.token, ch.key_authorization().as_str());
        ch.set_ready().await.unwrap();
    }
    let retry = instant_acme::RetryPolicy::default().initial_delay(std::time::Duration::from_millis(20));
    order.poll_ready(&retry).await.unwrap();
    order.finalize().await.unwrap();
    let chain = order.poll_certificate(&retry).await.unwrap();
    let der = CertificateDer::from(first_cert_der(&chain));
    let c = RawClient::new(&server, Key::p256()).await;
    assert!(crl_serials(&server, &c).await.is_empty());
    account.revoke(&RevocationRequest { certificate: &der, reason: Some(RevocationReason::Superseded) }).await.unwrap();
    assert_eq!(crl_serials(&server, &c).await, vec![serial_of(&chain)]);
    // Again: alreadyRevoked.
    let err = account.revoke(&RevocationRequest { certificate: &der, reason: None }).await.unwrap_err();
    assert!(err.to_string().contains("alreadyRevoked") || format!("{err:?}").contains("alreadyRevoked"), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn revocation_by_the_certificate_key() {
    let server = start().await;
    let owner = registered(&server).await;
    let (_, _, chain) = owner.issue(&server, &["key.example.test"], &ed25519_csr(&["key.example.test"])).await;
    // A client holding only the certificate's key (no account), signing with `jwk`.
    let holder = RawClient::new(&server, Key::ed25519()).await;
    let payload = json!({"certificate": b64(first_cert_der(&chain)), "reason": 1});
    let r = holder.post(&holder.url("revokeCert"), Some(&payload)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.is_empty());
    assert_eq!(crl_serials(&server, &holder).await, vec![serial_of(&chain)]);
    holder.post(&holder.url("revokeCert"), Some(&payload)).await.assert_problem(400, "alreadyRevoked");
    server.stop().await;
}

#[tokio::test]
async fn rejects_revocation_by_strangers_and_bad_reasons() {
    let server = start().await;
    let owner = registered(&server).await;
    let (der, _) = csr(&["mine.example.test"]);
    let (_, _, chain) = owner.issue(&server, &["mine.example.test"], &der).await;
    let cert = b64(first_cert_der(&chain));
    // Another account.
    let other = registered(&server).await;
    other.post(&other.url("revokeCert"), Some(&json!({"certificate": cert}))).await.assert_problem(403, "unauthorized");
    // A key that is not the certificate's.
    let stranger = RawClient::new(&server, Key::p256()).await;
    stranger
        .post(&stranger.url("revokeCert"), Some(&json!({"certificate": cert})))
        .await
        .assert_problem(403, "unauthorized");
    // Reason 7 does not exist; 11 is out of range.
    for reason in [7, 11, -1] {
        owner
            .post(&owner.url("revokeCert"), Some(&json!({"certificate": cert, "reason": reason})))
            .await
            .assert_problem(400, "badRevocationReason");
    }
    // Not a certificate we issued.
    let foreign = rcgen::CertificateParams::new(vec!["x.test".to_owned()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    owner
        .post(&owner.url("revokeCert"), Some(&json!({"certificate": b64(foreign.der())})))
        .await
        .assert_problem(404, "malformed");
    // Nothing was revoked.
    assert!(crl_serials(&server, &owner).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn instant_acme_changes_the_account_key() {
    let server = start().await;
    let (mut account, _) = Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false },
            server.directory_url(),
            None,
        )
        .await
        .unwrap();
    let id = account.id().to_owned();
    let old_thumbprint = account.key_thumbprint().to_owned();
    let _credentials = account.update_key().await.unwrap();
    assert_ne!(account.key_thumbprint(), old_thumbprint);
    // The new key works for the same account.
    let ids = [instant_acme::Identifier::Dns("kc.example.test".into())];
    account.new_order(&instant_acme::NewOrder::new(&ids)).await.unwrap();
    assert_eq!(account.id(), id);
    server.stop().await;
}

/// Builds a keyChange request body by hand.
async fn key_change_body(
    c: &RawClient,
    new: &Key,
    inner_url: &str,
    account: &str,
    old_key: serde_json::Value,
) -> String {
    key_change_body_signed(c, new, new, json!({"url": inner_url}), account, old_key).await
}

/// A keyChange body whose inner JWS names `new`'s key but is signed by `signer`, with
/// `header` fields added to the inner header.
async fn key_change_body_signed(
    c: &RawClient,
    new: &Key,
    signer: &Key,
    header: serde_json::Value,
    account: &str,
    old_key: serde_json::Value,
) -> String {
    let url = c.url("keyChange");
    let mut inner_header = json!({"alg": new.alg(), "jwk": new.jwk()});
    inner_header.as_object_mut().unwrap().extend(header.as_object().unwrap().clone());
    let protected = b64(inner_header.to_string());
    let payload = b64(json!({"account": account, "oldKey": old_key}).to_string());
    let sig = b64(signer.sign(format!("{protected}.{payload}").as_bytes()));
    let inner = json!({"protected": protected, "payload": payload, "signature": sig});
    c.jws(&url, Some(&inner), &Overrides::default()).await.to_string()
}

#[tokio::test]
async fn key_change_moves_the_account_and_the_old_key_stops_working() {
    let server = start().await;
    let mut c = registered(&server).await;
    let account = c.kid.clone().unwrap();
    let new = Key::ed25519();
    let body = key_change_body(&c, &new, &c.url("keyChange"), &account, c.key.jwk()).await;
    let r = c.send(&c.url("keyChange"), body, "application/jose+json").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["key"], new.jwk());
    // The old key no longer signs for the account.
    c.new_order(&["a.example.test"]).await.assert_problem(400, "malformed");
    // The new key does; and newAccount with it finds the same account.
    c.key = new;
    assert_eq!(c.new_order(&["a.example.test"]).await.status, 201);
    let o = Overrides { kid: Some(None), ..Default::default() };
    let found = c.post_with(&c.url("newAccount"), Some(&json!({"onlyReturnExisting": true})), &o).await;
    assert_eq!(found.location(), account);
    server.stop().await;
}

#[tokio::test]
async fn rejects_key_change_violations() {
    let server = start().await;
    let c = registered(&server).await;
    let account = c.kid.clone().unwrap();
    let new = Key::ed25519();
    let url = c.url("keyChange");
    // Inner url differs.
    let body = key_change_body(&c, &new, &c.url("newOrder"), &account, c.key.jwk()).await;
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    // oldKey is not the current key.
    let body = key_change_body(&c, &new, &url, &account, Key::p256().jwk()).await;
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    // account names someone else.
    let body = key_change_body(&c, &new, &url, &format!("{account}x"), c.key.jwk()).await;
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    // RFC 8555 §7.3.5: the inner JWS must be signed by the new key it names, and carry
    // no nonce.
    let (fresh, stranger) = (Key::p256(), Key::p256());
    let body = key_change_body_signed(&c, &fresh, &stranger, json!({"url": url}), &account, c.key.jwk()).await;
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    let body = key_change_body_signed(&c, &new, &new, json!({"url": url, "nonce": "abc"}), &account, c.key.jwk()).await;
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    let body =
        key_change_body_signed(&c, &fresh, &fresh, json!({"url": url, "kid": account}), &account, c.key.jwk()).await;
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    // The new key belongs to another account: 409 with its Location.
    let mut other = RawClient::new(&server, Key::ed25519()).await;
    let other_url = other.register().await.location();
    let body = key_change_body(&c, &new, &url, &account, c.key.jwk()).await;
    let r = c.send(&url, body, "application/jose+json").await;
    r.assert_problem(409, "malformed");
    assert_eq!(r.location(), other_url);
    // The account still has its key.
    assert_eq!(c.post(&account, None).await.json()["key"], c.key.jwk());
    other.kid = None;
    server.stop().await;
}

async fn renewal_info(c: &RawClient, cert_id: &str) -> reqwest::Response {
    c.http.get(format!("{}/{cert_id}", c.url("renewalInfo"))).send().await.unwrap()
}

fn cert_id_of(chain: &str) -> String {
    let (aki, serial) = crate::certs::aki_and_serial(chain);
    format!("{}.{}", b64(aki), b64(serial))
}

#[tokio::test]
async fn ari_window_and_replacement_orders() {
    let server = start().await;
    let c = registered(&server).await;
    let (der, _) = csr(&["ari.example.test"]);
    let (_, _, chain) = c.issue(&server, &["ari.example.test"], &der).await;
    let id = cert_id_of(&chain);
    let r = renewal_info(&c, &id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["retry-after"], "21600");
    let info: serde_json::Value = r.json().await.unwrap();
    let start = idca::clock::parse_rfc3339(info["suggestedWindow"]["start"].as_str().unwrap()).unwrap();
    let end = idca::clock::parse_rfc3339(info["suggestedWindow"]["end"].as_str().unwrap()).unwrap();
    let now = idca::clock::Clock::now(&idca::clock::SystemClock);
    assert!(start > now + 50 * 86_400 && end > start, "{info}");

    // A replacement order; a second one for the same certificate is refused.
    let ids = json!([{"type":"dns","value":"ari.example.test"}]);
    let first = c.post(&c.url("newOrder"), Some(&json!({"identifiers": ids, "replaces": id}))).await;
    assert_eq!(first.status, 201, "{}", first.text);
    // The order object says what it replaces, when created and on every later fetch.
    assert_eq!(first.json()["replaces"], id.as_str(), "{}", first.text);
    assert_eq!(c.post(&first.location(), None).await.json()["replaces"], id.as_str());
    assert!(c.new_order(&["plain.example.test"]).await.json().get("replaces").is_none());
    c.post(&c.url("newOrder"), Some(&json!({"identifiers": ids, "replaces": id})))
        .await
        .assert_problem(409, "alreadyReplaced");
    // Once that order is dead (its authorization deactivated), the certificate is free.
    let authz = first.json()["authorizations"][0].as_str().unwrap().to_owned();
    c.post(&authz, Some(&json!({"status": "deactivated"}))).await;
    let again = c.post(&c.url("newOrder"), Some(&json!({"identifiers": ids, "replaces": id}))).await;
    assert_eq!(again.status, 201, "{}", again.text);

    // Revoked: renew now (a window in the past).
    c.post(&c.url("revokeCert"), Some(&json!({"certificate": b64(first_cert_der(&chain))}))).await;
    let info: serde_json::Value = renewal_info(&c, &id).await.json().await.unwrap();
    let end = idca::clock::parse_rfc3339(info["suggestedWindow"]["end"].as_str().unwrap()).unwrap();
    assert!(end < idca::clock::Clock::now(&idca::clock::SystemClock));
    server.stop().await;
}

#[tokio::test]
async fn rejects_bad_replaces_and_cert_ids() {
    let server = start().await;
    let owner = registered(&server).await;
    let (der, _) = csr(&["own.example.test"]);
    let (_, _, chain) = owner.issue(&server, &["own.example.test"], &der).await;
    let id = cert_id_of(&chain);
    let other = registered(&server).await;
    let ids = json!([{"type":"dns","value":"own.example.test"}]);
    other
        .post(&other.url("newOrder"), Some(&json!({"identifiers": ids, "replaces": id})))
        .await
        .assert_problem(403, "unauthorized");
    let unrelated = json!([{"type":"dns","value":"elsewhere.example.test"}]);
    owner
        .post(&owner.url("newOrder"), Some(&json!({"identifiers": unrelated, "replaces": id})))
        .await
        .assert_problem(400, "malformed");
    owner
        .post(&owner.url("newOrder"), Some(&json!({"identifiers": ids, "replaces": "garbage"})))
        .await
        .assert_problem(400, "malformed");
    assert_eq!(renewal_info(&owner, "garbage").await.status(), 400);
    assert_eq!(renewal_info(&owner, "AQID.AQID").await.status(), 404);
    // None of those orders was stored.
    let list = owner.post(&format!("{}/orders", owner.kid.as_ref().unwrap()), None).await.json();
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    server.stop().await;
}
