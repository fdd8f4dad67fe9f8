//! The embedded [`Store`] on sled 0.34.
//!
//! One tree per kind of record plus index trees. Values are JSON envelopes
//! `{"version": n, "record": …}`. The writes of every issuance are compare-and-swaps
//! ordered so that a reader never finds a record naming one not yet written (each sled
//! transaction takes sled's global lock exclusively and stalls every reader); the rarer
//! multi-record changes are sled transactions (the closures have no side effects: sled
//! may run them more than once). Durability: sled's
//! own timer flush is off; every mutating call waits for a flush that started after its
//! write (inside [`one_flush`], a request waits once, at its end), and a single flusher
//! thread serves all waiters queued at once (group commit), after waiting up to the
//! commit delay for other requests in progress to queue theirs ([`serving_request`]).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use tokio::sync::oneshot;

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
mod guard;
mod limits;
mod oauth;
mod pki;
mod replay;
mod snapshot;

pub use guard::copy_dir;

const CA_KEY: &[u8] = b"ca";
/// In `meta`: the number of the last group commit (see `guard`).
const GENERATION_KEY: &[u8] = b"generation";
const RETIRED_CA_KEY: &[u8] = b"ca-retired";
const CA_CHAINS_KEY: &[u8] = b"ca-chains";

/// sled-backed store with group-committed flushes.
#[derive(Debug, Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: sled::Db,
    meta: Tree,
    accounts: Tree,
    account_keys: Tree,
    orders: Tree,
    account_orders: Tree,
    /// Orders not finalized yet: `account \0 order` → expiry (big-endian i64).
    open_orders: Tree,
    authzs: Tree,
    validating: Tree,
    certs: Tree,
    revoked: Tree,
    eab_kids: Tree,
    account_authzs: Tree,
    oauth: OAuthTrees,
    dpop_jti: Tree,
    /// Used shared ACME nonces (only when a store's nonces are shared).
    acme_nonces: Tree,
    /// Validation leases (owner, until) by authorization: in memory, as only this
    /// process validates; after a restart every processing authorization is free.
    leases: std::sync::Mutex<std::collections::HashMap<Vec<u8>, (String, i64)>>,
    limits: super::local_limits::LocalLimits,
    jti_inserts: AtomicU64,
    /// Replay keys held, and the most that may be (`limits.dpop_jti_max`).
    jti_live: AtomicU64,
    jti_capacity: AtomicU64,
    /// When a full store last purged (at most once a second, so that a full store
    /// answers at once instead of scanning for every proof).
    jti_purged_at: AtomicI64,
    /// Bumped by every write to `revoked` (see [`PkiStore::revocation_epoch`]): only
    /// this process writes the store.
    revocation_epoch: AtomicU64,
    quota: super::Quota,
    /// `None` only while dropping.
    flusher: Option<mpsc::Sender<oneshot::Sender<Result<(), String>>>>,
    /// The commit delay in µs ([`SledStore::set_commit_delay`]), read by the flusher.
    commit_delay_us: Arc<AtomicU64>,
    flusher_thread: Option<std::thread::JoinHandle<()>>,
    flushes: Arc<AtomicU64>,
    /// Last, so that it is dropped after sled has closed its files.
    guard: Option<guard::Guard>,
}

#[derive(Debug)]
struct OAuthTrees {
    keys: Tree,
    pending: Tree,
    pushed: Tree,
    sessions: Tree,
    codes: Tree,
    grants: Tree,
    refresh: Tree,
    devices: Tree,
    user_codes: Tree,
    clients: Tree,
    user_devices: Tree,
    device_nonces: Tree,
}

#[derive(Serialize)]
struct EnvelopeRef<'a, T> {
    version: Version,
    record: &'a T,
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    version: Version,
    record: T,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(record: &T, version: Version) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&EnvelopeRef { version, record }).map_err(backend)
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<Versioned<T>, StoreError> {
    let e: Envelope<T> =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { tree, message: e.to_string() })?;
    Ok(Versioned { value: e.record, version: e.version })
}

