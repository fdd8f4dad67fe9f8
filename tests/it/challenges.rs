//! dns-01, tls-alpn-01, wildcards and IP identifiers, each through the real validator
//! against responders the test runs on loopback.

use instant_acme::{Account, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy};
use serde_json::{Value, json};

use crate::certs::leaf_sans;
use crate::client::{Key, RawClient, b64};
use crate::harness::{TestServer, start};

async fn account(server: &TestServer) -> Account {
    Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false },
            server.directory_url(),
            None,
        )
        .await
        .unwrap()
        .0
}

fn retry() -> RetryPolicy {
    RetryPolicy::default().initial_delay(std::time::Duration::from_millis(20))
}

/// Answers every authorization of `order` with `kind`, using the test responders.
async fn solve(server: &TestServer, order: &mut instant_acme::Order, kind: ChallengeType) {
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.unwrap();
        let identifier = a.identifier().identifier.clone();
        let mut ch = a.challenge(kind.clone()).unwrap_or_else(|| panic!("no {kind:?} offered"));
        let ka = ch.key_authorization();
        match (&kind, &identifier) {
            (ChallengeType::Dns01, Identifier::Dns(name)) => {
                let base = name.trim_start_matches("*.");
                server.dns.set_txt(&format!("_acme-challenge.{base}"), &["unrelated", &ka.dns_value()]);
            }
            (ChallengeType::TlsAlpn01, Identifier::Dns(name)) => server.tls_alpn.set(name, name, ka.as_str(), true),
            (ChallengeType::TlsAlpn01, Identifier::Ip(ip)) => {
                let sni = idca::validate::sni_for(&idca::model::Identifier {
                    kind: idca::model::IdentifierKind::Ip,
                    value: ip.to_string(),
                })
                .unwrap();
                server.tls_alpn.set(&sni, &ip.to_string(), ka.as_str(), true)
            }
            (ChallengeType::Http01, _) => server.challenges.set(&ch.token, ka.as_str()),
            other => panic!("unexpected {other:?}"),
        }
        ch.set_ready().await.unwrap();
    }
}

async fn issue(server: &TestServer, ids: Vec<Identifier>, kind: ChallengeType) -> String {
    let account = account(server).await;
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    solve(server, &mut order, kind).await;
    assert_eq!(order.poll_ready(&retry()).await.unwrap(), OrderStatus::Ready);
    order.finalize().await.unwrap();
    order.poll_certificate(&retry()).await.unwrap()
}

#[tokio::test]
async fn dns01_and_a_wildcard() {
    let server = start().await;
    let ids = vec![Identifier::Dns("*.wild.example.test".into()), Identifier::Dns("wild.example.test".into())];
    let chain = issue(&server, ids, ChallengeType::Dns01).await;
    assert_eq!(leaf_sans(&chain), vec!["*.wild.example.test", "wild.example.test"]);
    server.stop().await;
}

#[tokio::test]
async fn tls_alpn01() {
    let server = start().await;
    let chain = issue(&server, vec![Identifier::Dns("alpn.example.test".into())], ChallengeType::TlsAlpn01).await;
    assert_eq!(leaf_sans(&chain), vec!["alpn.example.test"]);
    server.stop().await;
}

#[tokio::test]
async fn ip_identifiers_with_http01_and_tls_alpn01() {
    let server = start().await;
    let mut ips = vec!["127.0.0.1"];
    if server.challenges.ipv6 {
        ips.push("::1");
    }
    let ids = ips.iter().map(|ip| Identifier::Ip(ip.parse().unwrap())).collect();
    let chain = issue(&server, ids, ChallengeType::Http01).await;
    assert_eq!(leaf_sans(&chain), ips);
    let chain = issue(&server, vec![Identifier::Ip("127.0.0.1".parse().unwrap())], ChallengeType::TlsAlpn01).await;
    assert_eq!(leaf_sans(&chain), vec!["127.0.0.1"]);
    server.stop().await;
}

/// The offered challenges follow the identifier: wildcards only dns-01, IPs no dns-01.
#[tokio::test]
async fn challenge_offers_follow_the_identifier() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let order = c
        .post(
            &c.url("newOrder"),
            Some(&json!({"identifiers": [
                {"type":"dns","value":"*.w.example.test"},
                {"type":"dns","value":"n.example.test"},
                {"type":"ip","value":"127.0.0.1"}]})),
        )
        .await;
    assert_eq!(order.status, 201, "{}", order.text);
    let mut offers = Vec::new();
    for url in order.json()["authorizations"].as_array().unwrap() {
        let a = c.post(url.as_str().unwrap(), None).await.json();
        let mut types: Vec<String> =
            a["challenges"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap().to_owned()).collect();
        types.sort();
        offers.push((a["identifier"]["value"].as_str().unwrap().to_owned(), a["wildcard"] == json!(true), types));
    }
    offers.sort();
    assert_eq!(
        offers,
        vec![
            ("127.0.0.1".to_owned(), false, vec!["http-01".to_owned(), "tls-alpn-01".to_owned()]),
            ("n.example.test".to_owned(), false, vec!["dns-01".into(), "http-01".into(), "tls-alpn-01".into()]),
            ("w.example.test".to_owned(), true, vec!["dns-01".to_owned()]),
        ]
    );
    server.stop().await;
}

