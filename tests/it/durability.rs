//! Durable before acknowledged: create an account, an order and a certificate against
//! the real binary, kill it with SIGKILL, restart it on the same data: all are there,
//! byte for byte, and the CA is unchanged.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::client::{Key, RawClient, b64, csr};

struct Proc {
    child: Child,
    directory: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idca"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let directory = line.split_whitespace().last().unwrap_or_default().to_owned();
    assert!(directory.ends_with("/directory"), "unexpected first line: {line:?}");
    Proc { child, directory }
}

impl Proc {
    /// SIGKILL: no chance to flush anything that was not already durable.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Writes `dir/config.toml` for a spawned server with its data in `dir/data` (returned),
/// on a port fixed for both runs (account and order URLs name it).
fn write_config(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndata_dir = {:?}\n[acme.testing]\nalways_valid = true\n[management]\nlisten = \"\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    data
}

/// A client that trusts the server's root; one per run, as a pooled connection to a
/// killed process would fail.
fn https_client(root_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// A `TestServer`-like view of a spawned binary for the raw client.
async fn client_for(p: &Proc, root_pem: &str, key: Key) -> RawClient {
    let http = https_client(root_pem);
    let dir = http.get(&p.directory).send().await.unwrap().json().await.unwrap();
    RawClient { http, dir, key, kid: None, bearer: None }
}

#[tokio::test]
async fn acknowledged_state_survives_sigkill() {
    idca::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_config(tmp.path());
    let first = spawn(tmp.path());
    let root_before = std::fs::read_to_string(data.join("root.pem")).unwrap();
    let key = Key::p256();
    let pkcs8_jwk = key.jwk();
    let mut c = client_for(&first, &root_before, key).await;
    let account_url = c.register().await.location();
    let order = c.new_order(&["durable.example.test"]).await;
    let order_url = order.location();
    let authz_url = order.json()["authorizations"][0].as_str().unwrap().to_owned();
    let authz = c.post(&authz_url, None).await.json();
    c.post(authz["challenges"][0]["url"].as_str().unwrap(), Some(&json!({}))).await;
    assert_eq!(c.poll(&order_url).await["status"], "ready");
    let (der, _) = csr(&["durable.example.test"]);
    let fin = c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await.json();
    let cert_url = fin["certificate"].as_str().unwrap().to_owned();
    let cert_before = c.post(&cert_url, None).await.text;
    // A second order, left pending: it must survive too.
    let pending_url = c.new_order(&["pending.example.test"]).await.location();

    first.kill9();

    let second = spawn(tmp.path());
    let root_after = std::fs::read_to_string(data.join("root.pem")).unwrap();
    assert_eq!(root_after, root_before, "the CA changed across a restart");
    let mut c2 = client_for(&second, &root_before, c.key).await;
    c2.kid = Some(account_url.clone());
    assert_eq!(c2.post(&account_url, None).await.json()["key"], pkcs8_jwk);
    let o = c2.post(&order_url, None).await.json();
    assert_eq!(o["status"], "valid");
    assert_eq!(o["certificate"], cert_url);
    assert_eq!(c2.post(&cert_url, None).await.text, cert_before, "certificate bytes changed");
    assert_eq!(c2.post(&pending_url, None).await.json()["status"], "pending");
    let list = c2.post(&format!("{account_url}/orders"), None).await.json();
    assert_eq!(list["orders"].as_array().unwrap().len(), 2);
    // The CA still signs with the same intermediate: a new order chains to the same root.
    let out = Command::new(env!("CARGO_BIN_EXE_idca")).arg("root").arg("--data").arg(&data).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), root_before);
}

/// The same for OAuth state, whose writes wait for one flush at the end of each request
/// (`store::one_flush`): a client registered and then updated (two acknowledged writes,
/// two requests) is there after a SIGKILL, as last written, and its registration access
/// token still works.
#[tokio::test]
async fn acknowledged_oauth_state_survives_sigkill() {
    idca::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let data = write_config(tmp.path());
    let first = spawn(tmp.path());
    let root = std::fs::read_to_string(data.join("root.pem")).unwrap();
    let http = https_client(&root);
    let base = first.directory.trim_end_matches("/directory").to_owned();
    let r = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"client_name": "Durable", "redirect_uris": ["https://durable.example.test/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reg: serde_json::Value = r.json().await.unwrap();
    let (client_id, uri, token) = (
        reg["client_id"].as_str().unwrap().to_owned(),
        reg["registration_client_uri"].as_str().unwrap().to_owned(),
        reg["registration_access_token"].as_str().unwrap().to_owned(),
    );
    let update = json!({"client_id": client_id, "client_name": "Durable 2", "redirect_uris": ["https://durable.example.test/cb"]});
    let r = http.put(&uri).bearer_auth(&token).json(&update).send().await.unwrap();
    assert_eq!(r.status(), 200);

    first.kill9();

    let _second = spawn(tmp.path());
    let r = https_client(&root).get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "the registration did not survive");
    let read: serde_json::Value = r.json().await.unwrap();
    assert_eq!(read["client_id"], client_id.as_str());
    assert_eq!(read["client_name"], "Durable 2", "the acknowledged update was lost");
}

