//! Starts idca in-process on 127.0.0.1:0 with a temporary data directory, plus an
//! http-01 responder the tests control.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use idca::app::{Server, StartOptions};
use idca::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A running idca and what a client needs to talk to it.
pub(crate) struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub root_path: PathBuf,
    pub challenges: ChallengeResponder,
    pub dns: DnsResponder,
    pub tls_alpn: TlsAlpnResponder,
    pub config: Config,
}

impl TestServer {
    pub(crate) fn directory_url(&self) -> String {
        self.server.as_ref().unwrap().directory_url()
    }

    pub(crate) fn root_pem(&self) -> String {
        self.server.as_ref().unwrap().root_pem.clone()
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// Starts a server with defaults fit for tests (validation against our responder),
/// after `tweak` adjusts the config.
pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    idca::install_crypto_provider();
    let challenges = ChallengeResponder::start().await;
    let dns = DnsResponder::start().await;
    let tls_alpn = TlsAlpnResponder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.workers = 2;
    config.server.shutdown_timeout_secs = 1;
    config.storage.data_dir = dir.path().join("data");
    config.oauth.demo_user = false;
    config.management.listen = "127.0.0.1:0".into();
    config.acme.validation.http_port = challenges.port;
    config.acme.validation.connect_to = "127.0.0.1".into();
    config.acme.validation.timeout_ms = 3000;
    config.acme.validation.dns_resolver = dns.addr.to_string();
    config.acme.validation.tls_port = tls_alpn.port;
    tweak(&mut config);
    if config.storage.url.is_empty()
        && let Some(url) = test_database(&config.storage.data_dir)
    {
        config.storage.url = url;
        config.storage.pool_size = 4;
    }
    let server = idca::app::start(config.clone(), StartOptions::default()).await.unwrap();
    let root_path = dir.path().join("root.pem");
    std::fs::write(&root_path, &server.root_pem).unwrap();
    TestServer { server: Some(server), dir, root_path, challenges, dns, tls_alpn, config }
}

/// With `IDCA_TEST_STORE=postgres`, the database of the data directory `data` on the
/// server `IDCA_TEST_PG` names (libpq words, as `scripts/pg start` prints them): made on
/// first use as a copy of a template migrated once per test run, so each test starts
/// empty and fast, and a server restarted on the same data directory finds its state.
/// `None` on sled.
pub(crate) fn test_database(data: &std::path::Path) -> Option<String> {
    static TEMPLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static DATABASES: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return None;
    }
    let admin = std::env::var("IDCA_TEST_PG").expect("IDCA_TEST_STORE=postgres needs IDCA_TEST_PG");
    let mut databases = DATABASES.lock().unwrap();
    if let Some(url) = databases.get_or_insert_with(HashMap::new).get(data) {
        return Some(url.clone());
    }
    // On a thread of its own with its own runtime: callers may be sync or async.
    let created = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                let template = match TEMPLATE.get() {
                    Some(t) => t.clone(),
                    None => {
                        let name = format!("idca_template_{}", std::process::id());
                        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
                        drop(idca::store::PgStore::open(&format!("{admin} dbname={name}"), 1, 0).await.unwrap());
                        TEMPLATE.get_or_init(|| name).clone()
                    }
                };
                let name = format!("t_{}", idca::model::random_token().to_lowercase().replace(['-', '_'], ""));
                // The template's last connection may still be closing: PostgreSQL waits for it.
                client.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await.unwrap();
                format!("{admin} dbname={name}")
            })
        })
        .join()
        .unwrap()
    });
    databases.get_or_insert_with(HashMap::new).insert(data.to_owned(), created.clone());
    Some(created)
}

/// The environment a CLI subprocess on the data directory `data` needs to use the same
/// store as the test's servers.
pub(crate) fn store_env(data: &std::path::Path) -> Vec<(&'static str, String)> {
    test_database(data).map(|url| vec![("IDCA_STORAGE_URL", url)]).unwrap_or_default()
}

pub(crate) async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// Answers every authorization of `order` with http-01 through `server`'s responder,
/// finalizes it (instant-acme makes the key and CSR) and returns the chain.
pub(crate) async fn finish_with_http01(server: &TestServer, order: &mut instant_acme::Order) -> String {
    use instant_acme::{ChallengeType, OrderStatus, RetryPolicy};
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a.unwrap();
        let mut ch = a.challenge(ChallengeType::Http01).unwrap();
        server.challenges.set(&ch.token, ch.key_authorization().as_str());
        ch.set_ready().await.unwrap();
    }
    let retry = RetryPolicy::default().initial_delay(std::time::Duration::from_millis(20));
    assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
    order.finalize().await.unwrap();
    order.poll_certificate(&retry).await.unwrap()
}

/// A tiny HTTP server answering `/.well-known/acme-challenge/{token}` with whatever
/// the test registered for that token (404 otherwise).
#[derive(Clone)]
pub(crate) struct ChallengeResponder {
    pub port: u16,
    /// Whether it also listens on [::1] (the machine may have no IPv6 loopback).
    pub ipv6: bool,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl ChallengeResponder {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let v6 = TcpListener::bind(("::1", port)).await.ok();
        let ipv6 = v6.is_some();
        for listener in std::iter::once(listener).chain(v6) {
            Self::serve(listener, tokens.clone());
        }
        Self { port, ipv6, tokens }
    }

