//! Every JWS, nonce and ownership rule, broken one at a time. Each rejection gets the
//! right problem document and changes nothing stored.

use serde_json::{Value, json};

use crate::client::{Key, Overrides, RawClient, b64, csr};
use crate::harness::{TestServer, start};

async fn registered(server: &TestServer) -> RawClient {
    let mut c = RawClient::new(server, Key::p256()).await;
    assert_eq!(c.register().await.status, 201);
    c
}

/// An account with a ready order for `name`.
async fn ready_order(server: &TestServer, c: &RawClient, name: &str) -> Value {
    let order = c.new_order(&[name]).await;
    assert_eq!(order.status, 201, "{}", order.text);
    let mut body = order.json();
    c.validate_order(server, &body).await;
    body = c.poll(&order.location()).await;
    assert_eq!(body["status"], "ready");
    body["url"] = json!(order.location());
    body
}

fn only_existing() -> Value {
    json!({"onlyReturnExisting": true})
}

/// Asserts the key of `c` has no account (nothing was stored).
async fn assert_no_account(c: &RawClient) {
    let o = Overrides { kid: Some(None), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&only_existing()), &o).await.assert_problem(400, "accountDoesNotExist");
}

#[tokio::test]
async fn rejects_tampered_signature() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    let mut jws = c.jws(&url, Some(&json!({"termsOfServiceAgreed": true})), &Overrides::default()).await;
    jws["payload"] = json!(b64(json!({"termsOfServiceAgreed": false}).to_string()));
    c.send(&url, jws.to_string(), "application/jose+json").await.assert_problem(400, "malformed");
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_replayed_nonce() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    let jws = c.jws(&url, Some(&only_existing()), &Overrides::default()).await;
    let first = c.send(&url, jws.to_string(), "application/jose+json").await;
    first.assert_problem(400, "accountDoesNotExist");
    let replay = c.send(&url, jws.to_string(), "application/jose+json").await;
    replay.assert_problem(400, "badNonce");
    // The fresh nonce in the badNonce response works.
    let fresh = replay.header("replay-nonce").unwrap();
    let o = Overrides { nonce: Some(Some(fresh)), ..Default::default() };
    c.post_with(&url, Some(&only_existing()), &o).await.assert_problem(400, "accountDoesNotExist");
    server.stop().await;
}

#[tokio::test]
async fn rejects_unknown_and_missing_nonce() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    for nonce in [Some("AAAAAAAAAAAAAAAAAAAAAA".to_owned()), Some("not base64!".to_owned()), None] {
        let o = Overrides { nonce: Some(nonce), ..Default::default() };
        c.post_with(&url, Some(&json!({"termsOfServiceAgreed": true})), &o).await.assert_problem(400, "badNonce");
    }
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_a_wrong_foreign_or_missing_url() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let o = Overrides { url: Some(c.url("newOrder")), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(403, "unauthorized");
    // The right path on another host (RFC 8555 §6.4: the whole URL must match).
    let elsewhere = c.url("newAccount").replace("://localhost:", "://evil.example:");
    assert_ne!(elsewhere, c.url("newAccount"));
    let o = Overrides { url: Some(elsewhere), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(403, "unauthorized");
    // No url at all.
    let o = Overrides { no_url: true, ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(400, "malformed");
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_jwk_and_kid_together_and_the_wrong_one() {
    let server = start().await;
    let c = registered(&server).await;
    // Both.
    let o = Overrides { jwk: Some(c.key.jwk()), ..Default::default() };
    c.post_with(&c.url("newOrder"), Some(&json!({"identifiers": [{"type":"dns","value":"a.test"}]})), &o)
        .await
        .assert_problem(400, "malformed");
    // A kid on newAccount.
    c.post(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true}))).await.assert_problem(400, "malformed");
    // A jwk on newOrder.
    let o = Overrides { kid: Some(None), ..Default::default() };
    c.post_with(&c.url("newOrder"), Some(&json!({"identifiers": [{"type":"dns","value":"a.test"}]})), &o)
        .await
        .assert_problem(400, "malformed");
    server.stop().await;
}

