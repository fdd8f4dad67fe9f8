//! Every abuse limit of `[limits]`, hit through the real HTTP surface: a clear refusal
//! (429 with Retry-After where waiting helps), never a hang, a crash or a lost record.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Key, RawClient};
use crate::harness::{TestServer, start_with};

/// A client trusting the server's root, and the server's base URL.
fn https(server: &TestServer) -> (reqwest::Client, String) {
    let root = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
    (
        reqwest::Client::builder().tls_certs_only([root]).build().unwrap(),
        server.directory_url().replace("/directory", ""),
    )
}

async fn registered(server: &TestServer) -> RawClient {
    let mut c = RawClient::new(server, Key::p256()).await;
    assert_eq!(c.register().await.status, 201);
    c
}

#[tokio::test]
async fn deep_json_in_a_jws_payload_is_malformed() {
    let server = start_with(|_| {}).await;
    let c = registered(&server).await;
    // 40 levels, past the default of 32; the same order at 4 levels is fine.
    let mut deep = json!("x");
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let r = c
        .post(&c.url("newOrder"), Some(&json!({"identifiers": [{"type": "dns", "value": "a.test"}], "x": deep})))
        .await;
    r.assert_problem(400, "malformed");
    assert!(r.text.contains("nested deeper than 32"), "{}", r.text);
    assert_eq!(c.new_order(&["a.test"]).await.status, 201);
    server.stop().await;
}

/// `limits.json_max_depth` is each server's own: a server with a limit of 6 refuses the
/// 7-level payload that a server beside it, on the default, takes.
#[tokio::test]
async fn each_server_applies_its_own_json_depth() {
    let strict = start_with(|c| c.limits.json_max_depth = 6).await;
    let relaxed = start_with(|_| {}).await;
    // The payload object plus `levels` nested arrays: levels + 1 deep (the flattened
    // JWS around it is parsed on its own, 1 deep).
    let payload = |levels: usize| {
        let mut deep = json!("x");
        for _ in 0..levels {
            deep = json!([deep]);
        }
        json!({"identifiers": [{"type": "dns", "value": "a.test"}], "x": deep})
    };
    let s = registered(&strict).await;
    let r = s.post(&s.url("newOrder"), Some(&payload(6))).await;
    r.assert_problem(400, "malformed");
    assert!(r.text.contains("nested deeper than 6"), "{}", r.text);
    assert_eq!(s.post(&s.url("newOrder"), Some(&payload(5))).await.status, 201);
    let r = registered(&relaxed).await;
    assert_eq!(r.post(&r.url("newOrder"), Some(&payload(6))).await.status, 201);
    strict.stop().await;
    relaxed.stop().await;
}

