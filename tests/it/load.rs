//! `idca-load` against a test server: it completes real flows, counts them, and refuses
//! targets that are not on this machine.

use std::process::Command;

use serde_json::Value;

fn run_load(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_idca-load")).args(args).output().unwrap()
}

fn report(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_issuance_identity_and_nonce_runs() {
    let server = crate::harness::start_with(|c| {
        c.acme.testing.always_valid = true;
        c.oauth.demo_user = true;
    })
    .await;
    let dir = server.directory_url();
    let ca = server.root_path.to_str().unwrap().to_owned();
    let pid = std::process::id().to_string();
    let (d, c) = (dir.clone(), ca.clone());
    let issue = tokio::task::spawn_blocking(move || {
        run_load(&["--directory", &d, "--ca", &c, "-c", "2", "-n", "12", "--server-pid", &pid, "--json"])
    })
    .await
    .unwrap();
    let r = report(&issue);
    assert_eq!(r["completed"], 12, "{r}");
    assert_eq!(r["errors"], serde_json::json!({}));
    assert!(r["jws_per_flow"].as_f64().unwrap() >= 6.0, "{r}");
    assert!(r["floor_ms"].as_f64().unwrap() > 0.0);
    assert!(r["server"]["peak_rss_mib"].as_f64().unwrap() > 0.0, "reads /proc of the given pid");
    let text = String::from_utf8_lossy(&issue.stdout);
    for step in ["newAccount", "newOrder", "finalize", "certificate", "crypto floor"] {
        assert!(text.contains(step), "{step}: {text}");
    }
    // The identity flow: the demo user's password is beside the root the harness wrote.
    std::fs::copy(server.data_dir().join("demo-password"), server.dir.path().join("demo-password")).unwrap();
    let (d, c) = (dir.clone(), ca.clone());
    let identity = tokio::task::spawn_blocking(move || {
        run_load(&["--mode", "identity", "--directory", &d, "--ca", &c, "-c", "1", "-n", "2", "--json"])
    })
    .await
    .unwrap();
    let r = report(&identity);
    assert_eq!(r["completed"], 2, "{r}");
    assert!(r["requests_ms"]["wireDpop01"]["count"] == 2, "{r}");
    let (d, c) = (dir.clone(), ca.clone());
    let nonces = tokio::task::spawn_blocking(move || {
        run_load(&["--mode", "nonce", "--directory", &d, "--ca", &c, "-n", "50", "--json"])
    })
    .await
    .unwrap();
    assert_eq!(report(&nonces)["completed"], 50);
    server.stop().await;
}

#[test]
fn refuses_targets_off_this_machine() {
    let out = run_load(&["--directory", "https://192.0.2.1/directory", "--ca", "Cargo.toml", "-n", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}
