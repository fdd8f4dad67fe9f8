//! Several instances on one database (issue 16), in process and without a load balancer:
//! each test addresses the instances directly while every URL they give out is the
//! first one's, as behind a load balancer. They run with `IDCA_TEST_STORE=postgres`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use instant_acme::{Account, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy};
use serde_json::{Value, json};

use crate::client::{Key, Overrides, RawClient};
use crate::dpop::{DpopKey, cli_authorize_url, cli_code_form, code_of, send};
use crate::harness::TestServer;
use crate::oauth::{Browser, PASSWORD, oauth_server};

/// Instances sharing one database and one public URL (the first one's).
struct Cluster {
    nodes: Vec<TestServer>,
    public: String,
}

impl Cluster {
    /// `n` instances (with users and clients as `oauth_server` has them), each configured
    /// by `tweak(i, config)`; `None` on sled.
    async fn start(n: usize, tweak: impl Fn(usize, &mut idca::config::Config) + Clone) -> Option<Self> {
        if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
            return None;
        }
        let t = tweak.clone();
        let first = oauth_server(move |c| t(0, c)).await;
        let public = first.directory_url().replace("/directory", "");
        let mut cluster = Self { nodes: vec![first], public };
        for i in 1..n {
            let t = tweak.clone();
            cluster.add(move |c| t(i, c)).await;
        }
        Some(cluster)
    }

    /// Starts one more instance on the same database.
    async fn add(&mut self, tweak: impl FnOnce(&mut idca::config::Config)) {
        let a = &self.nodes[0];
        let (url, public, validation) =
            (a.config.storage.url.clone(), self.public.clone(), a.config.acme.validation.clone());
        let node = oauth_server(move |c| {
            c.storage.url = url;
            c.server.public_url = public;
            // Validations from any instance reach the first one's responders.
            c.acme.validation = validation;
            tweak(c);
        })
        .await;
        self.nodes.push(node);
    }

    /// Instance `i`'s own base URL.
    fn base(&self, i: usize) -> String {
        format!("https://localhost:{}", self.nodes[i].server.as_ref().unwrap().addr.port())
    }

    /// `url` (a public URL) sent to instance `i`.
    fn on(&self, url: &str, i: usize) -> String {
        url.replacen(&self.public, &self.base(i), 1)
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// An ACME POST signed for `url` (the public URL) with `nonce`, sent to instance `i`.
async fn post_at(
    c: &Cluster,
    client: &RawClient,
    i: usize,
    url: &str,
    payload: Option<&Value>,
    nonce: String,
) -> crate::client::Resp {
    let o = Overrides { nonce: Some(Some(nonce)), ..Default::default() };
    let jws = client.jws(url, payload, &o).await;
    client.send(&c.on(url, i), jws.to_string(), "application/jose+json").await
}

/// The directory is the same from each instance, and a nonce from one is good at another,
/// once.
#[tokio::test]
async fn instances_give_one_directory_and_accept_each_others_nonces_once() {
    let Some(c) = Cluster::start(3, |_, _| {}).await else { return };
    let mut client = RawClient::new(&c.nodes[0], Key::p256()).await;
    let dirs: Vec<String> = futures_join((0..3).map(|i| {
        let http = client.http.clone();
        let url = format!("{}/directory", c.base(i));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    }))
    .await;
    assert!(dirs.iter().all(|d| *d == dirs[0]), "{dirs:?}");
    assert_eq!(client.register().await.status, 201);
    let head = client.http.head(c.on(&client.url("newNonce"), 0)).send().await.unwrap();
    let nonce = head.headers()["replay-nonce"].to_str().unwrap().to_owned();
    let kid = client.kid.clone().unwrap();
    let r = post_at(&c, &client, 1, &kid, None, nonce.clone()).await;
    assert_eq!(r.status, 200, "a nonce from A at B: {}", r.text);
    post_at(&c, &client, 2, &kid, None, nonce).await.assert_problem(400, "badNonce");
    c.stop().await;
}

async fn futures_join<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

/// instant-acme's HTTP client sending each request to the next instance (round robin),
/// with the URLs unchanged but for the port.
struct Rotating {
    http: reqwest::Client,
    ports: Vec<u16>,
    next: AtomicUsize,
    sent: Arc<Vec<AtomicUsize>>,
}

impl instant_acme::HttpClient for Rotating {
    fn request(
        &self,
        req: http::Request<instant_acme::BodyWrapper<bytes::Bytes>>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.ports.len();
        self.sent[i].fetch_add(1, Ordering::Relaxed);
        let (mut parts, body) = req.into_parts();
        let mut uri = reqwest::Url::parse(&parts.uri.to_string()).unwrap();
        uri.set_port(Some(self.ports[i])).unwrap();
        parts.uri = uri.as_str().parse().unwrap();
        let req = http::Request::from_parts(parts, reqwest::Body::wrap(body));
        let http = self.http.clone();
        Box::pin(async move {
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let resp = http.execute(req.try_into().map_err(other)?).await.map_err(other)?;
            Ok(instant_acme::BytesResponse::from(http::Response::<reqwest::Body>::from(resp)))
        })
    }
}

/// An instant-acme issuance of `name` with its requests sent round robin to the
/// instances `on`, trusting `roots`; the chain, and how many requests each got.
async fn issue_through(c: &Cluster, on: &[usize], roots: &[&str], name: &str) -> (String, Vec<usize>) {
    let roots = roots.iter().map(|r| reqwest::Certificate::from_pem(r.as_bytes()).unwrap());
    let sent: Arc<Vec<AtomicUsize>> = Arc::new(on.iter().map(|_| AtomicUsize::new(0)).collect());
    let ports = on.iter().map(|i| c.nodes[*i].server.as_ref().unwrap().addr.port()).collect();
    let http = reqwest::Client::builder().tls_certs_only(roots).build().unwrap();
    let rotating = Rotating { http, ports, next: AtomicUsize::new(0), sent: sent.clone() };
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, _) =
        Account::builder_with_http(Box::new(rotating)).create(&new, c.nodes[0].directory_url(), None).await.unwrap();
    let mut order = account.new_order(&NewOrder::new(&[Identifier::Dns(name.into())])).await.unwrap();
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.unwrap();
        let mut ch = a.challenge(ChallengeType::Http01).unwrap();
        c.nodes[0].challenges.set(&ch.token, ch.key_authorization().as_str());
        ch.set_ready().await.unwrap();
    }
    let retry = RetryPolicy::default().initial_delay(Duration::from_millis(20));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    order.finalize().await.unwrap();
    let chain = order.poll_certificate(&retry).await.unwrap();
    (chain, sent.iter().map(|n| n.load(Ordering::Relaxed)).collect())
}

