//! Happy paths through the real HTTP surface, with instant-acme as the client.

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde_json::json;
use x509_parser::prelude::*;

use crate::certs::pem_blocks;
use crate::client::{Key, RawClient, csr};
use crate::harness::{TestServer, start};

async fn instant_acme_account(server: &TestServer) -> Account {
    let (account, _) = Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount {
                contact: &["mailto:ops@example.com"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            server.directory_url(),
            None,
        )
        .await
        .unwrap();
    account
}

/// The chain verifies to `root_pem`: leaf signed by the intermediate, intermediate by
/// the root; names, EKU and CA flag as ordered.
fn assert_chain(chain_pem: &str, root_pem: &str, names: &[&str]) {
    let chain = pem_blocks(chain_pem);
    assert_eq!(chain.len(), 2, "leaf + intermediate");
    let root = pem_blocks(root_pem).remove(0);
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let (_, int) = X509Certificate::from_der(&chain[1]).unwrap();
    let (_, root) = X509Certificate::from_der(&root).unwrap();
    leaf.verify_signature(Some(int.public_key())).unwrap();
    int.verify_signature(Some(root.public_key())).unwrap();
    root.verify_signature(None).unwrap();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(crate::certs::leaf_sans(chain_pem), want);
    assert!(leaf.extended_key_usage().unwrap().unwrap().value.server_auth);
    assert!(!leaf.is_ca());
}

/// If the openssl command exists, it must accept the chain too (an independent verifier).
fn openssl_verifies(dir: &std::path::Path, chain_pem: &str, root_pem: &str) {
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        return;
    }
    let blocks: Vec<&str> = chain_pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
    std::fs::write(dir.join("leaf.pem"), blocks[0]).unwrap();
    std::fs::write(dir.join("int.pem"), blocks[1]).unwrap();
    std::fs::write(dir.join("root-check.pem"), root_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(dir.join("root-check.pem"))
        .arg("-untrusted")
        .arg(dir.join("int.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl verify: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn instant_acme_gets_a_certificate_with_http01() {
    let server = start().await;
    let account = instant_acme_account(&server).await;
    let names = ["www.example.test", "example.test"];
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.to_string())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    assert_eq!(order.state().status, OrderStatus::Pending);
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.unwrap();
        assert_eq!(a.status, AuthorizationStatus::Pending);
        let mut ch = a.challenge(ChallengeType::Http01).unwrap();
        let ka = ch.key_authorization();
        server.challenges.set(&ch.token, ka.as_str());
        ch.set_ready().await.unwrap();
    }
    let retry = RetryPolicy::default().initial_delay(std::time::Duration::from_millis(20));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    let key_pem = order.finalize().await.unwrap();
    assert!(key_pem.contains("PRIVATE KEY"));
    let chain = order.poll_certificate(&retry).await.unwrap();
    assert_chain(&chain, &server.root_pem(), &names);
    openssl_verifies(server.dir.path(), &chain, &server.root_pem());

    // `idca root` (the real binary, on the same data directory) prints the root the
    // chain verifies to.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
        .arg("root")
        .arg("--data")
        .arg(server.data_dir())
        .envs(crate::harness::store_env(&server.data_dir()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), server.root_pem());
    server.stop().await;
}

/// Issue 20: listening on either loopback family, the advertised URLs name a host that
/// resolves only to the bound address (`[::1]`, not a `localhost` that resolves to
/// 127.0.0.1 first), and a real client gets a certificate through them.
#[tokio::test]
async fn each_loopback_family_advertises_what_it_bound() {
    use std::net::ToSocketAddrs;
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        if std::net::TcpListener::bind(listen).is_err() {
            eprintln!("skipping {listen}: no such loopback on this machine");
            continue;
        }
        let server = crate::harness::start_with(|c| c.server.listen = listen.parse().unwrap()).await;
        let bound = server.server.as_ref().unwrap().addr;
        let url = reqwest::Url::parse(&server.directory_url()).unwrap();
        let resolved: Vec<_> = (url.host_str().unwrap().trim_matches(['[', ']']), bound.port())
            .to_socket_addrs()
            .unwrap()
            .map(|a| a.ip())
            .collect();
        assert!(!resolved.is_empty() && resolved.iter().all(|ip| *ip == bound.ip()), "{url} for {bound}: {resolved:?}");
        if bound.is_ipv6() {
            assert!(
                url.as_str().starts_with(&format!("https://[::1]:{}/", bound.port()))
                    || url.as_str().starts_with("https://localhost:"),
                "{url}"
            );
        }
        let account = instant_acme_account(&server).await;
        let name = "family.example.test";
        let mut order = account.new_order(&NewOrder::new(&[Identifier::Dns(name.into())])).await.unwrap();
        let chain = crate::harness::finish_with_http01(&server, &mut order).await;
        assert_chain(&chain, &server.root_pem(), &[name]);
        server.stop().await;
    }
}

#[tokio::test]
async fn directory_and_nonce_follow_rfc8555() {
    let server = start().await;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let r = http.get(server.directory_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("link").is_none(), "the directory has no index link to itself");
    let dir: serde_json::Value = r.json().await.unwrap();
    let nonce_url = dir["newNonce"].as_str().unwrap();
    for key in ["newNonce", "newAccount", "newOrder"] {
        assert!(dir[key].as_str().unwrap().starts_with("https://localhost:"), "{key}");
    }
    let head = http.head(nonce_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let get = http.get(nonce_url).send().await.unwrap();
    assert_eq!(get.status(), 204);
    for r in [&head, &get] {
        // 16 bytes in base64url on sled's per-process scheme, 29 on the shared one.
        let len = if server.config.storage.url.is_empty() { 22 } else { 39 };
        assert_eq!(r.headers()["replay-nonce"].len(), len);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers()["link"].to_str().unwrap().contains("rel=\"index\""));
    }
    assert_ne!(head.headers()["replay-nonce"], get.headers()["replay-nonce"]);
    server.stop().await;
}

