//! The [`Store`] on PostgreSQL (tokio-postgres with a deadpool pool).
//!
//! Each record is its serde JSON in a `jsonb` column beside a `version` bumped by every
//! write; only what SQL must index, constrain or filter is a column of its own
//! (`migrations/`). Every decision is one statement whose row count decides (`INSERT …
//! ON CONFLICT DO NOTHING`, `UPDATE … WHERE version = $seen`, `DELETE … RETURNING`), or a
//! transaction whose first statement decides; transactions are retried a few times when
//! the database aborts them for serialization (SQLSTATE 40001, 40P01). Durable before
//! acknowledged: a call returns once its commit has returned (`synchronous_commit` on,
//! PostgreSQL's default). Times come from idca's clock, never the database's `now()`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
#[cfg(test)]
use tokio_postgres::NoTls;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};

use super::{
    AccountCreation, AcmeStore, Attempt, AttemptRule, LimitStore, OAuthStore, PkiStore, ReplayStore, StoreError,
    Version, Versioned,
};
use crate::clock::UnixTime;
use crate::jose::Jkt;
use crate::model::oauth::{
    AuthorizationCode, CodeRedemption, Device, DeviceAuthorization, DeviceStatus, Grant, OAuthKey,
    PendingAuthorization, PushedAuthorization, RefreshToken, RegisteredClient, SecretHash, Session,
};
use crate::model::{
    Account, AccountId, Authorization, AuthzId, CaChains, CaMaterial, ChallengeStatus, Identifier, IssuedCertificate,
    Order, OrderId, Serial,
};

mod acme;
mod connect;
mod limits;
mod oauth;
mod pki;
mod replay;
mod snapshot;
mod tls;

pub use connect::database_url;

/// The schema, one step per version, applied in order at start (additive only, so two
/// idca versions can share a database during a rolling upgrade).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("postgres_store/migrations/0001_schema.sql")),
    (2, include_str!("postgres_store/migrations/0002_expiry_indexes.sql")),
    (3, include_str!("postgres_store/migrations/0003_shared_limits.sql")),
    (4, include_str!("postgres_store/migrations/0004_pushed_authorizations.sql")),
    (5, include_str!("postgres_store/migrations/0005_revocation_epoch.sql")),
];

/// Attempts of a transaction the database aborted for serialization.
const MAX_ATTEMPTS: u32 = 5;

const CA_KEY: &str = "ca";
const RETIRED_CA_KEY: &str = "ca-retired";
const CA_CHAINS_KEY: &str = "ca-chains";
const DPOP_NONCE_SECRET_KEY: &str = super::DPOP_NONCE_SECRET;

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    jti: JtiBound,
    /// Tests: this many next transactions are aborted as for serialization, as
    /// CockroachDB's `inject_retry_errors_enabled` does.
    injected_aborts: std::sync::atomic::AtomicU32,
    quota: super::Quota,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", &self.pool.status()).finish()
    }
}

/// The bound on remembered DPoP replay keys (`limits.dpop_jti_max`), kept as sled keeps
/// it: a count of live keys, corrected by a purge when it reaches the bound.
#[derive(Debug)]
struct JtiBound {
    live: AtomicU64,
    capacity: AtomicU64,
    inserts: AtomicU64,
    /// When a full store last purged (at most once a second).
    purged_at: AtomicI64,
}

/// Whether `e` says the database cannot be reached now (SQLSTATE class 08, a server
/// shutting down or starting, a closed connection): the request may succeed later.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("08") || ["57P01", "57P02", "57P03", "53300"].contains(&code)
        })
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if unreachable(&e) {
            return StoreError::Unavailable(format!("database: {e}"));
        }
        match e.code() {
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
                StoreError::Retry(e.to_string())
            }
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists,
            Some(c) if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER => {
                StoreError::Unstorable(e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_owned()))
            }
            _ => match e.as_db_error() {
                Some(db) => StoreError::Backend(format!("database: {}", db.message())),
                None => StoreError::Unavailable(format!("database: {e}")),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        // Whatever stops the pool from handing out a connection (connecting refused,
        // timed out, the database not accepting connections) is "unavailable".
        StoreError::Unavailable(format!("database: {e}"))
    }
}