/// A full instant-acme issuance with its requests spread over three instances.
#[tokio::test]
async fn instant_acme_issues_through_three_instances() {
    let Some(c) = Cluster::start(3, |_, _| {}).await else { return };
    let root = c.nodes[0].root_pem();
    let (chain, counts) = issue_through(&c, &[0, 1, 2], &[&root], "spread.example.test").await;
    crate::chains::webpki(&chain, &root, "spread.example.test").unwrap();
    assert!(counts.iter().all(|n| *n >= 3), "every instance served requests: {counts:?}");
    c.stop().await;
}

/// Code + PKCE + DPoP with each step at another instance: the authorization request at A,
/// the login at B, the token request at C, userinfo at A. The same DPoP proof at A, then
/// at B, is refused the second time.
#[tokio::test]
async fn an_oauth_code_flow_with_dpop_crosses_instances() {
    let Some(c) = Cluster::start(3, |_, _| {}).await else { return };
    let mut b = Browser::new(&c.nodes[0]);
    let key = DpopKey::new();
    let url = cli_authorize_url(&c.base(0), "openid%20profile");
    let login = b.get(&url).await;
    assert_eq!(login.status, 200, "{}", login.text);
    b.base = c.base(1);
    let done = b.login(&login, "alice", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let code = code_of(&done.location());
    let token_url = format!("{}/oauth/token", c.public);
    // The DPoP nonce, as a client gets it (use_dpop_nonce), from A; used at C.
    let r = send(
        b.http
            .post(c.on(&token_url, 0))
            .header("DPoP", key.proof("POST", &token_url, None, None))
            .form(&[("grant_type", "authorization_code"), ("client_id", "idca-cli")]),
    )
    .await;
    assert_eq!(r.body["error"], "use_dpop_nonce", "{}", r.body);
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let form = cli_code_form(&code);
    let proof = key.proof("POST", &token_url, Some(&nonce), None);
    let r = send(b.http.post(c.on(&token_url, 2)).header("DPoP", &proof).form(&form)).await;
    assert_eq!((r.status, r.body["token_type"].as_str()), (200, Some("DPoP")), "{}", r.body);
    let at = r.body["access_token"].as_str().unwrap().to_owned();
    let userinfo = format!("{}/oauth/userinfo", c.public);
    let proof = key.proof("GET", &userinfo, Some(&nonce), Some(&at));
    let auth = format!("DPoP {at}");
    let r = send(b.http.get(c.on(&userinfo, 0)).header("Authorization", &auth).header("DPoP", &proof)).await;
    assert_eq!((r.status, r.body["sub"].as_str()), (200, Some("alice")), "{}", r.body);
    let r = send(b.http.get(c.on(&userinfo, 1)).header("Authorization", &auth).header("DPoP", &proof)).await;
    assert_eq!(r.status, 401, "the same proof at B: {}", r.body);
    c.stop().await;
}

/// The same code redeemed at A and at B at once: one token response, and the grant it
/// made is revoked (RFC 6749 §4.1.2).
#[tokio::test]
async fn a_code_redeemed_at_two_instances_at_once_gives_one_token_and_revokes_the_grant() {
    let Some(c) = Cluster::start(2, |_, _| {}).await else { return };
    let mut b = Browser::new(&c.nodes[0]);
    let url = cli_authorize_url(&c.base(0), "openid");
    let login = b.get(&url).await;
    let done = b.login(&login, "alice", PASSWORD).await;
    let code = code_of(&done.location());
    let form = cli_code_form(&code);
    let token_url = format!("{}/oauth/token", c.public);
    let at = |i: usize| send(b.http.post(c.on(&token_url, i)).form(&form));
    let (r0, r1) = tokio::join!(at(0), at(1));
    let ok: Vec<_> = [&r0, &r1].into_iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 1, "{} / {}", r0.body, r1.body);
    let lost = if r0.status == 200 { &r1 } else { &r0 };
    assert_eq!(lost.body["error"], "invalid_grant", "{}", lost.body);
    // The winner's grant is revoked: its refresh token no longer works (at either).
    let refresh = ok[0].body["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", "idca-cli")];
    let r = send(b.http.post(c.on(&token_url, 1)).form(&form)).await;
    assert_eq!(r.body["error"], "invalid_grant", "{}", r.body);
    c.stop().await;
}