#[tokio::test]
async fn oauth_form_and_json_bodies_are_capped() {
    let server = start_with(|c| {
        c.limits.form_body_bytes = 1024;
        c.limits.json_body_bytes = 1024;
    })
    .await;
    let (http, base) = https(&server);
    let big = "x".repeat(2000);
    let r = http
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("pad", &big)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    let r = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": ["https://a.test/cb"], "client_name": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("limit"), "{body}");
    // Under the cap the same registration works.
    let r = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"redirect_uris": ["https://a.test/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.stop().await;
}

/// Plain HTTP, so that a raw socket can be slow on purpose.
async fn plain_server(header_ms: u64, body_ms: u64) -> TestServer {
    start_with(move |c| {
        c.server.tls = false;
        c.limits.request_header_timeout_ms = header_ms;
        c.limits.request_body_timeout_ms = body_ms;
    })
    .await
}

/// Sends `first`, waits, and reads what the server answers (or that it closed).
fn slow_exchange(addr: std::net::SocketAddr, first: &[u8]) -> (String, Duration) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(first).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_headers_is_cut_off() {
    let server = plain_server(300, 10_000).await;
    let addr = server.server.as_ref().unwrap().addr;
    let (answer, took) =
        tokio::task::spawn_blocking(move || slow_exchange(addr, b"GET /directory HTTP/1.1\r\nHost: x\r\n"))
            .await
            .unwrap();
    assert!(took < Duration::from_secs(5), "held for {took:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_body_is_refused() {
    let server = plain_server(5_000, 300).await;
    let addr = server.server.as_ref().unwrap().addr;
    let head = b"POST /acme/new-order HTTP/1.1\r\nHost: x\r\nContent-Type: application/jose+json\r\nContent-Length: 100\r\n\r\n{\"protected\":";
    let (answer, took) = tokio::task::spawn_blocking(move || slow_exchange(addr, head)).await.unwrap();
    assert!(took < Duration::from_secs(5), "held for {took:?}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within 300 ms"), "{answer}");
    server.stop().await;
}

async fn token_status(http: &reqwest::Client, base: &str, client: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{base}/oauth/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "acme")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_client_authentications_lock_out_the_client_then_the_address() {
    let server = crate::oauth::oauth_server(|c| {
        c.limits.token_max_failures = 3;
        c.limits.token_max_failures_per_address = 5;
    })
    .await;
    let (http, base) = https(&server);
    assert_eq!(token_status(&http, &base, "backend", crate::oauth::SECRET).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(token_status(&http, &base, "backend", "wrong").await.status(), 401);
    }
    // Locked: even the right secret waits, with Retry-After and an RFC 6749 error.
    let r = token_status(&http, &base, "backend", crate::oauth::SECRET).await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    // Guessing across client ids from one address: two more failures reach the
    // per-address limit of 5, after which every client id is refused from here.
    assert_eq!(token_status(&http, &base, "nobody-1", "x").await.status(), 401);
    assert_eq!(token_status(&http, &base, "nobody-2", "x").await.status(), 401);
    assert_eq!(token_status(&http, &base, "webapp", "x").await.status(), 429);
    server.stop().await;
}

#[tokio::test]
async fn pending_orders_and_authorizations_per_account_are_limited() {
    let server = start_with(|c| {
        c.limits.pending_orders_per_account = 2;
        c.limits.pending_authorizations_per_account = 5;
    })
    .await;
    let c = registered(&server).await;
    let first = c.new_order(&["p1.test", "p2.test"]).await;
    assert_eq!(first.status, 201);
    // 2 pending + 4 new > 5.
    let r = c.new_order(&["q1.test", "q2.test", "q3.test", "q4.test"]).await;
    r.assert_problem(429, "rateLimited");
    assert!(r.text.contains("pending_authorizations_per_account"), "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(c.new_order(&["p3.test"]).await.status, 201);
    let r = c.new_order(&["p4.test"]).await;
    r.assert_problem(429, "rateLimited");
    assert!(r.text.contains("pending_orders_per_account"), "{}", r.text);
    // Nothing was stored for the refused orders; another account is not affected.
    let list = c.post(&format!("{}/orders", c.kid.as_ref().unwrap()), None).await.json();
    assert_eq!(list["orders"].as_array().unwrap().len(), 2);
    assert_eq!(registered(&server).await.new_order(&["p4.test"]).await.status, 201);
    // Once an order is finished (here: invalid, its authorization deactivated), the
    // account may order again.
    let authz = first.json()["authorizations"][0].as_str().unwrap().to_owned();
    assert_eq!(c.post(&authz, Some(&json!({"status": "deactivated"}))).await.status, 200);
    assert_eq!(c.new_order(&["p4.test"]).await.status, 201);
    server.stop().await;
}

#[tokio::test]
async fn validations_waiting_past_the_queue_limit_are_refused_and_the_rest_complete() {
    let server = start_with(|c| {
        c.acme.validation.concurrency = 1;
        c.acme.testing.always_valid = true;
        c.acme.testing.validation_delay_ms = 1500;
        c.limits.queued_validations = 1;
    })
    .await;
    let c = registered(&server).await;
    let mut statuses = Vec::new();
    let mut accepted = Vec::new();
    for n in 0..3 {
        let order = c.new_order(&[&format!("v{n}.test")]).await.json();
        let authz = c.post(order["authorizations"][0].as_str().unwrap(), None).await.json();
        let ch = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
        let r = c.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
        statuses.push(r.status);
        if r.status == 200 {
            accepted.push(order["authorizations"][0].as_str().unwrap().to_owned());
        } else {
            r.assert_problem(429, "rateLimited");
            assert!(r.header("retry-after").is_some());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One validating, one waiting, the third refused.
    assert_eq!(statuses, vec![200, 200, 429]);
    // What was accepted is validated in the end.
    for a in accepted {
        let mut status = Value::Null;
        for _ in 0..100 {
            status = c.post(&a, None).await.json()["status"].clone();
            if status == "valid" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, "valid");
    }
    server.stop().await;
}

#[tokio::test]
async fn nonces_older_than_the_window_are_refused() {
    let server = start_with(|c| c.limits.nonce_window = 64).await;
    if !server.config.storage.url.is_empty() {
        // Shared nonces (PostgreSQL) have a lifetime instead of a window: see
        // nonce.rs's tests and postgres.rs.
        return server.stop().await;
    }
    let c = RawClient::new(&server, Key::p256()).await;
    let old = c.nonce().await;
    let mut young = String::new();
    for i in 0..64 {
        let n = c.nonce().await;
        if i == 10 {
            young = n;
        }
    }
    // 64 issued after `old`: it left the window; `young` is still inside.
    let url = c.url("newAccount");
    let o = crate::client::Overrides { nonce: Some(Some(old)), ..Default::default() };
    c.post_with(&url, Some(&json!({"termsOfServiceAgreed": true})), &o).await.assert_problem(400, "badNonce");
    let o = crate::client::Overrides { nonce: Some(Some(young)), ..Default::default() };
    assert_eq!(c.post_with(&url, Some(&json!({"termsOfServiceAgreed": true})), &o).await.status, 201);
    server.stop().await;
}

/// Password spraying: failures across user names from one address lock the address out.
#[tokio::test]
async fn failed_logins_across_user_names_lock_out_the_address() {
    let server = crate::oauth::oauth_server(|c| {
        c.oauth.login_max_failures = 100;
        c.limits.login_max_failures_per_address = 3;
    })
    .await;
    let mut b = crate::oauth::Browser::new(&server);
    let cli = crate::oauth::public_client(&b, "http://127.0.0.1/callback");
    let url = crate::oauth::openid_authorize_url(&cli);
    let login = b.get(url.as_str()).await;
    for user in ["bob", "carol", "dave"] {
        assert!(b.login(&login, user, "guess").await.text.contains("Wrong user name or password"));
    }
    let locked = b.login(&login, "alice", "wonderland").await;
    // RFC 6585 §4: 429 with Retry-After while locked out.
    assert_eq!(locked.status, 429);
    let wait: u64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0, "Retry-After {wait}");
    assert!(locked.text.contains("Too many failed attempts"), "{}", locked.text);
    server.stop().await;
}

/// Behind a trusted proxy, the address lockouts key on is the one it forwards: three
/// failures from one client lock that client out and not the next one behind the same
/// proxy; without `server.trusted_proxies` a forged X-Forwarded-For changes nothing.
#[tokio::test]
async fn lockouts_key_on_the_address_a_trusted_proxy_forwards() {
    let browser_from = |server: &TestServer, forwarded: &str| {
        let mut b = crate::oauth::Browser::new(server);
        let cert = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        b.http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .unwrap();
        b
    };
    for trusted in [true, false] {
        let server = crate::oauth::oauth_server(move |c| {
            c.oauth.login_max_failures = 100;
            c.limits.login_max_failures_per_address = 3;
            if trusted {
                c.server.trusted_proxies = vec!["127.0.0.1".into()];
            }
        })
        .await;
        for (n, user) in ["bob", "carol", "dave"].iter().enumerate() {
            // Without trust each request may claim another address: it does not help.
            let claimed = if trusted { "203.0.113.1".to_owned() } else { format!("203.0.113.{}", n + 10) };
            let mut b = browser_from(&server, &claimed);
            let cli = crate::oauth::public_client(&b, "http://127.0.0.1/callback");
            let login = b.get(crate::oauth::openid_authorize_url(&cli).as_str()).await;
            assert!(b.login(&login, user, "guess").await.text.contains("Wrong user name or password"));
        }
        let mut other = browser_from(&server, "203.0.113.2");
        let cli = crate::oauth::public_client(&other, "http://127.0.0.1/callback");
        let login = other.get(crate::oauth::openid_authorize_url(&cli).as_str()).await;
        let r = other.login(&login, "alice", "wonderland").await;
        if trusted {
            assert_ne!(r.status, 429, "another client behind the proxy is not locked out: {}", r.text);
            let mut same = browser_from(&server, "203.0.113.1");
            let login = same.get(crate::oauth::openid_authorize_url(&cli).as_str()).await;
            assert_eq!(same.login(&login, "alice", "wonderland").await.status, 429, "the failing client is");
        } else {
            assert_eq!(r.status, 429, "forged X-Forwarded-For must not escape the lockout");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn orders_with_too_many_identifiers_are_refused() {
    let server = start_with(|c| c.acme.max_identifiers = 2).await;
    let c = registered(&server).await;
    let r = c.new_order(&["a.test", "b.test", "c.test"]).await;
    r.assert_problem(400, "rejectedIdentifier");
    assert!(r.text.contains("at most 2 identifiers"), "{}", r.text);
    assert_eq!(c.new_order(&["a.test", "b.test"]).await.status, 201);
    server.stop().await;
}

/// A loop on dynamic registration stops at `limits.registrations_per_minute_per_address`
/// (429 temporarily_unavailable with Retry-After), counted in the store; refused
/// metadata does not count.
#[tokio::test]
async fn dynamic_registrations_per_address_are_rate_limited() {
    let server = crate::oauth::oauth_server(|c| c.limits.registrations_per_minute_per_address = 3).await;
    let b = crate::oauth::Browser::new(&server);
    let register = |m: Value| b.http.post(format!("{}/oauth/register", b.base)).json(&m).send();
    let good = json!({"redirect_uris": ["https://a.test/cb"]});
    assert_eq!(register(json!({"redirect_uris": ["http://a.test/cb"]})).await.unwrap().status(), 400);
    for _ in 0..3 {
        assert_eq!(register(good.clone()).await.unwrap().status(), 201);
    }
    let r = register(good.clone()).await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("registrations_per_minute_per_address"), "{body}");
    server.stop().await;
}

/// Device authorization requests stop at their per-address and per-client rates.
#[tokio::test]
async fn device_authorizations_are_rate_limited_per_address_and_per_client() {
    let server = crate::oauth::oauth_server(|c| {
        c.limits.device_authorizations_per_minute_per_address = 3;
        c.limits.device_authorizations_per_minute_per_client = 2;
    })
    .await;
    let b = crate::oauth::Browser::new(&server);
    let device = |client: String| {
        b.http
            .post(format!("{}/oauth/device", b.base))
            .form(&[("client_id", client), ("scope", "openid".into())])
            .send()
    };
    let reg: Value = b
        .http
        .post(format!("{}/oauth/register", b.base))
        .json(&json!({"token_endpoint_auth_method": "none", "scope": "openid",
                      "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other = reg["client_id"].as_str().unwrap().to_owned();
    // Per client: idca-cli gets two, the third is refused.
    for _ in 0..2 {
        assert_eq!(device("idca-cli".into()).await.unwrap().status(), 200);
    }
    let r = device("idca-cli".into()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("per_client"), "{body}");
    // Per address: the third request from this address counted there already; the next
    // one, from another client, is refused by the address.
    let r = device(other).await.unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("per_address"), "{body}");
    server.stop().await;
}

/// New accounts from one address stop at `limits.new_accounts_per_minute_per_address`:
/// rateLimited with Retry-After and nothing stored; a known key's newAccount (which
/// creates nothing) is still answered.
#[tokio::test]
async fn new_accounts_per_address_are_rate_limited() {
    let server = start_with(|c| c.limits.new_accounts_per_minute_per_address = 3).await;
    let first = registered(&server).await;
    for _ in 0..2 {
        registered(&server).await;
    }
    let mut refused = RawClient::new(&server, Key::p256()).await;
    let r = refused.register().await;
    r.assert_problem(429, "rateLimited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.text.contains("new_accounts_per_minute_per_address"), "{}", r.text);
    let as_jwk = crate::client::Overrides { kid: Some(None), ..Default::default() };
    let only_existing = json!({"onlyReturnExisting": true});
    let none = refused.post_with(&refused.url("newAccount"), Some(&only_existing), &as_jwk).await;
    none.assert_problem(400, "accountDoesNotExist");
    let again = first.post_with(&first.url("newAccount"), Some(&json!({})), &as_jwk).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(Some(again.location()), first.kid);
    server.stop().await;
}

/// Login pages shown to one address stop at `limits.login_pages_per_minute_per_address`:
/// the browser is sent back to the client with `temporarily_unavailable` (RFC 6749
/// §4.1.2.1) and nothing is stored; a page already shown can still be used.
#[tokio::test]
async fn login_pages_per_address_are_rate_limited() {
    let server = crate::oauth::oauth_server(|c| c.limits.login_pages_per_minute_per_address = 2).await;
    let mut b = crate::oauth::Browser::new(&server);
    let url = crate::dpop::cli_authorize_url(&b.base, "openid");
    assert_eq!(b.get(&url).await.status, 200);
    let shown = b.get(&url).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let refused = b.get(&format!("{url}&state=s1")).await;
    assert!((300..400).contains(&refused.status), "{} {}", refused.status, refused.text);
    let to = refused.location();
    assert!(to.starts_with("http://127.0.0.1/callback?"), "{to}");
    assert!(to.contains("error=temporarily_unavailable") && to.contains("state=s1"), "{to}");
    assert!(to.contains("login_pages_per_minute_per_address"), "{to}");
    let page = b.login(&shown, "alice", crate::oauth::PASSWORD).await;
    assert!((300..400).contains(&page.status), "the page shown still logs in: {}", page.text);
    assert!(page.location().contains("code="), "{}", page.location());
    server.stop().await;
}

/// The store's live data as `/metrics` last reported it.
async fn store_live_bytes(b: &crate::oauth::Browser) -> u64 {
    let text = b.http.get(format!("{}/metrics", b.base)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("idca_store_live_bytes ")).expect("the live-bytes gauge");
    line["idca_store_live_bytes ".len()..].parse().unwrap()
}

/// The store quota: past `storage.quota_bytes` of live data nothing new is created (ACME
/// 503 serverInternal, OAuth 503 temporarily_unavailable, `/healthz` says so), reads go
/// on, and once the expired records are purged new objects are taken again.
#[tokio::test]
async fn the_store_quota_refuses_new_objects_until_a_purge_brings_it_below() {
    const QUOTA: u64 = 200_000;
    let server = crate::oauth::oauth_server(|c| {
        c.storage.quota_bytes = QUOTA;
        c.storage.quota_check_secs = 1;
        c.storage.purge_interval_secs = 1;
        c.oauth.login_page_lifetime_secs = 15;
        c.limits.login_pages_per_minute_per_address = 0;
        c.limits.new_accounts_per_minute_per_address = 0;
    })
    .await;
    let b = crate::oauth::Browser::new(&server);
    let baseline = store_live_bytes(&b).await;
    // (PostgreSQL may not have reported its first rows yet: 0 is possible.)
    assert!(baseline < QUOTA / 2, "a fresh store holds {baseline} bytes");
    let account = registered(&server).await;
    let url = crate::dpop::cli_authorize_url(&b.base, "openid");
    // Each login page shown keeps its request in the store: fill it.
    let started = Instant::now();
    let refused = loop {
        let r = b.http.get(&url).send().await.unwrap();
        if r.status() != 200 {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the quota never took effect");
    };
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("storage.quota_bytes"), "{body}");
    assert!(store_live_bytes(&b).await > QUOTA);
    let health = b.http.get(format!("{}/healthz", b.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "a store over its quota is still live");
    assert!(health.text().await.unwrap().contains("over quota"));
    // ACME: no new account or order; the account that exists still reads.
    let mut newcomer = RawClient::new(&server, Key::p256()).await;
    let r = newcomer.register().await;
    r.assert_problem(503, "serverInternal");
    assert!(r.header("retry-after").is_some());
    account.new_order(&["q.example.test"]).await.assert_problem(503, "serverInternal");
    assert_eq!(account.post(account.kid.as_ref().unwrap(), None).await.status, 200);
    let reg = b.http.post(format!("{}/oauth/register", b.base)).json(&json!({"redirect_uris": ["https://a.test/cb"]}));
    assert_eq!(reg.send().await.unwrap().status(), 503);
    // The pages expire, the purge removes them, the next measurement is below the quota.
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = b.http.get(&url).send().await.unwrap();
        if r.status() == 200 {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the store never went below its quota");
    };
    assert!(recovered >= Duration::from_secs(15), "only after the pages expired: {recovered:?}");
    assert_eq!(b.http.get(format!("{}/healthz", b.base)).send().await.unwrap().text().await.unwrap(), "ok\n");
    assert_eq!(newcomer.register().await.status, 201);
    server.stop().await;
}