/// Runs `$body` (which uses the transaction `$tx` and yields `Result<_, StoreError>`) in
/// a transaction and commits it; retried from the start when the database aborted it
/// for serialization.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut client = $store.client().await?;
            let $tx = client.transaction().await.map_err(StoreError::from)?;
            let outcome: Result<_, StoreError> = async { $body }.await;
            let outcome = match outcome {
                Ok(_) if $store.injected_abort() => Err(StoreError::Retry("injected".into())),
                Ok(v) => $tx.commit().await.map(|()| v).map_err(StoreError::from),
                Err(e) => Err(e),
            };
            match outcome {
                Err(StoreError::Retry(_)) if attempts < MAX_ATTEMPTS => continue,
                other => break other,
            }
        }
    }};
}
use transaction;

/// One prepared (and cached) statement's affected rows.
async fn exec(c: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}

async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

async fn query(c: &impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

/// Column `i` of `row`: a record stored as JSON.
fn body<T: DeserializeOwned>(row: &Row, i: usize, table: &'static str) -> Result<T, StoreError> {
    row.try_get::<_, Json<T>>(i).map(|j| j.0).map_err(|e| StoreError::Corrupt { tree: table, message: e.to_string() })
}

fn text(row: &Row, i: usize, table: &'static str) -> Result<String, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Corrupt { tree: table, message: e.to_string() })
}

fn version_of(row: &Row, i: usize, table: &'static str) -> Result<Version, StoreError> {
    let v: i64 = row.try_get(i).map_err(|e| StoreError::Corrupt { tree: table, message: e.to_string() })?;
    Ok(Version(u64::try_from(v).unwrap_or(0)))
}

/// `(version, body)` of `row` as a [`Versioned`] record.
fn versioned<T: DeserializeOwned>(row: &Row, table: &'static str) -> Result<Versioned<T>, StoreError> {
    Ok(Versioned { version: version_of(row, 0, table)?, value: body(row, 1, table)? })
}

/// A version as the database stores it.
fn db_version(v: Version) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
}

/// A record, to bind as `jsonb`.
fn json<T: Serialize + std::fmt::Debug>(v: &T) -> Json<&T> {
    Json(v)
}