/// Failed logins spread over three instances reach one lockout, and parallel new orders
/// spread over them stop at one per-account rate.
#[tokio::test]
async fn lockouts_and_order_rates_count_over_all_instances() {
    let Some(c) = Cluster::start(3, |_, cfg| {
        cfg.oauth.login_max_failures = 3;
        cfg.acme.new_orders_per_minute = 4;
    })
    .await
    else {
        return;
    };
    let mut b = Browser::new(&c.nodes[0]);
    let url = cli_authorize_url(&c.base(0), "openid");
    let login = b.get(&url).await;
    for i in 0..3 {
        b.base = c.base(i);
        let page = b.login(&login, "alice", "wrong password").await;
        assert!(page.text.contains("Wrong user name or password"), "{}", page.text);
    }
    b.base = c.base(0);
    let page = b.login(&login, "alice", PASSWORD).await;
    assert!(
        page.text.contains("Too many failed attempts"),
        "three failures over three instances lock out: {}",
        page.text
    );

    let mut client = RawClient::new(&c.nodes[0], Key::p256()).await;
    assert_eq!(client.register().await.status, 201);
    let new_order = client.url("newOrder");
    let mut statuses = Vec::new();
    for n in 0..6 {
        let nonce = client.nonce().await;
        let payload = json!({"identifiers": [{"type": "dns", "value": format!("r{n}.example.test")}]});
        let r = post_at(&c, &client, n % 3, &new_order, Some(&payload), nonce).await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [201, 201, 201, 201, 429, 429], "one bucket for the account over all instances");
    c.stop().await;
}