#[tokio::test]
async fn rejects_alg_none_and_hmac() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    for alg in ["none", "HS256", "ES256K", "PS256"] {
        let o = Overrides { alg: Some(alg.into()), ..Default::default() };
        let r = c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o).await;
        r.assert_problem(400, "badSignatureAlgorithm");
        assert!(r.json()["algorithms"].as_array().unwrap().contains(&json!("ES256")));
    }
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_jwk_with_private_parts_or_wrong_type() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let mut private = c.key.jwk();
    private["d"] = json!(b64([7u8; 32]));
    let o = Overrides { jwk: Some(private), kid: Some(None), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(400, "badPublicKey");
    // An Ed25519 key claimed as ES256.
    let o = Overrides { jwk: Some(Key::ed25519().jwk()), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(400, "badPublicKey");
    // A 1024-bit RSA key.
    let mut n = vec![0xc5u8; 128];
    n[127] |= 1;
    let o = Overrides {
        alg: Some("RS256".into()),
        jwk: Some(json!({"kty":"RSA","n":b64(&n),"e":"AQAB"})),
        ..Default::default()
    };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(400, "badPublicKey");
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_unknown_crit() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let o = Overrides { extra: Some(("crit".into(), json!(["exp"]))), ..Default::default() };
    c.post_with(&c.url("newAccount"), Some(&json!({"termsOfServiceAgreed": true})), &o)
        .await
        .assert_problem(400, "malformed");
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_wrong_content_type_and_oversized_body() {
    let server = start_with_small_limit().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    let jws = c.jws(&url, Some(&json!({"termsOfServiceAgreed": true})), &Overrides::default()).await;
    c.send(&url, jws.to_string(), "application/json").await.assert_problem(415, "malformed");
    let big = json!({"termsOfServiceAgreed": true, "pad": "x".repeat(5000)});
    let jws = c.jws(&url, Some(&big), &Overrides::default()).await;
    c.send(&url, jws.to_string(), "application/jose+json").await.assert_problem(413, "malformed");
    assert_no_account(&c).await;
    server.stop().await;
}

async fn start_with_small_limit() -> TestServer {
    crate::harness::start_with(|c| c.limits.jose_body_bytes = 4096).await
}

#[tokio::test]
async fn rejects_bad_json_and_bad_base64() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    for body in [
        "not json".to_owned(),
        json!({"protected": "%%%", "payload": "", "signature": ""}).to_string(),
        json!({"protected": b64("{"), "payload": "", "signature": ""}).to_string(),
        json!({"payload": "", "signature": ""}).to_string(),
    ] {
        c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    }
    // A correctly signed payload that is not JSON.
    let protected = b64(json!({"alg":"ES256","jwk":c.key.jwk(),"nonce":c.nonce().await,"url":url}).to_string());
    let payload = b64("{not json");
    let sig = b64(c.key.sign(format!("{protected}.{payload}").as_bytes()));
    let body = json!({"protected": protected, "payload": payload, "signature": sig}).to_string();
    c.send(&url, body, "application/jose+json").await.assert_problem(400, "malformed");
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_unknown_account() {
    let server = start().await;
    let c = registered(&server).await;
    let kid = c.kid.clone().unwrap();
    let o = Overrides { kid: Some(Some(format!("{kid}nope"))), ..Default::default() };
    c.post_with(&c.url("newOrder"), Some(&json!({"identifiers": [{"type":"dns","value":"a.test"}]})), &o)
        .await
        .assert_problem(400, "accountDoesNotExist");
    let o = Overrides { kid: Some(Some("https://elsewhere.example/acme/acct/x".into())), ..Default::default() };
    c.post_with(&c.url("newOrder"), Some(&json!({"identifiers": [{"type":"dns","value":"a.test"}]})), &o)
        .await
        .assert_problem(400, "accountDoesNotExist");
    server.stop().await;
}

#[tokio::test]
async fn rejects_a_request_signed_by_another_key_for_an_account() {
    let server = start().await;
    let victim = registered(&server).await;
    let mut attacker = RawClient::new(&server, Key::p256()).await;
    attacker.kid = victim.kid.clone();
    attacker.new_order(&["steal.test"]).await.assert_problem(400, "malformed");
    server.stop().await;
}

#[tokio::test]
async fn rejects_access_to_another_accounts_resources() {
    let server = start().await;
    let owner = registered(&server).await;
    let other = registered(&server).await;
    let order = ready_order(&server, &owner, "mine.example.test").await;
    let order_url = order["url"].as_str().unwrap();
    let authz_url = order["authorizations"][0].as_str().unwrap();
    let authz = owner.post(authz_url, None).await.json();
    let chall_url = authz["challenges"][0]["url"].as_str().unwrap();
    other.post(order_url, None).await.assert_problem(403, "unauthorized");
    other.post(authz_url, None).await.assert_problem(403, "unauthorized");
    other.post(authz_url, Some(&json!({"status":"deactivated"}))).await.assert_problem(403, "unauthorized");
    other.post(chall_url, Some(&json!({}))).await.assert_problem(403, "unauthorized");
    let (der, _) = csr(&["mine.example.test"]);
    other
        .post(order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)})))
        .await
        .assert_problem(403, "unauthorized");
    other.post(owner.kid.as_ref().unwrap(), None).await.assert_problem(403, "unauthorized");
    other.post(&format!("{}/orders", owner.kid.as_ref().unwrap()), None).await.assert_problem(403, "unauthorized");
    // Nothing changed: the owner's order is still ready and finalizes.
    assert_eq!(owner.post(order_url, None).await.json()["status"], "ready");
    let fin = owner.post(order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await;
    assert_eq!(fin.json()["status"], "valid", "{}", fin.text);
    other.post(fin.json()["certificate"].as_str().unwrap(), None).await.assert_problem(403, "unauthorized");
    server.stop().await;
}

