//! A real load balancer in front of several instances (issue 16): Debian's HAProxy
//! (`mode http`, round robin, health checks on `/healthz`, TLS ended at the balancer) and
//! three `idca serve` processes on loopback sharing one PostgreSQL database. certbot and
//! lego get certificates through it, and every instance served requests (each one's
//! `/metrics`). Runs on the PostgreSQL pass (`scripts/test` installs haproxy).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::pebble_compat::{Kill, free_port, run_client, suite_tls_files};

/// One `idca serve` behind the balancer: plain HTTP on `port`, the balancer's public URL.
fn instance(dir: &Path, i: usize, port: u16, public_url: &str, database: &str, http01: u16) -> Kill {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{public_url}\"\ntls = false\n\
         trusted_proxies = [\"127.0.0.1/32\"]\n\n[storage]\ndata_dir = \"{data}\"\n\n\
         [management]\nlisten = \"\"\n\n[oauth]\ndemo_user = false\n\n\
         [acme.validation]\nhttp_port = {http01}\nconnect_to = \"127.0.0.1\"\n",
        data = dir.join(format!("data{i}")).display()
    );
    let path = dir.join(format!("idca{i}.toml"));
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idca"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .env("IDCA_STORAGE_URL", database)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("idca{i}.log"))).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "instance {i}: {line} {}", log(dir, i));
    Kill(child)
}

fn log(dir: &Path, i: usize) -> String {
    std::fs::read_to_string(dir.join(format!("idca{i}.log"))).unwrap_or_default()
}

/// HAProxy's configuration: TLS at the front, HTTP round robin to the instances, which
/// are checked on /healthz; a request is re-sent to another instance only when the
/// connection could not be made (`retry-on conn-failure`, the default), never once a
/// POST was sent (it would hit badNonce or duplicate an order).
pub(crate) fn haproxy_config(lb_port: u16, pem: &Path, ports: &[u16]) -> String {
    let mut cfg = format!(
        "global\n  maxconn 2000\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  \
         timeout server 60s\n  option forwardfor\n  retries 2\n  option redispatch\n\n\
         frontend acme\n  bind 127.0.0.1:{lb_port} ssl crt {pem}\n  default_backend idca\n\n\
         backend idca\n  balance roundrobin\n  option httpchk GET /healthz\n  \
         default-server inter 500ms fall 2 rise 1\n",
        pem = pem.display()
    );
    for (i, p) in ports.iter().enumerate() {
        cfg.push_str(&format!("  server idca{i} 127.0.0.1:{p} check\n"));
    }
    cfg
}

/// Requests an instance served, from its `/metrics`.
async fn requests_served(port: u16) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("idca_http_requests_total{") && !l.contains("/metrics"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn certbot_and_lego_get_certificates_through_haproxy_and_three_instances() {
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    idca::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let suite_ca = suite_tls_files(dir);
    let pem = dir.join("haproxy.pem");
    let (cert, key) = (
        std::fs::read_to_string(dir.join("server.pem")).unwrap(),
        std::fs::read_to_string(dir.join("server.key")).unwrap(),
    );
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    let database = crate::harness::test_database(&dir.join("shared")).unwrap();
    let lb_port = free_port("127.0.0.1");
    let public_url = format!("https://localhost:{lb_port}");
    let http01 = free_port("127.0.0.1");
    let ports: Vec<u16> = (0..3).map(|_| free_port("127.0.0.1")).collect();
    let _instances: Vec<Kill> =
        ports.iter().enumerate().map(|(i, p)| instance(dir, i, *p, &public_url, &database, http01)).collect();
    std::fs::write(dir.join("haproxy.cfg"), haproxy_config(lb_port, &pem, &ports)).unwrap();
    let bin = if Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
    let haproxy = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("haproxy: {e} (scripts/test installs haproxy with apt-get)"));
    let _haproxy = Kill(haproxy);
    let ca = reqwest::Certificate::from_pem(std::fs::read(&suite_ca).unwrap().as_slice()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let dir_url = format!("{public_url}/directory");
    let mut up = false;
    for _ in 0..100 {
        if http.get(&dir_url).send().await.is_ok_and(|r| r.status() == 200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "haproxy: {}", std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default());
    let before: Vec<u64> = futures_all(&ports).await;

    let le = dir.join("certbot");
    let mut certbot = Command::new("certbot");
    certbot
        .args(["certonly", "--non-interactive", "--agree-tos", "--register-unsafely-without-email"])
        .args(["--server", &dir_url, "--standalone", "--http-01-port", &http01.to_string()])
        .args(["-d", "certbot.lb.example.test", "-d", "www.certbot.lb.example.test"])
        .arg("--config-dir")
        .arg(le.join("config"))
        .arg("--work-dir")
        .arg(le.join("work"))
        .arg("--logs-dir")
        .arg(le.join("logs"))
        .env("REQUESTS_CA_BUNDLE", &suite_ca);
    run_client(certbot).await;
    let out = Command::new(env!("CARGO_BIN_EXE_idca"))
        .arg("root")
        .arg("--data")
        .arg(dir.join("data0"))
        .env("IDCA_STORAGE_URL", &database)
        .output()
        .unwrap();
    let root = String::from_utf8(out.stdout).unwrap();
    let chain = std::fs::read_to_string(le.join("config/live/certbot.lb.example.test/fullchain.pem")).unwrap();
    crate::chains::webpki(&chain, &root, "www.certbot.lb.example.test").unwrap();

    let lego_dir = dir.join("lego");
    let mut lego = Command::new("lego");
    lego.args(["--server", &dir_url, "--accept-tos", "--email", "ops@example.test"])
        .args(["--domains", "lego.lb.example.test", "--http", "--http.port", &format!(":{http01}")])
        .arg("--path")
        .arg(&lego_dir)
        .arg("run")
        .env("LEGO_CA_CERTIFICATES", &suite_ca);
    run_client(lego).await;
    let chain = std::fs::read_to_string(lego_dir.join("certificates/lego.lb.example.test.crt")).unwrap();
    crate::chains::webpki(&chain, &root, "lego.lb.example.test").unwrap();

    let after = futures_all(&ports).await;
    let served: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!("requests served per instance behind haproxy: {served:?}");
    assert!(served.iter().all(|n| *n >= 5), "every instance served the clients' requests: {served:?}");
}

async fn futures_all(ports: &[u16]) -> Vec<u64> {
    let mut out = Vec::new();
    for p in ports {
        out.push(requests_served(*p).await);
    }
    out
}