    fn serve(listener: TcpListener, map: Arc<Mutex<HashMap<String, String>>>) {
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let map = map.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut n = 0;
                    while n < buf.len() {
                        match sock.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let req = String::from_utf8_lossy(&buf[..n]);
                    let path = req.split_whitespace().nth(1).unwrap_or("");
                    let token = path.strip_prefix("/.well-known/acme-challenge/").unwrap_or("");
                    let body = map.lock().unwrap().get(token).cloned();
                    let resp = match body {
                        // "REDIRECT <url>" answers with a redirect to that URL instead.
                        Some(b) if b.starts_with("REDIRECT ") => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            &b[9..]
                        ),
                        Some(b) => {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len())
                        }
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
    }

    pub(crate) fn set(&self, token: &str, body: &str) {
        self.tokens.lock().unwrap().insert(token.to_owned(), body.to_owned());
    }
}

/// A DNS server on loopback (UDP) answering TXT queries from a map the test fills; every
/// other query gets an empty NOERROR answer.
#[derive(Clone)]
pub(crate) struct DnsResponder {
    pub addr: std::net::SocketAddr,
    txt: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// The A record of every name, once set (pebble-challtestsrv's `-defaultIPv4`).
    default_a: Arc<Mutex<Option<std::net::Ipv4Addr>>>,
}

impl DnsResponder {
    pub(crate) async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub(crate) async fn start_on(bind: &str) -> Self {
        use hickory_resolver::proto::op::{Message, MessageType};
        use hickory_resolver::proto::rr::rdata::{A, TXT};
        use hickory_resolver::proto::rr::{RData, Record, RecordType};
        let socket = tokio::net::UdpSocket::bind(bind).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let txt: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let default_a: Arc<Mutex<Option<std::net::Ipv4Addr>>> = Arc::default();
        let (map, a_record) = (txt.clone(), default_a.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let mut reply = Message::new(query.metadata.id, MessageType::Response, query.metadata.op_code);
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                for q in &query.queries {
                    reply.queries.push(q.clone());
                    let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
                    let a = *a_record.lock().unwrap();
                    if let (RecordType::A, Some(ip)) = (q.query_type(), a) {
                        reply.answers.push(Record::from_rdata(q.name().clone(), 0, RData::A(A(ip))));
                    }
                    if q.query_type() == RecordType::TXT {
                        for value in map.lock().unwrap().get(&name).cloned().unwrap_or_default() {
                            reply.answers.push(Record::from_rdata(
                                q.name().clone(),
                                0,
                                RData::TXT(TXT::new(vec![value])),
                            ));
                        }
                    }
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self { addr, txt, default_a }
    }

    /// Answers every A query with `ip`.
    pub(crate) fn set_default_a(&self, ip: std::net::Ipv4Addr) {
        *self.default_a.lock().unwrap() = Some(ip);
    }

    /// Sets the TXT records at `name` (no trailing dot).
    pub(crate) fn set_txt(&self, name: &str, values: &[&str]) {
        self.txt.lock().unwrap().insert(name.to_ascii_lowercase(), values.iter().map(|v| v.to_string()).collect());
    }
}

/// A TLS server offering ALPN `acme-tls/1` and, per SNI, a challenge certificate the
/// test registers (RFC 8737 §3).
#[derive(Clone)]
pub(crate) struct TlsAlpnResponder {
    pub port: u16,
    certs: Arc<Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>>,
}

#[derive(Debug)]
struct BySni(Arc<Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>>);

impl std::fmt::Debug for TlsAlpnResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsAlpnResponder({})", self.port)
    }
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let sni = hello.server_name()?.to_owned();
        self.0.lock().unwrap().get(&sni).cloned()
    }
}

impl TlsAlpnResponder {
    pub(crate) async fn start() -> Self {
        Self::start_with_alpn(vec![idca::validate::ACME_TLS_ALPN.to_vec()]).await
    }

    /// A responder that negotiates only `alpn` (empty: no ALPN at all).
    pub(crate) async fn start_with_alpn(alpn: Vec<Vec<u8>>) -> Self {
        let certs: Arc<Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>> = Arc::default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni(certs.clone())));
        config.alpn_protocols = alpn;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(sock).await {
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self { port, certs }
    }

    /// Serves, for `sni`, a certificate naming `san` with the acmeIdentifier extension
    /// for `key_authorization`; `critical` false breaks RFC 8737 on purpose.
    pub(crate) fn set(&self, sni: &str, san: &str, key_authorization: &str, critical: bool) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![san.to_owned()]).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
        let mut ext = rcgen::CustomExtension::new_acme_identifier(digest.as_ref());
        ext.set_criticality(critical);
        p.custom_extensions = vec![ext];
        let cert = p.self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        let ck = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing);
        self.certs.lock().unwrap().insert(sni.to_owned(), Arc::new(ck));
    }
}