/// Why a compare-and-swap on `table` changed no row: the record is gone (`NotFound`) or
/// at another version (`Conflict`). `exists` selects the record by `$1`.
async fn lost(c: &impl GenericClient, exists: &str, key: &str) -> StoreError {
    match query_opt(c, exists, &[&key]).await {
        Ok(Some(_)) => StoreError::Conflict,
        Ok(None) => StoreError::NotFound,
        Err(e) => e,
    }
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or libpq `key=value` words; libpq's
    /// environment variables and password file fill in what it leaves out) and brings the
    /// schema up to date. `pool_size`: connections at most. `now`: the time migrations
    /// are recorded at.
    pub async fn open(url: &str, pool_size: usize, now: UnixTime) -> Result<Self, StoreError> {
        let store = Self::connect(url, pool_size)?;
        store.migrate(now).await?;
        let client = store.client().await?;
        let live = query_opt(&client, "SELECT count(*) FROM replay WHERE kind = 2", &[]).await?;
        let live: i64 = live.map_or(Ok(0), |r| r.try_get(0))?;
        store.jti.live.store(u64::try_from(live).unwrap_or(0), Ordering::Relaxed);
        Ok(store)
    }

    /// A pool for `url`, without touching the schema (`idca db status`); connections are
    /// made when first used.
    pub fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let (config, options) = connect::connection(url)?;
        let tls = tls::RustlsConnect(std::sync::Arc::new(tls::client_config(&options)?));
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Backend(format!("database pool: {e}")))?;
        Ok(Self {
            pool,
            jti: JtiBound {
                live: AtomicU64::new(0),
                capacity: AtomicU64::new(u64::MAX),
                inserts: AtomicU64::new(0),
                purged_at: AtomicI64::new(0),
            },
            injected_aborts: std::sync::atomic::AtomicU32::new(0),
            quota: super::Quota::default(),
        })
    }

    /// Whether to abort this transaction instead of committing it (tests only).
    fn injected_abort(&self) -> bool {
        cfg!(test)
            && self.injected_aborts.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    /// Aborts the next `n` transactions before their commit, as the database does on a
    /// serialization failure (tests of the retry loop).
    #[cfg(test)]
    pub(crate) fn inject_aborts(&self, n: u32) {
        self.injected_aborts.store(n, Ordering::Relaxed);
    }

    /// Holds at most `max` unexpired DPoP replay keys (`limits.dpop_jti_max`).
    pub fn limit_dpop_jti(&self, max: u64) {
        self.jti.capacity.store(max.max(1), Ordering::Relaxed);
    }

    /// The schema versions applied, with when; `[]` for an empty database.
    pub async fn schema_versions(&self) -> Result<Vec<(i32, UnixTime)>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT version, applied FROM schema_migrations ORDER BY version";
        match client.query(sql, &[]).await {
            Ok(rows) => rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect(),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether this store's connections to the database are encrypted (TLS).
    pub async fn session_is_encrypted(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        let row = query_opt(&client, sql, &[]).await?;
        Ok(row.map(|r| r.try_get::<_, bool>(0)).transpose()?.unwrap_or(false))
    }

    /// The newest schema version this idca knows.
    pub fn latest_schema_version() -> i32 {
        MIGRATIONS.last().map_or(0, |(v, _)| *v)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Applies the migrations not applied yet, each in its own transaction whose first
    /// statement claims it (so instances starting together apply each once; the others
    /// wait for the claim's commit, then skip it).
    pub async fn migrate(&self, now: UnixTime) -> Result<Vec<i32>, StoreError> {
        let create =
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied bigint NOT NULL)";
        let mut client = self.client().await?;
        // Two first starts at once can race inside CREATE TABLE IF NOT EXISTS; the loser's
        // unique violation (or "type already exists") means the table is there.
        let there = [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_OBJECT, SqlState::DUPLICATE_TABLE];
        match client.batch_execute(create).await {
            Ok(()) => {}
            Err(e) if e.code().is_some_and(|c| there.contains(c)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut applied = Vec::new();
        for (version, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            let claimed = tx
                .execute(
                    "INSERT INTO schema_migrations (version, applied) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[version, &now],
                )
                .await?;
            if claimed == 1 {
                tx.batch_execute(sql).await?;
                tx.commit().await?;
                tracing::info!(version, "applied a database schema migration");
                applied.push(*version);
            }
        }
        Ok(applied)
    }

    async fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT body FROM meta WHERE key = $1", &[&key]).await?;
        row.map(|r| body(&r, 0, "meta")).transpose()
    }

    /// Stores `value` under `key` unless something is there; whether it was stored.
    async fn meta_insert_new<T: Serialize + std::fmt::Debug + Sync>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let sql = "INSERT INTO meta (key, version, body) VALUES ($1, 1, $2) ON CONFLICT DO NOTHING";
        Ok(exec(&client, sql, &[&key, &json(value)]).await? == 1)
    }
}

/// A grant and its first refresh token, inserted in the caller's transaction.
async fn insert_grant(
    c: &impl GenericClient,
    grant: &Grant,
    refresh: Option<(&SecretHash, &RefreshToken)>,
) -> Result<(), StoreError> {
    exec(c, "INSERT INTO oauth_grants (id, version, body) VALUES ($1, 1, $2)", &[&grant.id, &json(grant)]).await?;
    if let Some((hash, token)) = refresh {
        let sql = "INSERT INTO oauth_refresh (hash, grant_id, version, body) VALUES ($1, $2, 1, $3)";
        exec(c, sql, &[&hash.0, &token.grant, &json(token)]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