#[tokio::test]
async fn every_account_key_type_works_and_lists_its_orders() {
    let server = start().await;
    for key in [Key::p256(), Key::ed25519(), Key::rsa2048()] {
        let mut c = RawClient::new(&server, key).await;
        let r = c.register().await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json()["status"], "valid");
        // The same key again: 200 with the same Location (RFC 8555 §7.3.1).
        let as_jwk = crate::client::Overrides { kid: Some(None), ..Default::default() };
        let again = c.post_with(&c.url("newAccount"), Some(&json!({"onlyReturnExisting": true})), &as_jwk).await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.location(), r.location());

        let order = c.new_order(&["a.example.test"]).await;
        assert_eq!(order.status, 201, "{}", order.text);
        let order_url = order.location();
        c.validate_order(&server, &order.json()).await;
        assert_eq!(c.poll(&order_url).await["status"], "ready");
        let (der, _) = csr(&["a.example.test"]);
        let fin =
            c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": crate::client::b64(&der)}))).await;
        assert_eq!(fin.status, 200, "{}", fin.text);
        assert_eq!(fin.json()["status"], "valid");
        let cert = c.post(fin.json()["certificate"].as_str().unwrap(), None).await;
        assert_eq!(cert.status, 200);
        assert_eq!(cert.header("content-type").as_deref(), Some("application/pem-certificate-chain"));
        assert_chain(&cert.text, &server.root_pem(), &["a.example.test"]);

        let orders_url = r.json()["orders"].as_str().unwrap().to_owned();
        let list = c.post(&orders_url, None).await;
        assert_eq!(list.status, 200, "{}", list.text);
        assert_eq!(list.json()["orders"], json!([order_url]));
    }
    server.stop().await;
}

#[tokio::test]
async fn failed_http01_makes_challenge_authz_and_order_invalid() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let order = c.new_order(&["bad.example.test"]).await;
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.json();
    let ch = &authz["challenges"][0];
    server.challenges.set(ch["token"].as_str().unwrap(), "wrong-key-authorization");
    let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("link").unwrap().contains(&format!("<{authz_url}>;rel=\"up\"")));
    let authz = c.poll(&authz_url).await;
    assert_eq!(authz["status"], "invalid");
    assert_eq!(authz["challenges"][0]["status"], "invalid");
    assert_eq!(authz["challenges"][0]["error"]["type"], "urn:ietf:params:acme:error:unauthorized");
    assert_eq!(c.post(&order.location(), None).await.json()["status"], "invalid");
    server.stop().await;
}

#[tokio::test]
async fn unreachable_http01_is_a_connection_error() {
    // Port 1 on loopback: nothing listens there.
    let server = crate::harness::start_with(|c| c.acme.validation.http_port = 1).await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let order = c.new_order(&["down.example.test"]).await;
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.json();
    c.post(authz["challenges"][0]["url"].as_str().unwrap(), Some(&json!({}))).await;
    let authz = c.poll(&authz_url).await;
    assert_eq!(authz["challenges"][0]["error"]["type"], "urn:ietf:params:acme:error:connection");
    server.stop().await;
}

#[tokio::test]
async fn always_valid_skips_the_network() {
    let server = crate::harness::start_with(|c| c.acme.testing.always_valid = true).await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let order = c.new_order(&["nowhere.example.test"]).await;
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.json();
    c.post(authz["challenges"][0]["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(c.poll(&authz_url).await["status"], "valid");
    assert_eq!(c.post(&order.location(), None).await.json()["status"], "ready");
    server.stop().await;
}

#[tokio::test]
async fn deactivating_an_authorization_invalidates_the_order() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let order = c.new_order(&["d.example.test"]).await;
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let r = c.post(&authz_url, Some(&json!({"status": "deactivated"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "deactivated");
    assert_eq!(c.post(&order.location(), None).await.json()["status"], "invalid");
    server.stop().await;
}

#[tokio::test]
async fn account_update_and_deactivation() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    let acct_url = c.register().await.location();
    let r = c.post(&acct_url, Some(&json!({"contact": ["mailto:new@example.com"]}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["contact"], json!(["mailto:new@example.com"]));
    assert_eq!(c.post(&acct_url, None).await.json()["contact"], json!(["mailto:new@example.com"]));
    let r = c.post(&acct_url, Some(&json!({"status": "deactivated"}))).await;
    assert_eq!(r.json()["status"], "deactivated");
    // RFC 8555 §7.3.6: every request it signs is refused with 401 `unauthorized`.
    c.new_order(&["x.example.test"]).await.assert_problem(401, "unauthorized");
    c.post(&acct_url, None).await.assert_problem(401, "unauthorized");
    c.post(&acct_url, Some(&json!({"contact": []}))).await.assert_problem(401, "unauthorized");
    c.post(&format!("{acct_url}/orders"), None).await.assert_problem(401, "unauthorized");
    let o = crate::client::Overrides { kid: Some(None), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"onlyReturnExisting": true})), &o)
        .await
        .assert_problem(401, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn plain_http_when_tls_is_off() {
    let server = crate::harness::start_with(|c| c.server.tls = false).await;
    let url = server.directory_url();
    let base = reqwest::Url::parse(&url).unwrap().origin().ascii_serialization();
    assert!(base.starts_with("http://localhost:") || base.starts_with("http://127.0.0.1:"), "{url}");
    let dir: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert!(dir["newAccount"].as_str().unwrap().starts_with(&base));
    server.stop().await;
}
