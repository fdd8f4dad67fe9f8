//! Drop-in for Pebble: the real binary started with Pebble's flags, JSON configuration
//! (its own TLS certificate) and environment variables.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::client::{Key, RawClient, b64, csr};

/// Stops the child on drop: SIGTERM (so it can clean up), SIGKILL after 10 s.
pub(crate) struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
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

pub(crate) fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port()
}

/// A minica-style CA and a server certificate for localhost, 127.0.0.1 and ::1: what a
/// Pebble-based suite ships for Pebble's listener (`certificate`, `privateKey`).
pub(crate) fn suite_tls_files(dir: &std::path::Path) -> std::path::PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "suite minica root");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let cert = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    dir.join("ca.pem")
}

fn common_name(der: &[u8], issuer: bool) -> String {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(der).unwrap();
    let name = if issuer { c.issuer() } else { c.subject() };
    name.iter_common_name().next().unwrap().as_str().unwrap().to_owned()
}

/// Runs a client command (certbot, lego) off the async runtime; panics with its output.
pub(crate) async fn run_client(mut cmd: Command) {
    let name = format!("{:?}", cmd.get_program());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{name}: {e} (scripts/test installs certbot and lego with apt-get)"));
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 20 "done when": the real binary started the way instant-acme's Pebble suite
/// starts Pebble (its JSON config on a `[::1]` listen address, `-dnsserver`, `-strict`,
/// `PEBBLE_*` variables, EAB required), then that suite's flows with instant-acme
/// (EAB, blocked identifier, dns-01 with a wildcard, replacement order), and certbot's
/// and lego's `--preferred-chain` against the alternate roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pebble_suite_runs_unchanged() {
    use instant_acme::{
        Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Error, ExternalAccountKey, Identifier,
        NewAccount, NewOrder, OrderStatus, RetryPolicy, RevocationRequest,
    };
    idca::install_crypto_provider();
    let ip = if std::net::TcpListener::bind("[::1]:0").is_ok() { "[::1]" } else { "127.0.0.1" };
    let tmp = tempfile::tempdir().unwrap();
    let suite_ca = suite_tls_files(tmp.path());
    let dns = crate::harness::DnsResponder::start_on(&format!("{ip}:0")).await;
    dns.set_default_a(std::net::Ipv4Addr::LOCALHOST);
    let (port, mgmt_port, http_port) = (free_port(ip), free_port(ip), free_port("127.0.0.1"));
    let (eab_kid, eab_key) = ("test-account", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W");
    let config = json!({"pebble": {
        "listenAddress": format!("{ip}:{port}"),
        "managementListenAddress": format!("{ip}:{mgmt_port}"),
        "certificate": "server.pem",
        "privateKey": "server.key",
        "httpPort": http_port,
        "tlsPort": free_port("127.0.0.1"),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": true,
        "externalAccountMACKeys": {eab_kid: eab_key},
        "domainBlocklist": ["blocked-domain.example"],
        "retryAfter": {"authz": 3, "order": 5},
        "profiles": {
            "default": {"description": "The profile you know and love", "validityPeriod": 7776000},
            "shortlived": {"description": "A short-lived cert profile", "validityPeriod": 518400}
        }
    }});
    std::fs::write(tmp.path().join("pebble-config.json"), config.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idca"))
        .current_dir(tmp.path())
        .args(["-config", "pebble-config.json", "-dnsserver", &dns.addr.to_string(), "-strict"])
        .env("PEBBLE_AUTHZREUSE", "100")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_ALTERNATE_ROOTS", "2")
        .env("PEBBLE_CHAIN_LENGTH", "2")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(tmp.path().join("idca.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let guard = Kill(child);
    let dir_url = format!("https://{ip}:{port}/dir");
    // What idca advertises is what it bound (issue 20 item 1).
    assert!(line.contains(&format!("directory https://{ip}:{port}/")), "{line}");
    assert!(!tmp.path().join("data").exists(), "Pebble mode keeps no state in the working directory");

    // EAB required: refused without, created with (instant-acme's `eab_required`).
    let builder = || Account::builder_with_root(&suite_ca).unwrap();
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let Err(Error::Api(p)) = builder().create(&new, dir_url.clone(), None).await else { panic!("created without EAB") };
    assert_eq!(p.r#type.as_deref(), Some("urn:ietf:params:acme:error:externalAccountRequired"));
    let raw_key = idca::jose::b64_decode(eab_key).unwrap();
    let eab = ExternalAccountKey::new(eab_kid.to_owned(), &raw_key);
    let (account, _) = builder().create(&new, dir_url.clone(), Some(&eab)).await.unwrap();

    // `forbidden_identifier`: one subproblem naming the blocked identifier.
    let ids = [Identifier::Dns("valid.example.com".into()), Identifier::Dns("blocked-domain.example".into())];
    let Err(Error::Api(p)) = account.new_order(&NewOrder::new(&ids)).await else { panic!("blocked name ordered") };
    assert_eq!(p.r#type.as_deref(), Some("urn:ietf:params:acme:error:rejectedIdentifier"));
    assert_eq!(p.subproblems.len(), 1, "{p:?}");
    assert_eq!(p.subproblems[0].identifier, Some(Identifier::Dns("blocked-domain.example".into())));

    // `dns_01` with a wildcard, through the -dnsserver.
    let retry = RetryPolicy::default().initial_delay(std::time::Duration::from_millis(50));
    let issue = |order: NewOrder<'static>| {
        let (account, dns) = (&account, &dns);
        async move {
            let mut order = account.new_order(&order).await.unwrap();
            let mut txt: std::collections::HashMap<String, Vec<String>> = Default::default();
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.unwrap();
                if a.status == AuthorizationStatus::Valid {
                    continue;
                }
                let name = match &a.identifier().identifier {
                    Identifier::Dns(d) => d.clone(),
                    other => panic!("{other:?}"),
                };
                let ch = a.challenge(ChallengeType::Dns01).unwrap();
                txt.entry(format!("_acme-challenge.{name}")).or_default().push(ch.key_authorization().dns_value());
            }
            for (name, values) in &txt {
                dns.set_txt(name, &values.iter().map(String::as_str).collect::<Vec<_>>());
            }
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.unwrap();
                if a.status != AuthorizationStatus::Valid {
                    a.challenge(ChallengeType::Dns01).unwrap().set_ready().await.unwrap();
                }
            }
            assert_eq!(order.poll_ready(&retry).await.unwrap(), OrderStatus::Ready);
            order.finalize().await.unwrap();
            let chain = order.poll_certificate(&retry).await.unwrap();
            (order.state().replaces.clone(), chain)
        }
    };
    let names = vec![Identifier::Dns("example.com".into()), Identifier::Dns("*.example.com".into())];
    let names: &'static [Identifier] = Box::leak(names.into_boxed_slice());
    let (_, chain) = issue(NewOrder::new(names)).await;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&suite_ca).unwrap()).unwrap()])
        .build()
        .unwrap();
    let root = |n: usize| {
        let http = http.clone();
        let url = format!("https://{ip}:{mgmt_port}/roots/{n}");
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let root0 = root(0).await;
    crate::chains::webpki(&chain, &root0, "www.example.com").unwrap();

    // `replacement_order`: revoke, the renewal window opens in the past, replace.
    let leaf = crate::certs::first_cert_der(&chain);
    let leaf_der = rustls::pki_types::CertificateDer::from(leaf.clone());
    account.revoke(&RevocationRequest { certificate: &leaf_der, reason: None }).await.unwrap();
    let (aki, serial) = crate::certs::aki_and_serial(&chain);
    let id = CertificateIdentifier::new(aki.as_slice().into(), serial.as_slice().into()).into_owned();
    let (info, _) = account.renewal_info(&id).await.unwrap();
    assert!(info.suggested_window.start < time::OffsetDateTime::now_utc());
    let (replaces, _) = issue(NewOrder::new(names).replaces(id.clone())).await;
    assert_eq!(replaces, Some(id), "the order shows what it replaces");

    // Preferred chains: certbot picks alternate root 2, lego alternate root 1.
    let (root1, root2) = (root(1).await, root(2).await);
    let cn = |pem: &str| common_name(&crate::certs::first_cert_der(pem), false);
    let le = tmp.path().join("certbot");
    let mut certbot = Command::new("certbot");
    certbot
        .args(["certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email"])
        .args(["--server", &dir_url, "--standalone", "--http-01-port", &http_port.to_string()])
        .args(["--eab-kid", eab_kid, "--eab-hmac-key", eab_key, "-d", "certbot.example.test"])
        .args(["--preferred-chain", &cn(&root2)])
        .arg("--config-dir")
        .arg(le.join("config"))
        .arg("--work-dir")
        .arg(le.join("work"))
        .arg("--logs-dir")
        .arg(le.join("logs"))
        .env("REQUESTS_CA_BUNDLE", &suite_ca);
    run_client(certbot).await;
    let live = le.join("config/live/certbot.example.test");
    let chain = std::fs::read_to_string(live.join("fullchain.pem")).unwrap();
    let top = crate::certs::pem_blocks(&chain).pop().unwrap();
    assert_eq!(common_name(&top, true), cn(&root2));
    crate::chains::webpki(&chain, &root2, "certbot.example.test").unwrap();

    let lego_dir = tmp.path().join("lego");
    let mut lego = Command::new("lego");
    lego.args(["--server", &dir_url, "--accept-tos", "--email", "ops@example.test"])
        .args(["--eab", "--kid", eab_kid, "--hmac", eab_key, "--domains", "lego.example.test"])
        .args(["--http", "--http.port", &format!(":{http_port}")])
        .arg("--path")
        .arg(&lego_dir)
        .args(["run", "--preferred-chain", &cn(&root1)])
        .env("LEGO_CA_CERTIFICATES", &suite_ca);
    run_client(lego).await;
    let chain = std::fs::read_to_string(lego_dir.join("certificates/lego.example.test.crt")).unwrap();
    let top = crate::certs::pem_blocks(&chain).pop().unwrap();
    assert_eq!(common_name(&top, true), cn(&root1));
    crate::chains::webpki(&chain, &root1, "lego.example.test").unwrap();
    assert_ne!(cn(&root1), cn(&root0));

    // SIGTERM: the Pebble-mode data directory (under the temporary directory) goes
    // with the process (the clients' keep-alive connections closed first).
    drop((account, http));
    drop(guard);
    let log = std::fs::read_to_string(tmp.path().join("idca.log")).unwrap();
    let root_pem = log.lines().find_map(|l| l.strip_prefix("idca: root certificate at ")).unwrap();
    let data_dir = std::path::Path::new(root_pem).parent().unwrap();
    assert!(data_dir.starts_with(std::env::temp_dir()), "{}", data_dir.display());
    assert!(!data_dir.exists(), "{} was left behind", data_dir.display());
}
