//! Durable means on stable storage (issue 22): the real binary under `strace` while it
//! serves a whole issuance and while `idca issue` writes files. Every flush is an
//! `fdatasync`/`fsync` (never `sync_file_range`, which flushes no disk cache), each
//! acknowledged write has its own, and every rename is followed by an fsync of the
//! directory it renamed into.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::client::{Key, RawClient, b64, csr};

const CALLS: &str = "trace=fdatasync,fsync,sync_file_range,rename,renameat,renameat2";

/// Runs `args` of idca under strace, writing the trace to `out`.
fn traced(out: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-y", "-qq", "-s", "512", "-e", CALLS, "-o"]).arg(out).arg(env!("CARGO_BIN_EXE_idca")).args(args);
    cmd
}

/// (destination, index) of every rename, and (path, index) of every fsync/fdatasync.
struct Trace {
    lines: Vec<String>,
}

impl Trace {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap();
        Self {
            lines: text
                .lines()
                .filter(|l| l.contains("= 0") || l.contains("sync_file_range"))
                .map(str::to_owned)
                .collect(),
        }
    }

    fn count(&self, call: &str) -> usize {
        self.lines
            .iter()
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|c| c.starts_with(&format!("{call}("))))
            .count()
    }

    /// The paths (strace -y) synced by `call`, in order, with their line index.
    fn synced(&self, call: &str) -> Vec<(usize, PathBuf)> {
        let prefix = format!("{call}(");
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let rest = l.split_whitespace().nth(1)?.strip_prefix(&prefix)?;
                let path = rest.split_once('<')?.1.split_once('>')?.0;
                Some((i, PathBuf::from(path)))
            })
            .collect()
    }

    /// Destinations of the successful renames, with their line index.
    fn renames(&self) -> Vec<(usize, PathBuf)> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.split_whitespace().nth(1).is_some_and(|c| c.starts_with("rename")))
            .map(|(i, l)| {
                let quoted: Vec<&str> = l.split('"').collect();
                (i, PathBuf::from(quoted.get(3).copied().unwrap_or_default()))
            })
            .collect()
    }

    /// Panics naming every rename that its own thread does not follow with an fsync of
    /// the directory it renamed into, before that thread makes any other traced call
    /// (further renames and fsyncs of the same commit may come between).
    fn assert_renames_are_dir_synced(&self) {
        let tid = |l: &str| l.split_whitespace().next().unwrap_or_default().to_owned();
        let call = |l: &str| l.split_whitespace().nth(1).unwrap_or_default().to_owned();
        for (i, dest) in self.renames() {
            let dir = dest.parent().unwrap();
            let synced = self.lines[i + 1..]
                .iter()
                .filter(|l| tid(l) == tid(&self.lines[i]))
                .take_while(|l| call(l).starts_with("rename") || call(l).starts_with("fsync("))
                .any(|l| call(l).starts_with("fsync(") && l.contains(&format!("<{}>)", dir.display())));
            assert!(
                synced,
                "rename to {} is not followed by an fsync of {} in its thread:\n{}",
                dest.display(),
                dir.display(),
                self.lines.join("\n")
            );
        }
    }
}

fn strace_works() {
    let ok = Command::new("strace").args(["-f", "-o", "/dev/null", "true"]).status().map(|s| s.success());
    assert!(ok.unwrap_or(false), "strace must be installed and allowed to trace (scripts/test installs it)");
}

#[tokio::test]
async fn every_acknowledged_write_is_fdatasynced_and_every_rename_dir_synced() {
    idca::install_crypto_provider();
    strace_works();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndata_dir = {:?}\n[acme.testing]\nalways_valid = true\n[management]\nlisten = \"\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let serve_trace = tmp.path().join("serve.trace");
    let mut child = traced(&serve_trace, &["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let directory = line.split_whitespace().last().unwrap().to_owned();
    let root = std::fs::read_to_string(data.join("root.pem")).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(root.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let dir = http.get(&directory).send().await.unwrap().json().await.unwrap();
    let db = data.join("db").join("db");
    let flushes_before = || Trace::read(&serve_trace).synced("fdatasync").iter().filter(|(_, p)| *p == db).count();
    let at_start = flushes_before();

    // Five acknowledged writes, one after another: account, order, challenge, finalize,
    // revocation. Each is answered only after its own flush.
    let mut c = RawClient { http, dir, key: Key::p256(), kid: None, bearer: None };
    assert_eq!(c.register().await.status, 201);
    let order = c.new_order(&["synced.example.test"]).await;
    let authz = c.post(order.json()["authorizations"][0].as_str().unwrap(), None).await.json();
    assert_eq!(c.post(authz["challenges"][0]["url"].as_str().unwrap(), Some(&json!({}))).await.status, 200);
    assert_eq!(c.poll(&order.location()).await["status"], "ready");
    let (der, _) = csr(&["synced.example.test"]);
    let fin = c.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await;
    assert_eq!(fin.status, 200, "{}", fin.text);
    let chain = c.post(fin.json()["certificate"].as_str().unwrap(), None).await.text;
    let leaf = crate::certs::first_cert_der(&chain);
    assert_eq!(c.post(&c.url("revokeCert"), Some(&json!({"certificate": b64(&leaf)}))).await.status, 200);
    let during = flushes_before() - at_start;
    // strace ignores SIGTERM while it runs a command: stop idca itself (a graceful stop).
    let idca_pid = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let _ = Command::new("kill").arg(idca_pid.trim()).status();
    child.wait().unwrap();

    let serve = Trace::read(&serve_trace);
    assert_eq!(serve.count("sync_file_range"), 0, "a flush used sync_file_range:\n{}", serve.lines.join("\n"));
    assert!(during >= 5, "{during} fdatasyncs of {} for five acknowledged writes", db.display());
    serve.assert_renames_are_dir_synced();
    assert!(!serve.renames().is_empty(), "the first start writes root.pem by a rename");

    // `idca issue` stages its files and renames them into place.
    let issue_trace = tmp.path().join("issue.trace");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let status = traced(
        &issue_trace,
        &[
            "--config",
            config.to_str().unwrap(),
            "issue",
            "files.example.test",
            "--cert-file",
            out_dir.join("files.pem").to_str().unwrap(),
            "--key-file",
            out_dir.join("files-key.pem").to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success());
    let issue = Trace::read(&issue_trace);
    assert_eq!(issue.count("sync_file_range"), 0);
    assert!(issue.renames().len() >= 2, "certificate and key: {:?}", issue.renames());
    issue.assert_renames_are_dir_synced();
}
