//! PostgreSQL as a running service sees it: a database that goes away and comes back.
//! These run with `IDCA_TEST_STORE=postgres` (scripts/test's second pass); on sled they
//! have nothing to test and return.

use serde_json::Value;

use crate::client::{Key, RawClient};
use crate::harness::TestServer;
use crate::oauth::{SECRET, oauth_server};

/// An admin connection to the test server, and the server's database name.
async fn admin(server: &TestServer) -> (tokio_postgres::Client, String) {
    let url = &server.config.storage.url;
    let name = url.rsplit("dbname=").next().unwrap().trim().to_owned();
    let admin = std::env::var("IDCA_TEST_PG").unwrap();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    (client, name)
}

/// While the database refuses connections (and has dropped idca's), ACME answers 503
/// `serverInternal` and OAuth 503 `temporarily_unavailable`, both with Retry-After,
/// health says unavailable, nothing crashes; once it is back, the same requests work
/// without a restart.
#[tokio::test]
async fn an_unreachable_database_is_a_503_and_idca_reconnects() {
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    let server = oauth_server(|_| {}).await;
    let (db, name) = admin(&server).await;
    let mut before = RawClient::new(&server, Key::p256()).await;
    assert_eq!(before.register().await.status, 201);
    let base = server.directory_url().replace("/directory", "");
    let root = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
    let token = || {
        http.post(format!("{base}/oauth/token"))
            .form(&[("grant_type", "client_credentials"), ("client_id", "backend"), ("client_secret", SECRET)])
            .send()
    };

    db.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await.unwrap();
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[&name]).await.unwrap();
    let mut during = RawClient::new(&server, Key::p256()).await;
    let r = during.register().await;
    r.assert_problem(503, "serverInternal");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    let r = token().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "temporarily_unavailable");
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);

    db.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.unwrap();
    assert_eq!(during.register().await.status, 201, "the same request once the database is back");
    assert_eq!(token().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(before.new_order(&["back.example.test"]).await.status, 201);
    server.stop().await;
}

fn idca_db(data: &std::path::Path, url: Option<&str>, command: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_idca"));
    cmd.arg("--data").arg(data).args(["db", command]);
    if let Some(url) = url {
        cmd.env("IDCA_STORAGE_URL", url);
    }
    cmd.output().unwrap()
}

/// `idca db status` and `idca db migrate`: a blank database is behind, migrating brings it
/// up to date once, and a second migrate changes nothing. On sled they explain that
/// there is no database.
#[tokio::test]
async fn db_status_and_migrate_report_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        let out = idca_db(&data, None, "status");
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("storage.url names no database"), "{}", text(&out.stderr));
        return;
    }
    let admin = std::env::var("IDCA_TEST_PG").unwrap();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("blank_{}", std::process::id());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{admin} dbname={name}");
    let status = idca_db(&data, Some(&url), "status");
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("behind"), "{}", text(&status.stdout));
    assert!(!text(&status.stdout).contains("password"), "{}", text(&status.stdout));
    let migrate = idca_db(&data, Some(&url), "migrate");
    assert!(text(&migrate.stdout).contains("applied schema versions [1, 2]"), "{}", text(&migrate.stdout));
    let again = idca_db(&data, Some(&url), "migrate");
    assert!(text(&again.stdout).contains("up to date (version 2)"), "{}", text(&again.stdout));
    let status = text(&idca_db(&data, Some(&url), "status").stdout);
    assert!(status.contains("schema version 1, applied") && status.contains("up to date"), "{status}");
}
