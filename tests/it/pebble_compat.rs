//! Drop-in for Pebble: the real binary started with Pebble's flags, JSON configuration
//! (its own TLS certificate) and environment variables.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::client::{Key, RawClient, b64, csr};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn runs_with_pebbles_flags_config_and_env() {
    idca::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    // The TLS certificate a Pebble setup ships (here: a fresh self-signed one).
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(tmp.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(tmp.path().join("key.pem"), key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": "",
        "certificate": tmp.path().join("cert.pem"),
        "privateKey": tmp.path().join("key.pem"),
        "httpPort": 5002,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
        "domainBlocklist": ["blocked-domain.example"],
        "retryAfter": {"authz": 3, "order": 5},
        "profiles": {"default": {"description": "d", "validityPeriod": 7776000}}
    }});
    std::fs::write(tmp.path().join("pebble-config.json"), config.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idca"))
        .current_dir(tmp.path())
        .args(["-config", "pebble-config.json", "-dnsserver", "127.0.0.1:8053", "-strict"])
        .env("PEBBLE_VA_ALWAYS_VALID", "1")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _guard = Kill(child);
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");

    // A client that trusts only Pebble's TLS certificate reaches /dir.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let dir = http.get(format!("https://localhost:{port}/dir")).send().await.unwrap().json().await.unwrap();
    let mut c = RawClient { http, dir, key: Key::p256(), kid: None, bearer: None };
    assert_eq!(c.register().await.status, 201);
    c.new_order(&["www.blocked-domain.example"]).await.assert_problem(400, "rejectedIdentifier");
    let order = c.new_order(&["ok.example.test"]).await;
    let authz = c.post(order.json()["authorizations"][0].as_str().unwrap(), None).await.json();
    let ch = authz["challenges"][0]["url"].as_str().unwrap().to_owned();
    // -strict: only {} answers a challenge.
    c.post(&ch, Some(&json!({"keyAuthorization": "x"}))).await.assert_problem(400, "malformed");
    c.post(&ch, Some(&json!({"extra": 1}))).await.assert_problem(400, "malformed");
    assert_eq!(c.post(&ch, Some(&json!({}))).await.status, 200);
    // PEBBLE_VA_ALWAYS_VALID: ready without any responder.
    assert_eq!(c.poll(&order.location()).await["status"], "ready");
    let (der, _) = csr(&["ok.example.test"]);
    let fin = c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(der)}))).await;
    assert_eq!(fin.json()["status"], "valid", "{}", fin.text);
}