#[tokio::test]
async fn rejects_finalize_before_ready() {
    let server = start().await;
    let c = registered(&server).await;
    let order = c.new_order(&["early.example.test"]).await;
    let (der, _) = csr(&["early.example.test"]);
    c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)})))
        .await
        .assert_problem(403, "orderNotReady");
    assert_eq!(c.post(&order.location(), None).await.json()["status"], "pending");
    server.stop().await;
}

#[tokio::test]
async fn rejects_csr_for_other_names_the_account_key_or_ca_rights() {
    let server = start().await;
    let c = registered(&server).await;
    let order = ready_order(&server, &c, "good.example.test").await;
    let finalize = order["finalize"].as_str().unwrap();
    let bad_csr = |der: Vec<u8>| json!({"csr": b64(der)});
    // Other names, missing names, extra names.
    for names in [vec!["evil.example.test"], vec!["good.example.test", "evil.example.test"]] {
        let (der, _) = csr(&names);
        c.post(finalize, Some(&bad_csr(der))).await.assert_problem(400, "badCSR");
    }
    // A CSR asking to be a CA.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["good.example.test".to_owned()]).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let der = p.serialize_request(&key).unwrap().der().to_vec();
    c.post(finalize, Some(&bad_csr(der))).await.assert_problem(400, "badCSR");
    // Not base64url / not a CSR.
    c.post(finalize, Some(&json!({"csr": "***"}))).await.assert_problem(400, "badCSR");
    c.post(finalize, Some(&json!({"csr": b64(b"garbage")}))).await.assert_problem(400, "badCSR");
    // The order is still ready: the rejections changed nothing.
    assert_eq!(c.post(order["url"].as_str().unwrap(), None).await.json()["status"], "ready");
    server.stop().await;
}

