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
    let latest = idca::store::PgStore::latest_schema_version();
    let all: Vec<i32> = (1..=latest).collect();
    assert!(text(&migrate.stdout).contains(&format!("applied schema versions {all:?}")), "{}", text(&migrate.stdout));
    let again = idca_db(&data, Some(&url), "migrate");
    assert!(text(&again.stdout).contains(&format!("up to date (version {latest})")), "{}", text(&again.stdout));
    let status = text(&idca_db(&data, Some(&url), "status").stdout);
    assert!(status.contains("schema version 1, applied") && status.contains("up to date"), "{status}");
}

/// `idca db copy`: a sled data directory that served real clients (an instant-acme
/// account with a certificate, an oauth2 client holding a refresh token) moves into an
/// empty PostgreSQL database, verified; a second copy into it is refused; a server on the
/// copy serves the same clients: the account orders and revokes, the refresh token
/// rotates. Runs on the sled pass (the first server must be on sled) with IDCA_TEST_PG.
#[tokio::test]
async fn db_copy_moves_a_sled_directory_and_its_clients_keep_working() {
    use instant_acme::{Account, Identifier, NewAccount, NewOrder, RevocationRequest};
    let Ok(admin) = std::env::var("IDCA_TEST_PG") else { return };
    if std::env::var("IDCA_TEST_STORE").as_deref() == Ok("postgres") {
        return;
    }
    let holder = tempfile::tempdir().unwrap();
    let data = holder.path().join("data");
    // One port for both servers: the account URL the client holds names it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = data.clone();
    let server = oauth_server(move |c| {
        c.storage.data_dir = d;
        c.server.listen = listen;
    })
    .await;
    assert!(server.config.storage.url.is_empty(), "the source is sled");
    let (account, credentials) = Account::builder_with_root(&server.root_path)
        .unwrap()
        .create(
            &NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false },
            server.directory_url(),
            None,
        )
        .await
        .unwrap();
    let ids = [Identifier::Dns("before.example.test".into())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    let chain = crate::harness::finish_with_http01(&server, &mut order).await;
    let mut b = crate::oauth::Browser::new(&server);
    let cli = crate::oauth::public_client(&b, "http://127.0.0.1/callback");
    let (code, verifier, _) = crate::oauth::authorize_with_login(&mut b, &cli, &["openid", "acme"]).await;
    let tokens = crate::oauth::exchange(&b, &cli, code, verifier).await;
    let refresh = oauth2::TokenResponse::refresh_token(&tokens).unwrap().clone();
    let root = server.root_pem();
    server.stop().await;

    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("copy_{}", std::process::id());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{admin} dbname={name}");
    let copy = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
            .args(["db", "copy", "--from"])
            .arg(&data)
            .args(["--to", &url])
            .output()
            .unwrap()
    };
    let out = copy();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("verified") && stdout.contains("1 accounts") && stdout.contains("1 certificates"),
        "{stdout}"
    );
    let again = copy();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds records"));

    let (d, u) = (data.clone(), url.clone());
    let server = oauth_server(move |c| {
        c.storage.data_dir = d;
        c.storage.url = u;
        c.server.listen = listen;
    })
    .await;
    assert_eq!(server.root_pem(), root, "the same CA");
    let account = Account::builder_with_root(&server.root_path).unwrap().from_credentials(credentials).await.unwrap();
    let ids = [Identifier::Dns("after.example.test".into())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await.unwrap();
    crate::harness::finish_with_http01(&server, &mut order).await;
    let leaf = crate::certs::pem_blocks(&chain).remove(0);
    account.revoke(&RevocationRequest { certificate: &leaf.into(), reason: None }).await.unwrap();
    let b = crate::oauth::Browser::new(&server);
    let http = crate::oauth::oauth_http(b.http.clone());
    let cli = crate::oauth::public_client(&b, "http://127.0.0.1/callback");
    let rotated = cli.client.exchange_refresh_token(&refresh).request_async(&http).await.unwrap();
    assert!(oauth2::TokenResponse::refresh_token(&rotated).is_some());
    server.stop().await;
}

/// The crash-safety program on PostgreSQL, on a cluster of its own (the suite's is
/// shared): idca is killed under load in cycle 1, the database crashes under load
/// (`pg_ctl -m immediate`, recovery from the WAL) in cycle 2, idca again in cycle 3;
/// nothing acknowledged is lost.
#[test]
fn nothing_acknowledged_is_lost_when_idca_or_postgres_crashes() {
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg");
    let dir = tempfile::Builder::new().prefix("idca-crash-pg").tempdir_in("/tmp").unwrap();
    let cluster = dir.path().join("pg");
    let start = std::process::Command::new("bash").arg(scripts).arg("start").arg(&cluster).output().unwrap();
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let words = String::from_utf8(start.stdout).unwrap().trim().to_owned();
    let url = format!("{words} dbname=postgres");
    let restart = format!("bash {scripts} crash {}", cluster.display());
    let (code, text, cells) =
        crate::durability::idca_crash(3, &["--database", &url, "--restart-database", &restart, "-c", "4"]);
    let _ = std::process::Command::new("bash").arg(scripts).arg("stop").arg(&cluster).status();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("the database crashed"), "{text}");
    assert_eq!(cells[5], "0", "lost: {text}");
}

