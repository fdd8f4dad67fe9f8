//! Profiles and the test-CA knobs: nonce rejection, authorization reuse, order rate limit.

use serde_json::json;
use x509_parser::prelude::*;

use crate::certs::first_cert_der;
use crate::client::{Key, Overrides, RawClient, b64, csr};
use crate::harness::{TestServer, start, start_with};

async fn registered(server: &TestServer) -> RawClient {
    let mut c = RawClient::new(server, Key::p256()).await;
    assert_eq!(c.register().await.status, 201);
    c
}

#[tokio::test]
async fn profiles_are_offered_and_set_validity() {
    let server = start().await;
    let c = registered(&server).await;
    let profiles = &c.dir["meta"]["profiles"];
    assert!(profiles["default"].is_string() && profiles["shortlived"].is_string(), "{profiles}");
    let ids = json!([{"type":"dns","value":"short.example.test"}]);
    let order = c.post(&c.url("newOrder"), Some(&json!({"identifiers": ids, "profile": "shortlived"}))).await;
    assert_eq!(order.status, 201, "{}", order.text);
    assert_eq!(order.json()["profile"], "shortlived");
    c.validate_order(&server, &order.json()).await;
    c.poll(&order.location()).await;
    let (der, _) = csr(&["short.example.test"]);
    let fin = c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await.json();
    let chain = c.post(fin["certificate"].as_str().unwrap(), None).await.text;
    let leaf = first_cert_der(&chain);
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    let v = cert.validity();
    assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 160 * 3600);
    // An order without a profile gets the default.
    assert_eq!(c.new_order(&["plain.example.test"]).await.json()["profile"], "default");
    c.post(&c.url("newOrder"), Some(&json!({"identifiers": ids, "profile": "forever"})))
        .await
        .assert_problem(400, "invalidProfile");
    server.stop().await;
}

#[tokio::test]
async fn nonce_rejection_knob_rejects_some_valid_nonces() {
    let server = start_with(|c| c.acme.testing.nonce_reject_percent = 50).await;
    let c = RawClient::new(&server, Key::p256()).await;
    let o = Overrides::default();
    let (mut bad, mut good) = (0, 0);
    for _ in 0..30 {
        let r = c.post_with(&c.url("newAccount"), Some(&json!({"onlyReturnExisting": true})), &o).await;
        match r.json()["type"].as_str().unwrap() {
            "urn:ietf:params:acme:error:badNonce" => bad += 1,
            "urn:ietf:params:acme:error:accountDoesNotExist" => good += 1,
            other => panic!("{other}"),
        }
    }
    assert!(bad > 0 && good > 0, "bad {bad}, good {good}");
    server.stop().await;
}

#[tokio::test]
async fn authz_reuse_knob_reuses_valid_authorizations() {
    let server = start_with(|c| c.acme.testing.authz_reuse_percent = 100).await;
    let c = registered(&server).await;
    let first = c.new_order(&["reuse.example.test"]).await;
    c.validate_order(&server, &first.json()).await;
    assert_eq!(c.poll(&first.location()).await["status"], "ready");
    let second = c.new_order(&["reuse.example.test", "fresh.example.test"]).await;
    assert_eq!(second.status, 201, "{}", second.text);
    let authzs = second.json()["authorizations"].as_array().unwrap().clone();
    assert!(authzs.contains(&first.json()["authorizations"][0]), "{authzs:?}");
    assert_eq!(second.json()["status"], "pending", "the fresh name is still pending");
    // Another account never gets this account's authorizations.
    let other = registered(&server).await;
    let theirs = other.new_order(&["reuse.example.test"]).await.json();
    assert_ne!(theirs["authorizations"][0], first.json()["authorizations"][0]);
    server.stop().await;
}

#[tokio::test]
async fn new_orders_are_rate_limited_per_account() {
    let server = start_with(|c| c.acme.new_orders_per_minute = 2).await;
    let c = registered(&server).await;
    assert_eq!(c.new_order(&["r1.example.test"]).await.status, 201);
    assert_eq!(c.new_order(&["r2.example.test"]).await.status, 201);
    let limited = c.new_order(&["r3.example.test"]).await;
    limited.assert_problem(429, "rateLimited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Nothing was stored for the refused order; another account is not affected.
    let list = c.post(&format!("{}/orders", c.kid.as_ref().unwrap()), None).await.json();
    assert_eq!(list["orders"].as_array().unwrap().len(), 2);
    let other = registered(&server).await;
    assert_eq!(other.new_order(&["r1.example.test"]).await.status, 201);
    server.stop().await;
}

#[tokio::test]
async fn orders_list_pages() {
    let server = start_with(|c| c.acme.orders_per_page = 2).await;
    let c = registered(&server).await;
    for i in 0..3 {
        assert_eq!(c.new_order(&[&format!("p{i}.example.test")]).await.status, 201);
    }
    let url = format!("{}/orders", c.kid.as_ref().unwrap());
    let first = c.post(&url, None).await;
    assert_eq!(first.json()["orders"].as_array().unwrap().len(), 2);
    let link = first
        .headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|l| l.contains("rel=\"next\""))
        .unwrap();
    let next = link.trim_start_matches('<').split('>').next().unwrap().to_owned();
    assert!(next.contains("?cursor="), "{next}");
    let second = c.post(&next, None).await;
    assert_eq!(second.json()["orders"].as_array().unwrap().len(), 1);
    assert!(second.headers.get_all("link").iter().all(|v| !v.to_str().unwrap().contains("rel=\"next\"")));
    let listed: std::collections::HashSet<String> = [&first, &second]
        .iter()
        .flat_map(|r| r.json()["orders"].as_array().unwrap().iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    // A cursor naming another account's order, or nothing, is the client's mistake.
    let other = registered(&server).await;
    let theirs = other.new_order(&["q.example.test"]).await.headers["location"].to_str().unwrap().to_owned();
    let theirs = theirs.rsplit('/').next().unwrap();
    for cursor in [theirs, "no-such-order"] {
        c.post(&format!("{url}?cursor={cursor}"), None).await.assert_problem(400, "malformed");
    }
    server.stop().await;
}