#[tokio::test]
async fn rejects_csr_signed_with_the_account_key() {
    let server = start().await;
    // An account whose key rcgen can also use: the Ed25519 fixture.
    let mut c = RawClient::new(&server, Key::ed25519()).await;
    assert_eq!(c.register().await.status, 201);
    let order = ready_order(&server, &c, "same.example.test").await;
    let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keys/ed25519.pem")).unwrap();
    let key = rcgen::KeyPair::from_pem(&pem).unwrap();
    let der = rcgen::CertificateParams::new(vec!["same.example.test".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let r = c.post(order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(der)}))).await;
    r.assert_problem(400, "badCSR");
    assert!(r.json()["detail"].as_str().unwrap().contains("account key"));
    server.stop().await;
}

#[tokio::test]
async fn rejects_bad_identifiers() {
    let server = start().await;
    let c = registered(&server).await;
    let url = c.url("newOrder");
    let cases = [
        (json!([{"type":"dns","value":"bad_name.test"}]), "rejectedIdentifier"),
        (json!([{"type":"dns","value":"a..test"}]), "rejectedIdentifier"),
        // Names an HTTP client would read as 169.254.169.254 (SSRF in disguise).
        (json!([{"type":"dns","value":"2852039166"}]), "rejectedIdentifier"),
        (json!([{"type":"dns","value":"0xa9fea9fe"}]), "rejectedIdentifier"),
        (json!([{"type":"dns","value":"169.254.43518"}]), "rejectedIdentifier"),
        (json!([{"type":"email","value":"a@b.test"}]), "unsupportedIdentifier"),
        (json!([]), "malformed"),
    ];
    for (ids, kind) in cases {
        c.post(&url, Some(&json!({"identifiers": ids}))).await.assert_problem(400, kind);
    }
    let orders = c.post(&format!("{}/orders", c.kid.as_ref().unwrap()), None).await.json();
    assert_eq!(orders["orders"], json!([]), "rejected orders were stored");
    server.stop().await;
}

/// RFC 8555 §6.7.1: an order with some refused identifiers among acceptable ones names
/// each refused one in a subproblem with its `identifier`; mixed types are `compound`.
#[tokio::test]
async fn refused_identifiers_each_get_a_subproblem() {
    let server = crate::harness::start_with(|c| c.acme.blocked_domains = vec!["blocked.example".into()]).await;
    let c = registered(&server).await;
    let url = c.url("newOrder");
    let ids = json!([
        {"type":"dns","value":"ok.example.test"},
        {"type":"dns","value":"www.blocked.example"},
        {"type":"dns","value":"blocked.example"},
    ]);
    let r = c.post(&url, Some(&json!({"identifiers": ids}))).await;
    r.assert_problem(400, "rejectedIdentifier");
    let sub = r.json()["subproblems"].as_array().unwrap().clone();
    assert_eq!(sub.len(), 2, "{}", r.text);
    // Subproblems follow the order's (sorted) identifier list.
    for (s, name) in sub.iter().zip(["blocked.example", "www.blocked.example"]) {
        assert_eq!(s["type"], "urn:ietf:params:acme:error:rejectedIdentifier");
        assert_eq!(s["identifier"], json!({"type": "dns", "value": name}));
        assert!(s["detail"].as_str().unwrap().contains(name), "{s}");
    }
    // Different reasons: the top-level type is compound, each subproblem keeps its own.
    let ids = json!([
        {"type":"dns","value":"ok.example.test"},
        {"type":"email","value":"a@b.test"},
        {"type":"dns","value":"x.blocked.example"},
    ]);
    let r = c.post(&url, Some(&json!({"identifiers": ids}))).await;
    r.assert_problem(400, "compound");
    let types: Vec<_> = r.json()["subproblems"].as_array().unwrap().iter().map(|s| s["type"].clone()).collect();
    assert_eq!(
        types,
        [
            json!("urn:ietf:params:acme:error:unsupportedIdentifier"),
            json!("urn:ietf:params:acme:error:rejectedIdentifier")
        ]
    );
    // One refused identifier alone still gets its subproblem.
    let r = c.post(&url, Some(&json!({"identifiers": [{"type":"dns","value":"bad_name.test"}]}))).await;
    assert_eq!(r.json()["subproblems"][0]["identifier"]["value"], "bad_name.test");
    let orders = c.post(&format!("{}/orders", c.kid.as_ref().unwrap()), None).await.json();
    assert_eq!(orders["orders"], json!([]), "rejected orders were stored");
    server.stop().await;
}