/// Starts a challenge on a fresh one-name order and returns the final authorization.
async fn fail_one(server: &TestServer, kind: &str, name: &str, prepare: impl FnOnce(&Value, &str)) -> Value {
    let mut c = RawClient::new(server, Key::p256()).await;
    c.register().await;
    let order = c.new_order(&[name]).await;
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.json();
    let ch = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap().clone();
    let ka = format!("{}.{}", ch["token"].as_str().unwrap(), c.key.thumbprint());
    prepare(&ch, &ka);
    assert_eq!(c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await.status, 200);
    let done = c.poll(&authz_url).await;
    assert_eq!(done["status"], "invalid");
    assert_eq!(c.post(&order.location(), None).await.json()["status"], "invalid");
    done["challenges"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap().clone()
}

fn digest(ka: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, ka.as_bytes()))
}

#[tokio::test]
async fn rejects_dns01_with_a_wrong_or_missing_record() {
    let server = start().await;
    let ch = fail_one(&server, "dns-01", "txt.example.test", |_, _| {
        server.dns.set_txt("_acme-challenge.txt.example.test", &[&digest("someone-else")]);
    })
    .await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:unauthorized");
    let ch = fail_one(&server, "dns-01", "none.example.test", |_, _| {}).await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:unauthorized");
    assert!(ch["error"]["detail"].as_str().unwrap().contains("no TXT record"));
    server.stop().await;
}

#[tokio::test]
async fn rejects_dns01_when_the_resolver_is_down() {
    // A resolver address where nothing answers: the validation ends, with `dns`.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let server = crate::harness::start_with(|c| {
        c.acme.validation.dns_resolver = addr.to_string();
        c.acme.validation.timeout_ms = 500;
    })
    .await;
    let ch = fail_one(&server, "dns-01", "dark.example.test", |_, _| {}).await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:dns");
    server.stop().await;
}

#[tokio::test]
async fn rejects_tls_alpn01_with_a_bad_certificate() {
    let server = start().await;
    // The wrong key authorization in the extension.
    let ch = fail_one(&server, "tls-alpn-01", "wrong.example.test", |_, _| {
        server.tls_alpn.set("wrong.example.test", "wrong.example.test", "not-it", true);
    })
    .await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:unauthorized", "{ch}");
    // A non-critical extension.
    let ch = fail_one(&server, "tls-alpn-01", "soft.example.test", |_, ka| {
        server.tls_alpn.set("soft.example.test", "soft.example.test", ka, false);
    })
    .await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:unauthorized");
    // No certificate for this SNI: the handshake fails.
    let ch = fail_one(&server, "tls-alpn-01", "nocert.example.test", |_, _| {}).await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:tls");
    server.stop().await;
}

/// RFC 8737 §3: the responder must negotiate `acme-tls/1`; one that answers without ALPN
/// or with another protocol is refused, even with the right certificate.
#[tokio::test]
async fn rejects_tls_alpn01_without_the_acme_tls_protocol() {
    for (what, alpn) in [("no ALPN", vec![]), ("h2 only", vec![b"h2".to_vec()])] {
        let plain = crate::harness::TlsAlpnResponder::start_with_alpn(alpn).await;
        let server = crate::harness::start_with(|c| c.acme.validation.tls_port = plain.port).await;
        let ch = fail_one(&server, "tls-alpn-01", "plain.example.test", |_, ka| {
            plain.set("plain.example.test", "plain.example.test", ka, true);
        })
        .await;
        assert_eq!(ch["status"], "invalid", "{what}: {ch}");
        assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:tls", "{what}: {ch}");
        server.stop().await;
    }
}

#[tokio::test]
async fn rejects_tls_alpn01_when_nothing_listens() {
    let server = crate::harness::start_with(|c| c.acme.validation.tls_port = 1).await;
    let ch = fail_one(&server, "tls-alpn-01", "closed.example.test", |_, _| {}).await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:connection");
    server.stop().await;
}