/// A challenge accepted by A, which then dies before validating (no draining): B takes
/// the validation over once A's lease runs out and completes it; the client sees the
/// authorization valid.
#[tokio::test]
async fn a_dead_instances_accepted_challenge_is_completed_by_another() {
    let Some(mut c) = Cluster::start(2, |i, cfg| {
        cfg.acme.validation.lease_secs = 2;
        if i == 0 {
            // A accepts, then sits on it until it is killed.
            cfg.acme.testing.validation_delay_ms = 60_000;
        }
    })
    .await
    else {
        return;
    };
    let mut client = RawClient::new(&c.nodes[0], Key::p256()).await;
    assert_eq!(client.register().await.status, 201);
    let order = client.new_order(&["takeover.example.test"]).await;
    assert_eq!(order.status, 201, "{}", order.text);
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = client.post(&authz_url, None).await.json();
    let ch = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap().clone();
    let token = ch["token"].as_str().unwrap();
    c.nodes[0].challenges.set(token, &format!("{token}.{}", client.key.thumbprint()));
    let r = client.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("processing")), "{}", r.text);
    // A dies; its challenge responder stays up (it belongs to the test, not to A).
    let a = c.nodes.remove(0);
    let TestServer { server, dir: _dir, challenges: _challenges, .. } = a;
    server.unwrap().kill().await;
    let mut status = String::new();
    for _ in 0..100 {
        let nonce = {
            let r = client.http.head(c.on(&client.url("newNonce"), 0)).send().await.unwrap();
            r.headers()["replay-nonce"].to_str().unwrap().to_owned()
        };
        let v = post_at(&c, &client, 0, &authz_url, None, nonce).await.json();
        status = v["status"].as_str().unwrap_or_default().to_owned();
        if status != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "valid", "B completed A's validation");
    c.stop().await;
}