/// Runs `idca-crash` on the debug `idca` for `cycles` cycles; returns its exit code, its
/// output, and the cells of its summary row.
pub(crate) fn idca_crash(cycles: u32, args: &[&str]) -> (Option<i32>, String, Vec<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idca-crash"))
        .args(["--idca", env!("CARGO_BIN_EXE_idca"), "--cycles", &cycles.to_string(), "--port", &port.to_string()])
        .args(args)
        .arg("--data")
        .arg(tmp.path())
        .output()
        .unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let row =
        text.lines().find(|l| l.starts_with(&format!("| {cycles} |"))).unwrap_or_else(|| panic!("no table: {text}"));
    let cells = row.split('|').map(|c| c.trim().to_owned()).collect();
    (out.status.code(), text, cells)
}

/// The short form of the crash-safety program: `idca-crash` kills the real binary with
/// SIGKILL under load three times and finds nothing acknowledged lost.
#[test]
fn idca_crash_short_run_loses_nothing() {
    let (code, text, cells) = idca_crash(3, &["-c", "4", "--min-ms", "150", "--max-ms", "600"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(cells[4].parse::<u32>().unwrap() > 0, "some certificates were acknowledged: {text}");
    assert_eq!((cells[5].as_str(), cells[6].as_str()), ("0", "unchanged"), "{text}");
}

/// The checker can fail: with the second cycle's writes rolled back behind idca's back,
/// `idca-crash` reports them lost and exits 1.
#[test]
fn idca_crash_reports_rolled_back_writes_as_lost() {
    let (code, text, cells) = idca_crash(2, &["-c", "2", "--min-ms", "400", "--max-ms", "600", "--self-check"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(cells[5].parse::<u32>().unwrap() > 0, "{text}");
    assert!(text.contains("LOST certificate"), "{text}");
}

fn idca_cli(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_idca"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Every file under `dir` (but the lock file) with its bytes.
fn contents(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.ends_with("db.lock") {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A damaged data directory (log truncated or emptied, store rolled back behind idca's
/// back, store removed) is refused with a message naming the problem and the path, and
/// not a byte of it changes; an intact copy opens.
#[test]
fn damaged_data_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    assert!(idca_cli(&pristine, &["init", "--local-pki"]).status.success());
    let cert = |n: &str| tmp.path().join(n).to_str().unwrap().to_owned();
    let issue = |data: &Path, name: &str| {
        let out = idca_cli(
            data,
            &["issue", name, "--cert-file", &cert(&format!("{name}.pem")), "--key-file", &cert(&format!("{name}.key"))],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    issue(&pristine, "one.test");
    let older_store = tmp.path().join("older-db");
    idca::store::copy_dir(&pristine.join("db"), &older_store).unwrap();
    issue(&pristine, "two.test");

    type Damage<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);
    let damages: [Damage; 5] = [
        (
            "log truncated",
            &|d| std::fs::File::options().write(true).open(d.join("db/db")).unwrap().set_len(4000).unwrap(),
            "truncated or overwritten",
        ),
        (
            "log emptied",
            &|d| std::fs::File::options().write(true).open(d.join("db/db")).unwrap().set_len(0).unwrap(),
            "is missing or empty",
        ),
        ("store removed", &|d| std::fs::remove_dir_all(d.join("db")).unwrap(), "is missing or empty"),
        (
            "store rolled back",
            &|d| {
                std::fs::remove_dir_all(d.join("db")).unwrap();
                idca::store::copy_dir(&older_store, &d.join("db")).unwrap();
            },
            "lost writes",
        ),
        (
            "store and its records removed",
            &|d| {
                std::fs::remove_dir_all(d.join("db")).unwrap();
                for f in ["db.generation", "db.clean"] {
                    std::fs::remove_file(d.join(f)).unwrap();
                }
            },
            "holds no CA",
        ),
    ];
    for (i, (what, damage, expected)) in damages.iter().enumerate() {
        let data = tmp.path().join(format!("damaged-{i}"));
        idca::store::copy_dir(&pristine, &data).unwrap();
        damage(&data);
        let before = contents(&data);
        let out = idca_cli(
            &data,
            &["issue", "three.test", "--cert-file", &cert("three.pem"), "--key-file", &cert("three.key")],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: opened anyway");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(stderr.contains(data.to_str().unwrap()), "{what}: the message names the path: {stderr}");
        assert!(stderr.contains("Nothing was changed"), "{what}: {stderr}");
        if *what != "store and its records removed" {
            assert_eq!(contents(&data), before, "{what}: files changed");
        }
    }
    // The control: the undamaged directory opens and lists both certificates.
    let out = idca_cli(&pristine, &["certs"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains("one.test") && listed.contains("two.test"), "{listed}");
}

/// A second process on a data directory in use is refused at once, naming it.
#[test]
fn a_second_instance_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        tmp.path().join("config.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[management]\nlisten = \"\"\n[storage]\ndata_dir = \"{}\"\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let _running = spawn(tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_idca"))
        .arg("serve")
        .arg("--config")
        .arg(tmp.path().join("config.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("in use by another idca process") && stderr.contains(tmp.path().join("data").to_str().unwrap()),
        "{stderr}"
    );
}