#[tokio::test]
async fn rejects_post_as_get_violations_and_unknown_resources() {
    let server = start().await;
    let c = registered(&server).await;
    let order = c.new_order(&["p.example.test"]).await;
    c.post(&order.location(), Some(&json!({}))).await.assert_problem(400, "malformed");
    let missing = format!("{}x", order.location());
    c.post(&missing, None).await.assert_problem(404, "malformed");
    server.stop().await;
}

/// RFC 8555 §6.3: a plain GET on a POST-as-GET resource is 405 with `Allow: POST` and a
/// `malformed` problem (not 404); the GET resources stay GET.
#[tokio::test]
async fn answers_plain_get_on_post_as_get_resources_with_405() {
    let server = start().await;
    let c = registered(&server).await;
    let order = ready_order(&server, &c, "get.example.test").await;
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let chall_url = c.post(&authz_url, None).await.json()["challenges"][0]["url"].as_str().unwrap().to_owned();
    let (der, _) = csr(&["get.example.test"]);
    let fin = c.post(order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await;
    let cert_url = c.poll(order["url"].as_str().unwrap()).await["certificate"].as_str().unwrap().to_owned();
    assert_eq!(fin.status, 200, "{}", fin.text);
    let kid = c.kid.clone().unwrap();
    let urls = [
        c.url("newAccount"),
        kid.clone(),
        format!("{kid}/orders"),
        c.url("newOrder"),
        order["url"].as_str().unwrap().to_owned(),
        order["finalize"].as_str().unwrap().to_owned(),
        authz_url,
        chall_url,
        cert_url.clone(),
        c.url("revokeCert"),
        c.url("keyChange"),
    ];
    for url in &urls {
        let r = c.http.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let allow = r.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let nonce = r.headers().get("replay-nonce").is_some();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 405, "GET {url}: {body}");
        assert_eq!(allow.as_deref(), Some("POST"), "GET {url}");
        assert_eq!(body["type"], "urn:ietf:params:acme:error:malformed", "GET {url}");
        assert!(nonce, "GET {url} without a Replay-Nonce");
        // Other methods too.
        assert_eq!(c.http.put(url).send().await.unwrap().status(), 405, "PUT {url}");
    }
    // POST still works on the same resource; the GET resources answer GET.
    assert_eq!(c.post(&cert_url, None).await.status, 200);
    assert_eq!(c.http.get(c.url("newNonce")).send().await.unwrap().status(), 204);
    assert_eq!(c.http.get(server.directory_url()).send().await.unwrap().status(), 200);
    assert_eq!(c.http.get(format!("{}x", c.url("newOrder"))).send().await.unwrap().status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn rejects_bad_contacts_and_stores_nothing() {
    let server = start().await;
    let c = RawClient::new(&server, Key::p256()).await;
    let url = c.url("newAccount");
    c.post(&url, Some(&json!({"termsOfServiceAgreed": true, "contact": ["tel:+15551234"]})))
        .await
        .assert_problem(400, "unsupportedContact");
    c.post(&url, Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:not-an-address"]})))
        .await
        .assert_problem(400, "invalidContact");
    assert_no_account(&c).await;
    server.stop().await;
}

#[tokio::test]
async fn rejects_missing_terms_agreement_when_terms_are_set() {
    let server = crate::harness::start_with(|c| c.acme.terms_of_service = "https://example.test/tos".into()).await;
    let c = RawClient::new(&server, Key::p256()).await;
    assert_eq!(c.dir["meta"]["termsOfService"], "https://example.test/tos");
    c.post(&c.url("newAccount"), Some(&json!({}))).await.assert_problem(403, "userActionRequired");
    assert_no_account(&c).await;
    server.stop().await;
}

/// `notBefore` / `notAfter` are honoured without bounds (as Pebble does) but only within
/// what a certificate can encode, years 0000-9999 in UTC (RFC 5280 §4.1.2.5): a time
/// outside, also one that is inside only in its own offset, or a `notBefore` whose
/// profile validity ends past 9999, is `malformed` at newOrder and nothing is stored.
/// (Year 0000 in `+00:01` made finalize panic in the certificate encoder; a notAfter
/// past 9999 in UTC made it a 500.) The first and last encodable seconds are issued.
#[tokio::test]
async fn rejects_validity_a_certificate_cannot_encode() {
    let server = start().await;
    let c = registered(&server).await;
    let url = c.url("newOrder");
    let ids = json!([{"type":"dns","value":"old.example.test"}]);
    for (not_before, not_after) in [
        (Some("0000-01-01T00:00:00+00:01"), Some("2100-01-01T00:00:00Z")),
        (Some("0000-01-01T12:00:00+23:59"), None),
        (None, Some("9999-12-31T23:59:59-00:01")),
        (Some("9999-12-31T00:00:00Z"), None),
    ] {
        let mut payload = json!({"identifiers": ids});
        if let Some(t) = not_before {
            payload["notBefore"] = json!(t);
        }
        if let Some(t) = not_after {
            payload["notAfter"] = json!(t);
        }
        let r = c.post(&url, Some(&payload)).await;
        r.assert_problem(400, "malformed");
        assert!(r.json()["detail"].as_str().unwrap().contains("9999"), "{not_before:?} {not_after:?}: {}", r.text);
    }
    let orders = c.post(&format!("{}/orders", c.kid.as_ref().unwrap()), None).await.json();
    assert_eq!(orders["orders"], json!([]), "rejected orders were stored");
    // The edges themselves are certificates.
    let payload = json!({"identifiers": ids, "notBefore": "0000-01-01T00:00:00Z", "notAfter": "9999-12-31T23:59:59Z"});
    let order = c.post(&url, Some(&payload)).await;
    assert_eq!(order.status, 201, "{}", order.text);
    c.validate_order(&server, &order.json()).await;
    assert_eq!(c.poll(&order.location()).await["status"], "ready");
    let (der, _key) = csr(&["old.example.test"]);
    let fin = c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await;
    assert_eq!(fin.status, 200, "{}", fin.text);
    let pem = c.post(fin.json()["certificate"].as_str().unwrap(), None).await.text;
    let leaf = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
    let leaf = leaf.parse_x509().unwrap();
    assert_eq!(leaf.validity().not_before.timestamp(), -62_167_219_200);
    assert_eq!(leaf.validity().not_after.timestamp(), 253_402_300_799);
    server.stop().await;
}

/// A NUL character in an id or a field (`%00`, `\u0000`) is `malformed` or not found on
/// every store, never a 500 (PostgreSQL cannot keep it in text or JSON).
#[tokio::test]
async fn a_nul_in_an_id_or_a_field_is_a_client_error() {
    let server = start().await;
    let c = registered(&server).await;
    let base = c.url("newOrder").replace("/new-order", "");
    for url in [format!("{base}/order/a%00b"), format!("{base}/authz/a%00b"), format!("{base}/cert/a%00b")] {
        let r = c.post(&url, None).await;
        assert!((400..500).contains(&r.status), "{url}: {} {}", r.status, r.text);
        assert!(r.text.contains("urn:ietf:params:acme:error:"), "{url}: {}", r.text);
    }
    let r = c.post(&format!("{}/orders?cursor=a%00b", c.kid.as_ref().unwrap()), None).await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text);
    // A query or path that does not deserialize: problem documents, not actix's text.
    c.post(&format!("{}/orders?cursor=a&cursor=b", c.kid.as_ref().unwrap()), None)
        .await
        .assert_problem(400, "malformed");
    c.post(&format!("{base}/cert/abc/alternate/x"), None).await.assert_problem(404, "malformed");
    let other = RawClient::new(&server, Key::p256()).await;
    let r = other
        .post(
            &other.url("newAccount"),
            Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:a\u{0}@b.example"]})),
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text);
    server.stop().await;
}