/// A key rotation while instances run: an instance started after it signs with the new
/// key, and one that loaded the keys before accepts its tokens at once (an unknown `kid`
/// reloads them) and then publishes the new key too.
#[tokio::test]
async fn a_key_rotated_while_instances_run_is_accepted_by_all() {
    let Some(mut c) = Cluster::start(1, |_, _| {}).await else { return };
    let a = &c.nodes[0];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
        .args(["oauth-rotate-key", "--data"])
        .arg(a.data_dir())
        .envs(crate::harness::store_env(&a.data_dir()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    c.add(|_| {}).await;
    let b = Browser::new(&c.nodes[0]);
    let token_url = format!("{}/oauth/token", c.public);
    let form = [("grant_type", "client_credentials"), ("scope", "acme")];
    let r = send(b.http.post(c.on(&token_url, 1)).basic_auth("backend", Some(crate::oauth::SECRET)).form(&form)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let header = idca::jose::CompactJws::parse(&token, idca::jose::JsonDepth::default()).unwrap().header;
    assert!(kid.contains(header.kid.as_deref().unwrap()), "B signs with the new key {kid}");
    let introspect = format!("{}/oauth/introspect", c.public);
    let r = send(
        b.http
            .post(c.on(&introspect, 0))
            .basic_auth("backend", Some(crate::oauth::SECRET))
            .form(&[("token", token.as_str())]),
    )
    .await;
    assert_eq!(r.body["active"], true, "A accepts a token signed with a key it had not loaded: {}", r.body);
    let jwks: Value =
        b.http.get(c.on(&format!("{}/oauth/jwks", c.public), 0)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "and publishes it: {jwks}");
    c.stop().await;
}

/// With a shared store, a listener on a fixed port of a non-loopback address (where a
/// load balancer would send traffic) needs `server.public_url` (else each instance would
/// give out its own URLs), and the refusal says so.
#[tokio::test]
async fn a_shared_store_needs_the_public_url() {
    let Some(c) = Cluster::start(1, |_, _| {}).await else { return };
    let mut config = c.nodes[0].config.clone();
    let dir = tempfile::tempdir().unwrap();
    config.storage.data_dir = dir.path().join("data");
    config.server.public_url = String::new();
    config.server.listen = format!("0.0.0.0:{}", crate::pebble_compat::free_port("0.0.0.0")).parse().unwrap();
    let Err(e) = idca::app::start(config, idca::app::StartOptions::default()).await else {
        panic!("started without server.public_url on a shared store")
    };
    assert!(e.to_string().contains("server.public_url"), "{e}");
    c.stop().await;
}

/// A root rotation while instances run (`idca rotate-root --apply` on the shared
/// database): an instance restarted after it serves the new chain, one not restarted yet
/// still issues under the old one, and both chains verify to their roots.
#[tokio::test]
async fn a_root_rotated_while_instances_run_takes_over_by_rolling_restart() {
    let Some(mut c) = Cluster::start(1, |_, _| {}).await else { return };
    let old_root = c.nodes[0].root_pem();
    let a = &c.nodes[0];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
        .args(["rotate-root", "--apply", "--data"])
        .arg(a.data_dir())
        .envs(crate::harness::store_env(&a.data_dir()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.add(|_| {}).await;
    let new_root = c.nodes[1].root_pem();
    assert_ne!(new_root, old_root, "the restarted instance serves the new root");
    for (i, root) in [(0, &old_root), (1, &new_root)] {
        let name = format!("rolled{i}.example.test");
        let (chain, _) = issue_through(&c, &[i], &[&old_root, &new_root], &name).await;
        crate::chains::webpki(&chain, root, &name).unwrap();
    }
    c.stop().await;
}

/// Each instance keeps its CRL until a revocation on any instance moves the shared
/// epoch: a revocation at A is listed in the next CRL from B, which had kept one
/// without it.
#[tokio::test]
async fn a_revocation_at_one_instance_is_in_the_next_crl_of_another() {
    let Some(c) = Cluster::start(2, |_, _| {}).await else { return };
    let mut owner = RawClient::new(&c.nodes[0], Key::p256()).await;
    assert_eq!(owner.register().await.status, 201);
    let (der, _) = crate::client::csr(&["crl.example.test"]);
    let (_, _, chain) = owner.issue(&c.nodes[0], &["crl.example.test"], &der).await;
    let leaf = crate::certs::first_cert_der(&chain);
    let serial = {
        use x509_parser::prelude::FromDer;
        x509_parser::certificate::X509Certificate::from_der(&leaf).unwrap().1.raw_serial().to_vec()
    };
    let listed = |i: usize| {
        let (http, url) = (owner.http.clone(), format!("{}/crl", c.base(i)));
        async move {
            use x509_parser::prelude::FromDer;
            let der = http.get(url).send().await.unwrap().bytes().await.unwrap();
            let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
            crl.iter_revoked_certificates().map(|r| r.raw_serial().to_vec()).collect::<Vec<_>>()
        }
    };
    assert!(listed(1).await.is_empty(), "B builds and keeps a CRL without it");
    let payload = json!({"certificate": crate::client::b64(&leaf), "reason": 1});
    let r = owner.post(&owner.url("revokeCert"), Some(&payload)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(listed(1).await, vec![serial.clone()], "B's next CRL lists A's revocation");
    assert_eq!(listed(0).await, vec![serial]);
    c.stop().await;
}
