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
pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub root_path: PathBuf,
    pub challenges: ChallengeResponder,
    pub config: Config,
}

impl TestServer {
    pub fn directory_url(&self) -> String {
        self.server.as_ref().unwrap().directory_url()
    }

    pub fn root_pem(&self) -> String {
        self.server.as_ref().unwrap().root_pem.clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
    }
}

/// Starts a server with defaults fit for tests (validation against our responder),
/// after `tweak` adjusts the config.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    idca::install_crypto_provider();
    let challenges = ChallengeResponder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.workers = 2;
    config.server.shutdown_timeout_secs = 1;
    config.storage.data_dir = dir.path().join("data");
    config.acme.validation.http_port = challenges.port;
    config.acme.validation.connect_to = "127.0.0.1".into();
    config.acme.validation.timeout_ms = 3000;
    tweak(&mut config);
    let server = idca::app::start(config.clone(), StartOptions::default())
        .await
        .unwrap();
    let root_path = dir.path().join("root.pem");
    std::fs::write(&root_path, &server.root_pem).unwrap();
    TestServer {
        server: Some(server),
        dir,
        root_path,
        challenges,
        config,
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// A tiny HTTP server answering `/.well-known/acme-challenge/{token}` with whatever
/// the test registered for that token (404 otherwise).
#[derive(Clone)]
pub struct ChallengeResponder {
    pub port: u16,
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl ChallengeResponder {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let map = tokens.clone();
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
                    let token = path
                        .strip_prefix("/.well-known/acme-challenge/")
                        .unwrap_or("");
                    let body = map.lock().unwrap().get(token).cloned();
                    let resp = match body {
                        Some(b) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}", b.len()),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { port, tokens }
    }

    pub fn set(&self, token: &str, body: &str) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), body.to_owned());
    }
}
