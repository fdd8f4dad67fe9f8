//! The PostgreSQL store against a real server: `IDCA_TEST_PG` names one (libpq words or a
//! URL to a database the tests may create databases from, such as `host=/tmp/pg
//! user=idca dbname=postgres`); `scripts/test` starts a throw-away cluster and sets it.
//! Without it these tests say so and pass (the sled suite still runs).

use std::sync::Arc;

use super::*;
use crate::store::Store;
use crate::store::conformance::Backend;

/// A fresh database on the test server: `CREATE DATABASE` through `admin`, a URL to it.
async fn fresh_database(admin: &str) -> String {
    let (client, connection) = connect::config(admin).unwrap().connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("t_{}", crate::model::random_token().to_lowercase().replace(['-', '_'], ""));
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    format!("{admin} dbname={name}")
}

/// PostgreSQL for the conformance suite: each store on its own fresh database.
struct PgBackend {
    admin: String,
    last: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl Backend for PgBackend {
    async fn fresh(&self, dpop_jti_max: u64) -> Arc<dyn Store> {
        let url = fresh_database(&self.admin).await;
        let store = PgStore::open(&url, 4, 1).await.unwrap();
        store.limit_dpop_jti(dpop_jti_max);
        *self.last.lock().unwrap() = Some(url);
        Arc::new(store)
    }

    async fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(store);
        let url = self.last.lock().unwrap().clone().unwrap();
        Arc::new(PgStore::open(&url, 4, 2).await.unwrap())
    }
}

fn test_server() -> Option<String> {
    let admin = std::env::var("IDCA_TEST_PG").ok().filter(|s| !s.is_empty());
    if admin.is_none() {
        eprintln!("IDCA_TEST_PG is not set: the PostgreSQL store tests do not run");
    }
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_conformance_suite() {
    let Some(admin) = test_server() else { return };
    crate::store::conformance::run_all(&PgBackend { admin, last: Default::default() }).await;
}

#[tokio::test]
async fn migrations_apply_once_and_are_recorded() {
    let Some(admin) = test_server() else { return };
    let url = fresh_database(&admin).await;
    // Instances starting together: each migration is applied by one of them.
    let (a, b) = tokio::join!(PgStore::open(&url, 2, 10), PgStore::open(&url, 2, 10));
    let (a, _b) = (a.unwrap(), b.unwrap());
    let versions = a.schema_versions().await.unwrap();
    let all: Vec<_> = (1..=5).map(|v| (v, 10)).collect();
    assert_eq!(versions, all);
    assert_eq!(PgStore::latest_schema_version(), 5);
    drop(a);
    let again = PgStore::open(&url, 2, 20).await.unwrap();
    assert_eq!(again.schema_versions().await.unwrap(), all, "applied again");
}

/// Transactions the database aborts for serialization are retried from the start, a
/// bounded number of times; one that keeps failing changes nothing.
#[tokio::test]
async fn aborted_transactions_are_retried_and_bounded() {
    use crate::model::oauth::CodeRedemption;
    use crate::store::conformance::{code, grant, refresh_token};
    let Some(admin) = test_server() else { return };
    let store = PgStore::open(&fresh_database(&admin).await, 2, 1).await.unwrap();
    let hash = SecretHash::of("code");
    store.put_code(&hash, &code()).await.unwrap();
    // Four aborts, then the fifth attempt commits: one redemption, one grant.
    store.inject_aborts(MAX_ATTEMPTS - 1);
    let refresh = SecretHash::of("r");
    let r = store.redeem_code(&hash, &grant("g1"), Some((&refresh, &refresh_token("g1")))).await.unwrap();
    assert!(matches!(r, CodeRedemption::Redeemed(_)));
    assert!(!store.grant("g1").await.unwrap().revoked);
    assert!(store.refresh_token(&refresh).await.is_ok());
    // Always aborted: the caller gets the error, and nothing was written.
    let other = SecretHash::of("other");
    store.put_code(&other, &code()).await.unwrap();
    store.inject_aborts(MAX_ATTEMPTS);
    assert!(matches!(store.redeem_code(&other, &grant("g2"), None).await, Err(StoreError::Retry(_))));
    assert!(matches!(store.grant("g2").await, Err(StoreError::NotFound)));
    assert_eq!(store.code(&other).await.unwrap().redeemed, None);
}

/// Every session commits synchronously, even on a server whose default is off.
#[tokio::test]
async fn sessions_commit_synchronously() {
    let Some(admin) = test_server() else { return };
    let url = fresh_database(&admin).await;
    let (client, connection) = connect::config(&url).unwrap().connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = url.rsplit("dbname=").next().unwrap().to_owned();
    client.batch_execute(&format!("ALTER DATABASE {name} SET synchronous_commit = off")).await.unwrap();
    let store = PgStore::open(&url, 1, 1).await.unwrap();
    let c = store.client().await.unwrap();
    let row = query_opt(&c, "SHOW synchronous_commit", &[]).await.unwrap().unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
}