#[tokio::test]
async fn rejects_http01_redirect_abuse_and_oversized_bodies() {
    let server = start().await;
    let port = server.challenges.port;
    // A redirect to a non-HTTP scheme is not followed.
    let ch = fail_one(&server, "http-01", "ftp.example.test", |ch, _| {
        server.challenges.set(ch["token"].as_str().unwrap(), "REDIRECT ftp://127.0.0.1/x");
    })
    .await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:connection", "{ch}");
    // A redirect loop ends at the redirect limit.
    let ch = fail_one(&server, "http-01", "loop.example.test", |ch, _| {
        let token = ch["token"].as_str().unwrap();
        server
            .challenges
            .set(token, &format!("REDIRECT http://loop.example.test:{port}/.well-known/acme-challenge/{token}"));
    })
    .await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:connection", "{ch}");
    // A body over acme.validation.max_body_bytes is refused.
    let ch = fail_one(&server, "http-01", "big.example.test", |ch, ka| {
        server.challenges.set(ch["token"].as_str().unwrap(), &format!("{ka}{}", " ".repeat(10_000)));
    })
    .await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:unauthorized", "{ch}");
    assert!(ch["error"]["detail"].as_str().unwrap().contains("larger than"), "{ch}");
    server.stop().await;
}

#[tokio::test]
async fn http01_follows_a_redirect_and_ignores_trailing_whitespace() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let order = c.new_order(&["moved.example.test"]).await;
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.json();
    let ch = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
    let token = ch["token"].as_str().unwrap();
    let port = server.challenges.port;
    server
        .challenges
        .set(token, &format!("REDIRECT http://moved.example.test:{port}/.well-known/acme-challenge/final"));
    server.challenges.set("final", &format!("{token}.{}\r\n\t ", c.key.thumbprint()));
    c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(c.poll(&authz_url).await["status"], "valid");
    server.stop().await;
}

/// SSRF: a redirect to a link-local address (where cloud metadata services answer) is
/// never followed, whatever the configuration.
#[tokio::test]
async fn http01_never_follows_a_redirect_to_link_local_metadata() {
    let server = start().await;
    for target in ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://0.0.0.0/"] {
        let ch = fail_one(&server, "http-01", "meta.example.test", |ch, _| {
            server.challenges.set(ch["token"].as_str().unwrap(), &format!("REDIRECT {target}"));
        })
        .await;
        assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:connection", "{ch}");
        assert!(ch["error"]["detail"].as_str().unwrap().contains("idca does not connect to"), "{ch}");
    }
    server.stop().await;
}

/// SSRF: with `dial_private_addresses = false`, validation refuses loopback addresses,
/// by IP identifier for http-01 and tls-alpn-01.
#[tokio::test]
async fn private_addresses_are_not_dialled_when_switched_off() {
    let server = crate::harness::start_with(|c| c.acme.validation.dial_private_addresses = false).await;
    for kind in ["http-01", "tls-alpn-01"] {
        let mut c = RawClient::new(&server, Key::p256()).await;
        c.register().await;
        let order =
            c.post(&c.url("newOrder"), Some(&json!({"identifiers": [{"type": "ip", "value": "127.0.0.1"}]}))).await;
        assert_eq!(order.status, 201, "{}", order.text);
        let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
        let authz = c.post(&authz_url, None).await.json();
        let ch = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap().clone();
        let token = ch["token"].as_str().unwrap();
        // Served correctly: only the address policy can fail it.
        server.challenges.set(token, &format!("{token}.{}", c.key.thumbprint()));
        assert_eq!(c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await.status, 200);
        let done = c.poll(&authz_url).await;
        assert_eq!(done["status"], "invalid", "{kind}: {done}");
        let ch = done["challenges"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap().clone();
        assert!(ch["error"]["detail"].as_str().unwrap().contains("dial_private_addresses = false"), "{kind}: {ch}");
    }
    server.stop().await;
}

/// A validation target that accepts the connection and never answers: the validation
/// ends at `acme.validation.timeout_ms` with `connection`, and holds nothing after.
#[tokio::test]
async fn http01_gives_up_on_a_server_that_never_answers() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            open.push(sock);
        }
    });
    let server = crate::harness::start_with(|c| {
        c.acme.validation.http_port = port;
        c.acme.validation.timeout_ms = 500;
    })
    .await;
    let started = std::time::Instant::now();
    let ch = fail_one(&server, "http-01", "silent.example.test", |_, _| {}).await;
    assert_eq!(ch["error"]["type"], "urn:ietf:params:acme:error:connection", "{ch}");
    assert!(ch["error"]["detail"].as_str().unwrap().contains("timed out"), "{ch}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    held.abort();
    server.stop().await;
}