/// Issue 16: three instances behind HAProxy on one database, one of them SIGKILLed at
/// a random moment under load in each cycle and restarted: nothing acknowledged is lost
/// (checked through the balancer, certificates byte for byte), only flows in flight at
/// the killed instance fail, and no challenge stays processing past its lease.
#[test]
fn nothing_acknowledged_is_lost_when_one_of_three_instances_dies() {
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = crate::harness::test_database(&dir.path().join("data")).unwrap();
    let (code, text, cells) = crate::durability::idca_crash(2, &["--database", &url, "--instances", "3", "-c", "4"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!((cells[2].as_str(), cells[6].as_str(), cells[8].as_str()), ("3", "0", "0"), "{text}");
}

/// TLS to the database on rustls, with libpq's `sslmode` meanings: a cluster of its own
/// listening on TCP with a certificate from idca's local PKI; `verify-full` against that
/// root connects (and the session is encrypted), against another root it is refused;
/// `require` without a root encrypts without checking; a server started on
/// `verify-full` works.
#[tokio::test]
async fn tls_to_the_database_verifies_as_sslmode_says() {
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg");
    let dir = tempfile::Builder::new().prefix("idca-tls-pg").tempdir_in("/tmp").unwrap();
    let idca = |data: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_idca")).arg("--data").arg(data).args(args).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let (pki, other) = (dir.path().join("pki"), dir.path().join("other"));
    idca(&pki, &["init", "--local-pki"]);
    idca(&other, &["init", "--local-pki"]);
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    idca(&pki, &["issue", "--cert-file", c, "--key-file", k, "localhost", "127.0.0.1"]);

    let cluster = dir.path().join("pg");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = std::process::Command::new("bash")
        .arg(scripts)
        .arg("start")
        .arg(&cluster)
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let words = String::from_utf8(start.stdout).unwrap().trim().to_owned();
    // The key must belong to the server's user, mode 0600.
    let owned = |from: &std::path::Path, name: &str| {
        let to = cluster.join("data").join(name);
        std::fs::copy(from, &to).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        let meta = std::fs::metadata(cluster.join("data")).unwrap();
        std::os::unix::fs::chown(&to, Some(std::os::unix::fs::MetadataExt::uid(&meta)), None).unwrap();
    };
    owned(&cert, "server.crt");
    owned(&key, "server.key");
    let (admin, connection) = tokio_postgres::connect(&words, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute("ALTER SYSTEM SET ssl = on").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let root = pki.join("root.pem");
    let tcp = format!("host=localhost port={port} user=idca dbname=postgres");
    let encrypted = |url: String| async move {
        let store = idca::store::PgStore::open(&url, 1, 1).await?;
        store.session_is_encrypted().await
    };
    let full = format!("{tcp} sslmode=verify-full sslrootcert={}", root.display());
    assert!(encrypted(full.clone()).await.unwrap(), "verify-full with the right root");
    let wrong = format!("{tcp} sslmode=verify-full sslrootcert={}", other.join("root.pem").display());
    assert!(encrypted(wrong).await.is_err(), "verify-full with another root must be refused");
    assert!(encrypted(format!("{tcp} sslmode=require")).await.unwrap(), "require encrypts");
    assert!(!encrypted(format!("{tcp} sslmode=disable")).await.unwrap(), "disable does not");

    let data = dir.path().join("data");
    let (d, u) = (data.clone(), full.clone());
    let server = crate::harness::start_with(move |c| {
        c.storage.data_dir = d;
        c.storage.url = u;
    })
    .await;
    let mut client = RawClient::new(&server, Key::p256()).await;
    assert_eq!(client.register().await.status, 201);
    server.stop().await;
    let _ = std::process::Command::new("bash").arg(scripts).arg("stop").arg(&cluster).status();
}

/// Two instances on one database accept each other's ACME nonces, each once: a nonce
/// from A opens an account at B, and the same nonce is then refused at A (and at B).
#[tokio::test]
async fn instances_on_one_database_accept_each_others_nonces_once() {
    if std::env::var("IDCA_TEST_STORE").as_deref() != Ok("postgres") {
        return;
    }
    let a = crate::harness::start().await;
    let url = a.config.storage.url.clone();
    let b = crate::harness::start_with(move |c| c.storage.url = url).await;
    let at_a = RawClient::new(&a, Key::p256()).await;
    let mut at_b = RawClient::new(&b, Key::p256()).await;
    let nonce = at_a.nonce().await;
    let payload = serde_json::json!({"termsOfServiceAgreed": true});
    let with = |n: &str| crate::client::Overrides { nonce: Some(Some(n.to_owned())), ..Default::default() };
    let r = at_b.post_with(&at_b.url("newAccount"), Some(&payload), &with(&nonce)).await;
    assert_eq!(r.status, 201, "a nonce from A at B: {}", r.text);
    at_b.kid = Some(r.location());
    let again = at_a.post_with(&at_a.url("newAccount"), Some(&payload), &with(&nonce)).await;
    again.assert_problem(400, "badNonce");
    let again = at_b.post_with(&at_b.url("newOrder"), None, &with(&nonce)).await;
    again.assert_problem(400, "badNonce");
    // The account made through B is found at A by its key (one CA, one store).
    assert_eq!(a.root_pem(), b.root_pem());
    let from_a = RawClient { dir: at_a.dir.clone(), kid: None, ..at_b };
    let r = from_a.post(&from_a.url("newAccount"), Some(&serde_json::json!({"onlyReturnExisting": true}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    a.stop().await;
    b.stop().await;
}