/// The authorization version stored in a `validating` index entry (0 for entries written
/// before it held one).
fn index_version(value: &[u8]) -> Version {
    Version(<[u8; 8]>::try_from(value).map(u64::from_be_bytes).unwrap_or(0))
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

fn abort<T>(e: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Reads the version stored under `key` in a transaction; `NotFound` aborts.
fn tx_version(
    tree: &TransactionalTree,
    name: &'static str,
    key: &[u8],
) -> Result<Version, ConflictableTransactionError<StoreError>> {
    match tree.get(key)? {
        None => abort(StoreError::NotFound),
        Some(bytes) => match decode::<serde::de::IgnoredAny>(name, &bytes) {
            Ok(v) => Ok(v.version),
            Err(e) => abort(e),
        },
    }
}

/// `account \0 type \0 value \0`: the prefix of an account's authorizations for one
/// identifier (ids and values hold no NUL).
fn authz_index_prefix(account: &AccountId, identifier: &Identifier) -> Vec<u8> {
    let kind = serde_json::to_string(&identifier.kind).unwrap_or_default();
    let mut key = Vec::with_capacity(account.0.len() + identifier.value.len() + 16);
    for part in [account.0.as_bytes(), kind.as_bytes(), identifier.value.as_bytes()] {
        key.extend_from_slice(part);
        key.push(0);
    }
    key
}

/// A grant and its first refresh token, encoded, ready to go into one transaction.
struct GrantWrite<'a> {
    grant_key: &'a [u8],
    grant: Vec<u8>,
    refresh: Option<(&'a [u8], Vec<u8>)>,
}

impl<'a> GrantWrite<'a> {
    fn new(grant: &'a Grant, refresh: Option<(&'a SecretHash, &'a RefreshToken)>) -> Result<Self, StoreError> {
        Ok(Self {
            grant_key: grant.id.as_bytes(),
            grant: encode(grant, Version::FIRST)?,
            refresh: refresh
                .map(|(h, r)| Ok::<_, StoreError>((h.0.as_bytes(), encode(r, Version::FIRST)?)))
                .transpose()?,
        })
    }

    fn insert(
        &self,
        grants: &TransactionalTree,
        refresh: &TransactionalTree,
    ) -> Result<(), sled::transaction::UnabortableTransactionError> {
        grants.insert(self.grant_key, self.grant.as_slice())?;
        if let Some((h, b)) = &self.refresh {
            refresh.insert(*h, b.as_slice())?;
        }
        Ok(())
    }
}

/// Stores `value` under a key that must be new (`AlreadyExists` otherwise).
fn insert_new(tree: &Tree, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
    tree.compare_and_swap(key, None as Option<&[u8]>, Some(value))
        .map_err(backend)?
        .map_err(|_| StoreError::AlreadyExists)
}

/// Replaces the record under `key` if it is still at version `seen` (`Conflict`
/// otherwise): a compare-and-swap against the bytes that were checked.
fn replace_versioned(
    tree: &Tree,
    name: &'static str,
    key: &[u8],
    seen: Version,
    value: Vec<u8>,
) -> Result<(), StoreError> {
    let current = tree.get(key).map_err(backend)?.ok_or(StoreError::NotFound)?;
    if decode::<serde::de::IgnoredAny>(name, &current)?.version != seen {
        return Err(StoreError::Conflict);
    }
    tree.compare_and_swap(key, Some(current), Some(value)).map_err(backend)?.map_err(|_| StoreError::Conflict)
}

/// Removes up to `batch` records of `tree` for which `expired` holds, each only if it is
/// still the value that was checked; returns the removed records.
fn purge_tree<T: DeserializeOwned>(
    tree: &Tree,
    name: &'static str,
    batch: usize,
    expired: impl Fn(&T) -> bool,
) -> Result<Vec<T>, StoreError> {
    let mut removed = Vec::new();
    for entry in tree.iter() {
        if removed.len() >= batch {
            break;
        }
        let (key, value) = entry.map_err(backend)?;
        let record = decode::<T>(name, &value)?.value;
        if expired(&record) && tree.compare_and_swap(&key, Some(value), None as Option<&[u8]>).map_err(backend)?.is_ok()
        {
            removed.push(record);
        }
    }
    Ok(removed)
}

/// A time stored as big-endian seconds (a DPoP replay key's window end, an open
/// order's expiry); 0 if malformed.
fn stored_time(value: &[u8]) -> i64 {
    <[u8; 8]>::try_from(value.get(..8).unwrap_or(&[0; 8])).map_or(0, i64::from_be_bytes)
}

fn order_index_key(account: &AccountId, created: i64, order: &OrderId) -> Vec<u8> {
    let mut key = account.0.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&created.to_be_bytes());
    key.extend_from_slice(order.0.as_bytes());
    key
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Refuses clearly, changing nothing, if
    /// another process holds it or its files are missing, damaged or have lost writes
    /// (see `guard`).
    pub fn open(dir: &Path, cache_capacity_mib: u64) -> Result<Self, StoreError> {
        Self::open_with(dir, cache_capacity_mib, false)
    }

    /// [`Self::open`]; `unchecked_ok` (`storage.open_unchecked`): a store that was not
    /// closed cleanly and cannot be copied to be checked opens anyway (with a warning)
    /// instead of being refused.
    pub fn open_with(dir: &Path, cache_capacity_mib: u64, unchecked_ok: bool) -> Result<Self, StoreError> {
        let cache = cache_capacity_mib.saturating_mul(1024 * 1024);
        let (mut guard, expected) = guard::Guard::acquire(dir, cache, unchecked_ok)?;
        let db = guard::open_db(dir, cache)?;
        guard::check_generation(&db, expected).map_err(|e| match e {
            StoreError::Damaged { problem, .. } => StoreError::Damaged { path: dir.display().to_string(), problem },
            other => other,
        })?;
        let held = guard::stored_generation(&db)?;
        let generations = Some((guard.generation_file(held)?, held));
        guard.opened();
        Self::from_db(db, generations, Some(guard))
    }

    /// A store in a temporary directory that sled deletes on drop; for tests.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).flush_every_ms(None).open().map_err(backend)?;
        Self::from_db(db, None, None)
    }

    /// A temporary store whose flushes fail (its flusher is stopped), for tests of what
    /// a failed flush answers.
    #[cfg(test)]
    pub(crate) fn without_flusher() -> Self {
        let mut s = Self::temporary().expect("a temporary store");
        if let Some(inner) = Arc::get_mut(&mut s.inner) {
            inner.flusher = None;
        }
        s
    }

    fn from_db(
        db: sled::Db,
        generations: Option<(std::fs::File, u64)>,
        guard: Option<guard::Guard>,
    ) -> Result<Self, StoreError> {
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let (tx, rx) = mpsc::channel();
        let commit_delay_us = Arc::new(AtomicU64::new(0));
        let delay = commit_delay_us.clone();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = flushes.clone();
        let meta = tree("meta")?;
        let thread = std::thread::Builder::new()
            .name("idca-flush".into())
            .spawn({
                let db = db.clone();
                let generations = generations.map(|(file, n)| (meta.clone(), file, n));
                move || group_commit(db, rx, counter, delay, generations)
            })
            .map_err(backend)?;
        let inner = Inner {
            meta,
            accounts: tree("accounts")?,
            account_keys: tree("account_keys")?,
            orders: tree("orders")?,
            account_orders: tree("account_orders")?,
            open_orders: tree("open_orders")?,
            authzs: tree("authzs")?,
            validating: tree("validating")?,
            certs: tree("certs")?,
            revoked: tree("revoked")?,
            eab_kids: tree("eab_kids")?,
            account_authzs: tree("account_authzs")?,
            dpop_jti: tree("dpop_jti")?,
            acme_nonces: tree("acme_nonces")?,
            leases: std::sync::Mutex::default(),
            limits: super::local_limits::LocalLimits::default(),
            jti_inserts: AtomicU64::new(0),
            jti_live: AtomicU64::new(db.open_tree("dpop_jti").map_err(backend)?.len() as u64),
            jti_capacity: AtomicU64::new(u64::MAX),
            jti_purged_at: AtomicI64::new(0),
            revocation_epoch: AtomicU64::new(0),
            quota: super::Quota::default(),
            oauth: OAuthTrees {
                keys: tree("oauth_keys")?,
                pending: tree("oauth_pending")?,
                pushed: tree("oauth_pushed")?,
                sessions: tree("oauth_sessions")?,
                codes: tree("oauth_codes")?,
                grants: tree("oauth_grants")?,
                refresh: tree("oauth_refresh")?,
                devices: tree("oauth_devices")?,
                user_codes: tree("oauth_user_codes")?,
                clients: tree("oauth_clients")?,
                user_devices: tree("user_devices")?,
                device_nonces: tree("device_nonces")?,
            },
            flusher: Some(tx),
            commit_delay_us,
            flusher_thread: Some(thread),
            flushes,
            db: db.clone(),
            guard,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Holds at most `max` unexpired DPoP replay keys (`limits.dpop_jti_max`).
    pub fn limit_dpop_jti(&self, max: u64) {
        self.inner.jti_capacity.store(max.max(1), Ordering::Relaxed);
    }

    /// Drops the replay keys whose window has passed; returns how many remain.
    fn purge_dpop_jti(&self, now: i64) -> Result<u64, StoreError> {
        let tree = &self.inner.dpop_jti;
        let mut remaining = 0;
        for entry in tree.iter() {
            let (k, v) = entry.map_err(backend)?;
            if stored_time(&v) <= now {
                let _ = tree.compare_and_swap(k, Some(v), None as Option<&[u8]>).map_err(backend)?;
            } else {
                remaining += 1;
            }
        }
        self.inner.jti_live.store(remaining, Ordering::Relaxed);
        Ok(remaining)
    }

    /// How long a group commit may wait for the writes of other requests in progress
    /// before it flushes (`storage.commit_delay_us`; 0, the default of a store just
    /// opened: never). While the server is busy, one `fdatasync` then covers several
    /// requests' writes instead of one or two (README, Performance); no write is
    /// acknowledged before its flush either way.
    pub fn set_commit_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.inner.commit_delay_us.store(us, Ordering::Relaxed);
    }

    /// How many flushes the group-commit thread has made (for tests and metrics).
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Every mutating operation ends here: waits until everything written before this
    /// call is on disk, or, inside [`one_flush`], leaves that wait to its end.
    async fn durable(&self) -> Result<(), StoreError> {
        if self.owe_flush() {
            return Ok(());
        }
        self.flush_now().await
    }

    /// Inside [`one_flush`]: notes that its end must flush this store; false outside it,
    /// or when the flush owed is another store's (this one then flushes at once).
    fn owe_flush(&self) -> bool {
        OWED.try_with(|owed| {
            let mut owed = owed.borrow_mut();
            match owed.as_ref() {
                Some(other) => Arc::ptr_eq(&other.inner, &self.inner),
                None => {
                    *owed = Some(self.clone());
                    true
                }
            }
        })
        .unwrap_or(false)
    }

    /// Waits until everything written before this call is on disk (one group commit).
    async fn flush_now(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .flusher
            .as_ref()
            .ok_or_else(|| backend("flusher stopped"))?
            .send(tx)
            .map_err(|_| backend("flusher stopped"))?;
        rx.await.map_err(|_| backend("flusher stopped"))?.map_err(backend)
    }

    fn get<T: DeserializeOwned>(tree: &Tree, name: &'static str, key: &[u8]) -> Result<Versioned<T>, StoreError> {
        match tree.get(key).map_err(backend)? {
            Some(bytes) => decode(name, &bytes),
            None => Err(StoreError::NotFound),
        }
    }
}

tokio::task_local! {
    /// Inside [`one_flush`]: the store its end flushes, once something was written.
    static OWED: std::cell::RefCell<Option<SledStore>>;
}

/// Runs `work` (one request) so that its writes wait for one flush at its end instead of
/// one each, and returns what it made once that flush is done, with the flush's error
/// if it failed (then nothing `work` made may be acknowledged). A request's writes are
/// acknowledged only by its response, so one flush before the response keeps "durable
/// before acknowledged". Another request that sees a write before it is flushed and
/// writes anything is answered after its own flush, which covers every write before it
/// (sled's log is one sequence). One that only reads may answer from it sooner, as it
/// could during any flush; the window is now the rest of the writing request (its
/// client learns the new ids only from its response). Writes in tasks `work` spawns
/// flush on their own.
pub async fn one_flush<F: Future>(work: F) -> (F::Output, Result<(), StoreError>) {
    OWED.scope(std::cell::RefCell::new(None), async {
        let made = work.await;
        let owed = OWED.with(|owed| owed.borrow_mut().take());
        let flushed = match owed {
            Some(store) => store.flush_now().await,
            None => Ok(()),
        };
        (made, flushed)
    })
    .await
}

/// Requests this process is serving (see [`serving_request`]).
static REQUESTS_SERVED: AtomicUsize = AtomicUsize::new(0);

/// How often a waiting group commit looks again at the requests in progress.
const WAIT_STEP: Duration = Duration::from_millis(1);

/// Counts a request as in progress until the guard drops. The flusher waits (up to the
/// commit delay) only while more requests are in progress than writes are queued: the
/// others may be about to write, and one flush can then cover them too.
pub fn serving_request() -> ServingRequest {
    REQUESTS_SERVED.fetch_add(1, Ordering::Relaxed);
    ServingRequest(())
}

/// A request in progress ([`serving_request`]).
pub struct ServingRequest(());

impl Drop for ServingRequest {
    fn drop(&mut self) {
        REQUESTS_SERVED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The waiters one flush answers: `first`, every one queued so far, and those that queue
/// before `deadline` while requests other than the waiters are in progress (a lone
/// client's write is flushed at once). Looked at again every `WAIT_STEP`, since a
/// request may end without writing.
fn gather<W>(rx: &mpsc::Receiver<W>, first: W, deadline: Instant) -> Vec<W> {
    let mut waiters = vec![first];
    loop {
        waiters.extend(rx.try_iter());
        let now = Instant::now();
        if now >= deadline || REQUESTS_SERVED.load(Ordering::Relaxed) <= waiters.len() {
            return waiters;
        }
        match rx.recv_timeout(WAIT_STEP.min(deadline - now)) {
            Ok(w) => waiters.push(w),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return waiters,
        }
    }
}

/// The flusher: takes the waiters [`gather`] collects, flushes once, answers them all. A
/// waiter's write happened before it queued, so the flush that starts after the dequeue
/// covers it. With `generations` (an on-disk store), each flush also carries its number
/// into `meta`, and the number goes into the file beside the store once it is on disk.
fn group_commit(
    db: sled::Db,
    rx: mpsc::Receiver<oneshot::Sender<Result<(), String>>>,
    flushes: Arc<AtomicU64>,
    commit_delay_us: Arc<AtomicU64>,
    mut generations: Option<(Tree, std::fs::File, u64)>,
) {
    while let Ok(first) = rx.recv() {
        let delay = Duration::from_micros(commit_delay_us.load(Ordering::Relaxed));
        let waiters = gather(&rx, first, Instant::now() + delay);
        let next = generations.as_ref().and_then(|(meta, _, n)| {
            let next = n + 1;
            meta.insert(GENERATION_KEY, &next.to_be_bytes()).ok().map(|_| next)
        });
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        if let (Ok(()), Some(next), Some((_, file, n))) = (&result, next, generations.as_mut()) {
            guard::record_generation(file, next);
            *n = next;
        }
        flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort on shutdown; acknowledged writes were flushed already. A failed
        // flush is not a clean close: the next open checks the store first.
        if self.db.flush().is_err()
            && let Some(g) = self.guard.as_mut()
        {
            g.not_clean();
        }
        // Stop the flusher and wait for it, so the database (and its lock) is released
        // when the store is dropped, not some time later.
        self.flusher.take();
        if let Some(t) = self.flusher_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
