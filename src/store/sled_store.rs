//! The embedded [`Store`] on sled 0.34.
//!
//! One tree per kind of record plus index trees. Values are JSON envelopes
//! `{"version": n, "record": …}`. The writes of every issuance are compare-and-swaps
//! ordered so that a reader never finds a record naming one not yet written (each sled
//! transaction takes sled's global lock exclusively and stalls every reader); the rarer
//! multi-record changes are sled transactions (the closures have no side effects: sled
//! may run them more than once). Durability: sled's
//! own timer flush is off; every mutating call waits for a flush that started after its
//! write, and a single flusher thread serves all waiters queued at once (group commit).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};
use tokio::sync::{mpsc, oneshot};

use super::{AccountCreation, AcmeStore, OAuthStore, PkiStore, ReplayStore, StoreError, Version, Versioned};
use crate::jose::Jkt;
use crate::model::oauth::{
    AuthorizationCode, CodeRedemption, Device, DeviceAuthorization, DeviceStatus, Grant, OAuthKey,
    PendingAuthorization, RefreshToken, RegisteredClient, SecretHash, Session,
};
use crate::model::{
    Account, AccountId, Authorization, AuthzId, CaChains, CaMaterial, ChallengeStatus, Identifier, IssuedCertificate,
    Order, OrderId, Serial,
};

mod guard;

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
    authzs: Tree,
    validating: Tree,
    certs: Tree,
    revoked: Tree,
    eab_kids: Tree,
    account_authzs: Tree,
    oauth: OAuthTrees,
    dpop_jti: Tree,
    jti_inserts: std::sync::atomic::AtomicU64,
    /// Replay keys held, and the most that may be (`limits.dpop_jti_max`).
    jti_live: std::sync::atomic::AtomicU64,
    jti_capacity: std::sync::atomic::AtomicU64,
    /// When a full store last purged (at most once a second, so that a full store
    /// answers at once instead of scanning for every proof).
    jti_purged_at: std::sync::atomic::AtomicI64,
    /// `None` only while dropping.
    flusher: Option<mpsc::UnboundedSender<oneshot::Sender<Result<(), String>>>>,
    flusher_thread: Option<std::thread::JoinHandle<()>>,
    flushes: Arc<std::sync::atomic::AtomicU64>,
    /// Last, so that it is dropped after sled has closed its files.
    guard: Option<guard::Guard>,
}

#[derive(Debug)]
struct OAuthTrees {
    keys: Tree,
    pending: Tree,
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
    <[u8; 8]>::try_from(value).map(Version::from_be_bytes).unwrap_or(0)
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
            grant: encode(grant, 1)?,
            refresh: refresh.map(|(h, r)| Ok::<_, StoreError>((h.0.as_bytes(), encode(r, 1)?))).transpose()?,
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

/// When a DPoP replay key's window ends (its value: big-endian seconds).
fn jti_expiry(value: &[u8]) -> i64 {
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
        let cache = cache_capacity_mib.saturating_mul(1024 * 1024);
        let (mut guard, expected) = guard::Guard::acquire(dir, cache)?;
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

    fn from_db(
        db: sled::Db,
        generations: Option<(std::fs::File, u64)>,
        guard: Option<guard::Guard>,
    ) -> Result<Self, StoreError> {
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        let (tx, rx) = mpsc::unbounded_channel();
        let flushes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = flushes.clone();
        let meta = tree("meta")?;
        let thread = std::thread::Builder::new()
            .name("idca-flush".into())
            .spawn({
                let db = db.clone();
                let generations = generations.map(|(file, n)| (meta.clone(), file, n));
                move || group_commit(db, rx, counter, generations)
            })
            .map_err(backend)?;
        let inner = Inner {
            meta,
            accounts: tree("accounts")?,
            account_keys: tree("account_keys")?,
            orders: tree("orders")?,
            account_orders: tree("account_orders")?,
            authzs: tree("authzs")?,
            validating: tree("validating")?,
            certs: tree("certs")?,
            revoked: tree("revoked")?,
            eab_kids: tree("eab_kids")?,
            account_authzs: tree("account_authzs")?,
            dpop_jti: tree("dpop_jti")?,
            jti_inserts: std::sync::atomic::AtomicU64::new(0),
            jti_live: std::sync::atomic::AtomicU64::new(db.open_tree("dpop_jti").map_err(backend)?.len() as u64),
            jti_capacity: std::sync::atomic::AtomicU64::new(u64::MAX),
            jti_purged_at: std::sync::atomic::AtomicI64::new(0),
            oauth: OAuthTrees {
                keys: tree("oauth_keys")?,
                pending: tree("oauth_pending")?,
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
            flusher_thread: Some(thread),
            flushes,
            db: db.clone(),
            guard,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Holds at most `max` unexpired DPoP replay keys (`limits.dpop_jti_max`).
    pub fn limit_dpop_jti(&self, max: u64) {
        self.inner.jti_capacity.store(max.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops the replay keys whose window has passed; returns how many remain.
    fn purge_dpop_jti(&self, now: i64) -> Result<u64, StoreError> {
        let tree = &self.inner.dpop_jti;
        let mut remaining = 0;
        for entry in tree.iter() {
            let (k, v) = entry.map_err(backend)?;
            if jti_expiry(&v) <= now {
                let _ = tree.compare_and_swap(k, Some(v), None as Option<&[u8]>).map_err(backend)?;
            } else {
                remaining += 1;
            }
        }
        self.inner.jti_live.store(remaining, std::sync::atomic::Ordering::Relaxed);
        Ok(remaining)
    }

    /// How many flushes the group-commit thread has made (for tests and metrics).
    pub fn flush_count(&self) -> u64 {
        self.inner.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until everything written before this call is on disk.
    async fn durable(&self) -> Result<(), StoreError> {
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

/// The flusher: takes every waiter queued so far, flushes once, answers them all. A
/// waiter's write happened before it queued, so the flush that starts after the dequeue
/// covers it. With `generations` (an on-disk store), each flush also carries its number
/// into `meta`, and the number goes into the file beside the store once it is on disk.
fn group_commit(
    db: sled::Db,
    mut rx: mpsc::UnboundedReceiver<oneshot::Sender<Result<(), String>>>,
    flushes: Arc<std::sync::atomic::AtomicU64>,
    mut generations: Option<(Tree, std::fs::File, u64)>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let next = generations.as_ref().and_then(|(meta, _, n)| {
            let next = n + 1;
            meta.insert(GENERATION_KEY, &next.to_be_bytes()).ok().map(|_| next)
        });
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        if let (Ok(()), Some(next), Some((_, file, n))) = (&result, next, generations.as_mut()) {
            guard::record_generation(file, next);
            *n = next;
        }
        flushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "flush failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

#[async_trait]
impl AcmeStore for SledStore {
    async fn create_account(&self, account: &Account) -> Result<AccountCreation, StoreError> {
        let i = &self.inner;
        let bytes = encode(account, 1)?;
        if account.eab_kid.is_none() {
            // No sled transaction on this path (see `update_authorization`): the record
            // first, then its key index by compare-and-swap, so a reader that finds the
            // key finds the account; losing the race (or a crash in between) leaves only
            // an unreachable record, which is removed here.
            let id = account.id.0.as_bytes();
            insert_new(&i.accounts, id, bytes)?;
            return match i.account_keys.compare_and_swap(account.jkt.0.as_bytes(), None as Option<&[u8]>, Some(id)) {
                Ok(Ok(())) => {
                    self.durable().await?;
                    Ok(AccountCreation::Created)
                }
                Ok(Err(cas)) => {
                    i.accounts.remove(id).map_err(backend)?;
                    let owner = cas.current.ok_or(StoreError::Conflict)?;
                    let existing = Self::get(&i.accounts, "accounts", &owner)?;
                    // Its creator may not have flushed yet; it is not reported before it is.
                    self.durable().await?;
                    Ok(AccountCreation::Existing(existing))
                }
                Err(e) => Err(backend(e)),
            };
        }
        let existing = (&i.accounts, &i.account_keys, &i.eab_kids)
            .transaction(|(accounts, keys, eab_kids)| {
                if let Some(id) = keys.get(account.jkt.0.as_bytes())? {
                    return match accounts.get(&id)? {
                        Some(b) => match decode::<Account>("accounts", &b) {
                            Ok(a) => Ok(Some(a)),
                            Err(e) => abort(e),
                        },
                        None => abort(StoreError::Corrupt { tree: "account_keys", message: "dangling key".into() }),
                    };
                }
                if let Some(kid) = &account.eab_kid {
                    if eab_kids.get(kid.as_bytes())?.is_some() {
                        return abort(StoreError::AlreadyExists);
                    }
                    eab_kids.insert(kid.as_bytes(), account.id.0.as_bytes())?;
                }
                accounts.insert(account.id.0.as_bytes(), bytes.as_slice())?;
                keys.insert(account.jkt.0.as_bytes(), account.id.0.as_bytes())?;
                Ok(None)
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(existing.map_or(AccountCreation::Created, AccountCreation::Existing))
    }

    async fn account(&self, id: &AccountId) -> Result<Versioned<Account>, StoreError> {
        Self::get(&self.inner.accounts, "accounts", id.0.as_bytes())
    }

    async fn account_by_key(&self, jkt: &Jkt) -> Result<Versioned<Account>, StoreError> {
        let id = self.inner.account_keys.get(jkt.0.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        Self::get(&self.inner.accounts, "accounts", &id)
    }

    async fn update_account(&self, account: &Account, seen: Version) -> Result<Version, StoreError> {
        let i = &self.inner;
        let bytes = encode(account, seen + 1)?;
        (&i.accounts, &i.account_keys)
            .transaction(|(accounts, keys)| {
                let key = account.id.0.as_bytes();
                let Some(old) = accounts.get(key)? else {
                    return abort(StoreError::NotFound);
                };
                let old = match decode::<Account>("accounts", &old) {
                    Ok(o) => o,
                    Err(e) => return abort(e),
                };
                if old.version != seen {
                    return abort(StoreError::Conflict);
                }
                if old.value.jkt != account.jkt {
                    if keys.get(account.jkt.0.as_bytes())?.is_some() {
                        return abort(StoreError::AlreadyExists);
                    }
                    keys.remove(old.value.jkt.0.as_bytes())?;
                    keys.insert(account.jkt.0.as_bytes(), key)?;
                }
                accounts.insert(key, bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen + 1)
    }

    async fn create_order(
        &self,
        order: &Order,
        new_authzs: &[Authorization],
        replaces: Option<(&IssuedCertificate, Version)>,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let order_bytes = encode(order, 1)?;
        let authz_bytes = new_authzs
            .iter()
            .map(|a| {
                let mut index = authz_index_prefix(&a.account, &a.identifier);
                index.extend_from_slice(a.id.0.as_bytes());
                Ok((a.id.0.as_bytes(), encode(a, 1)?, index))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let cert_bytes = replaces
            .map(|(c, seen)| Ok::<_, StoreError>((c.serial.0.as_bytes(), seen, encode(c, seen + 1)?)))
            .transpose()?;
        let index = order_index_key(&order.account, order.created, &order.id);
        if cert_bytes.is_none() {
            // No sled transaction on this path (see `update_authorization`): the
            // authorizations and their index first, then the order, then its index, so
            // a reader that finds an order finds all it names. A crash in between leaves
            // only records nothing acknowledged points to (pending authorizations of the
            // account, which a later order may reuse as RFC 8555 §7.4 allows). A failure
            // removes what this call wrote.
            let mut written = 0;
            let result = authz_bytes
                .iter()
                .try_for_each(|(id, bytes, authz_index)| {
                    insert_new(&i.authzs, id, bytes.clone())?;
                    written += 1;
                    i.account_authzs.insert(authz_index.as_slice(), &[]).map_err(backend).map(drop)
                })
                .and_then(|()| insert_new(&i.orders, order.id.0.as_bytes(), order_bytes));
            if let Err(e) = result {
                for (id, _, authz_index) in &authz_bytes[..written] {
                    i.account_authzs.remove(authz_index.as_slice()).map_err(backend)?;
                    i.authzs.remove(id).map_err(backend)?;
                }
                return Err(e);
            }
            i.account_orders.insert(index, &[]).map_err(backend)?;
            return self.durable().await;
        }
        (&i.orders, &i.account_orders, &i.authzs, &i.certs, &i.account_authzs)
            .transaction(|(orders, account_orders, authzs, certs, account_authzs)| {
                if orders.get(order.id.0.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists);
                }
                if let Some((serial, seen, bytes)) = &cert_bytes {
                    if tx_version(certs, "certs", serial)? != *seen {
                        return abort(StoreError::Conflict);
                    }
                    certs.insert(*serial, bytes.as_slice())?;
                }
                for (id, bytes, index) in &authz_bytes {
                    if authzs.get(id)?.is_some() {
                        return abort(StoreError::AlreadyExists);
                    }
                    authzs.insert(*id, bytes.as_slice())?;
                    account_authzs.insert(index.as_slice(), &[])?;
                }
                orders.insert(order.id.0.as_bytes(), order_bytes.as_slice())?;
                account_orders.insert(index.as_slice(), &[])?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn order(&self, id: &OrderId) -> Result<Versioned<Order>, StoreError> {
        Self::get(&self.inner.orders, "orders", id.0.as_bytes())
    }

    async fn account_orders(
        &self,
        account: &AccountId,
        page: usize,
        per_page: usize,
    ) -> Result<(Vec<OrderId>, bool), StoreError> {
        let mut prefix = account.0.as_bytes().to_vec();
        prefix.push(0);
        let skip = page.saturating_mul(per_page);
        let mut ids = Vec::new();
        let mut more = false;
        for entry in self.inner.account_orders.scan_prefix(&prefix).skip(skip) {
            let (key, _) = entry.map_err(backend)?;
            if ids.len() == per_page {
                more = true;
                break;
            }
            let id = key.get(prefix.len() + 8..).unwrap_or_default();
            ids.push(OrderId(String::from_utf8_lossy(id).into_owned()));
        }
        Ok((ids, more))
    }

    async fn authorization(&self, id: &AuthzId) -> Result<Versioned<Authorization>, StoreError> {
        Self::get(&self.inner.authzs, "authzs", id.0.as_bytes())
    }

    async fn account_authorizations(
        &self,
        account: &AccountId,
        identifier: &Identifier,
    ) -> Result<Vec<AuthzId>, StoreError> {
        let prefix = authz_index_prefix(account, identifier);
        self.inner
            .account_authzs
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k.map_err(backend)?;
                Ok(AuthzId(String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned()))
            })
            .collect()
    }

    async fn update_authorization(&self, authz: &Authorization, seen: Version) -> Result<Version, StoreError> {
        let i = &self.inner;
        let bytes = encode(authz, seen + 1)?;
        let processing = authz.challenges.iter().any(|c| c.status == ChallengeStatus::Processing);
        // No sled transaction (each takes sled's global lock exclusively, stalling every
        // read; this runs twice per issuance): a compare-and-swap on the authorization,
        // and the `validating` index kept as a resumption hint around it. The index entry
        // holds the version that set it; it is written before an authorization says
        // processing and cleared after it stops (only if no later version set it), so a
        // crash or a race leaves at most a stale entry, which `authorizations_processing`
        // drops, and never a processing authorization without one.
        let key = authz.id.0.as_bytes();
        if processing {
            i.validating.insert(key, &(seen + 1).to_be_bytes()).map_err(backend)?;
        }
        replace_versioned(&i.authzs, "authzs", key, seen, bytes)?;
        if !processing
            && let Some(set_by) = i.validating.get(key).map_err(backend)?
            && index_version(&set_by) <= seen + 1
        {
            // Lost only to a later writer, whose entry then stays.
            let _ = i.validating.compare_and_swap(key, Some(set_by), None as Option<&[u8]>).map_err(backend)?;
        }
        self.durable().await?;
        Ok(seen + 1)
    }

    async fn authorizations_processing(&self) -> Result<Vec<AuthzId>, StoreError> {
        let i = &self.inner;
        let mut ids = Vec::new();
        for entry in i.validating.iter() {
            let (key, set_by) = entry.map_err(backend)?;
            let id = AuthzId(String::from_utf8_lossy(&key).into_owned());
            let processing = match Self::get::<Authorization>(&i.authzs, "authzs", &key) {
                Ok(a) => a.value.challenges.iter().any(|c| c.status == ChallengeStatus::Processing),
                Err(StoreError::NotFound) => false,
                Err(e) => return Err(e),
            };
            if processing {
                ids.push(id);
            } else {
                // A stale hint (see update_authorization): drop it unless rewritten meanwhile.
                let _ = i.validating.compare_and_swap(&key, Some(set_by), None as Option<&[u8]>).map_err(backend)?;
            }
        }
        Ok(ids)
    }

    async fn finalize_order(&self, order: &Order, seen: Version, cert: &IssuedCertificate) -> Result<(), StoreError> {
        let i = &self.inner;
        // No sled transaction (see `update_authorization`): the certificate first, then
        // the order by compare-and-swap. A lost race removes the certificate again; a
        // crash in between leaves a signed certificate on record that no order names,
        // and the order still ready to finalize.
        let serial = cert.serial.0.as_bytes();
        insert_new(&i.certs, serial, encode(cert, 1)?)?;
        if let Err(e) = replace_versioned(&i.orders, "orders", order.id.0.as_bytes(), seen, encode(order, seen + 1)?) {
            i.certs.remove(serial).map_err(backend)?;
            return Err(e);
        }
        self.durable().await
    }
}

#[async_trait]
impl OAuthStore for SledStore {
    async fn oauth_keys(&self) -> Result<Vec<OAuthKey>, StoreError> {
        let mut keys = self
            .inner
            .oauth
            .keys
            .iter()
            .values()
            .map(|v| decode::<OAuthKey>("oauth_keys", &v.map_err(backend)?).map(|v| v.value))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|k| k.created);
        Ok(keys)
    }

    async fn rotate_oauth_key(&self, key: &OAuthKey) -> Result<(), StoreError> {
        let bytes = encode(key, 1)?;
        let now = key.created;
        self.inner.oauth.keys.insert(key.kid.as_bytes(), bytes).map_err(backend)?;
        // Retire the others (outside the insert: a crash between leaves two active keys,
        // which is harmless: the newest one signs).
        for entry in self.inner.oauth.keys.iter() {
            let (k, v) = entry.map_err(backend)?;
            let mut old = decode::<OAuthKey>("oauth_keys", &v)?.value;
            if old.kid != key.kid && old.retired.is_none() {
                old.retired = Some(now);
                self.inner.oauth.keys.insert(k, encode(&old, 1)?).map_err(backend)?;
            }
        }
        self.durable().await
    }

    async fn put_pending_authorization(&self, id: &str, p: &PendingAuthorization) -> Result<(), StoreError> {
        self.inner.oauth.pending.insert(id.as_bytes(), encode(p, 1)?).map_err(backend)?;
        self.durable().await
    }

    async fn pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError> {
        Self::get(&self.inner.oauth.pending, "oauth_pending", id.as_bytes()).map(|v| v.value)
    }

    async fn take_pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError> {
        let old = self.inner.oauth.pending.remove(id.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await?;
        decode("oauth_pending", &old).map(|v| v.value)
    }

    async fn put_session(&self, id: &SecretHash, session: &Session) -> Result<(), StoreError> {
        self.inner.oauth.sessions.insert(id.0.as_bytes(), encode(session, 1)?).map_err(backend)?;
        self.durable().await
    }

    async fn session(&self, id: &SecretHash) -> Result<Session, StoreError> {
        Self::get(&self.inner.oauth.sessions, "oauth_sessions", id.0.as_bytes()).map(|v| v.value)
    }

    async fn put_code(&self, hash: &SecretHash, code: &AuthorizationCode) -> Result<(), StoreError> {
        self.inner.oauth.codes.insert(hash.0.as_bytes(), encode(code, 1)?).map_err(backend)?;
        self.durable().await
    }

    async fn code(&self, hash: &SecretHash) -> Result<AuthorizationCode, StoreError> {
        Self::get(&self.inner.oauth.codes, "oauth_codes", hash.0.as_bytes()).map(|v| v.value)
    }

    async fn redeem_code(
        &self,
        hash: &SecretHash,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<CodeRedemption, StoreError> {
        let o = &self.inner.oauth;
        let write = GrantWrite::new(grant, refresh)?;
        let result = (&o.codes, &o.grants, &o.refresh)
            .transaction(|(codes, grants, refresh_tree)| {
                let Some(bytes) = codes.get(hash.0.as_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut code = match decode::<AuthorizationCode>("oauth_codes", &bytes) {
                    Ok(c) => c.value,
                    Err(e) => return abort(e),
                };
                if let Some(previous) = &code.redeemed {
                    // Reuse: revoke what the first redemption issued.
                    if let Some(g) = grants.get(previous.as_bytes())? {
                        match decode::<Grant>("oauth_grants", &g) {
                            Ok(mut g) => {
                                g.value.revoked = true;
                                match encode(&g.value, g.version + 1) {
                                    Ok(b) => grants.insert(previous.as_bytes(), b)?,
                                    Err(e) => return abort(e),
                                };
                            }
                            Err(e) => return abort(e),
                        }
                    }
                    return Ok(CodeRedemption::Replayed { grant: previous.clone() });
                }
                code.redeemed = Some(grant.id.clone());
                match encode(&code, 2) {
                    Ok(b) => codes.insert(hash.0.as_bytes(), b)?,
                    Err(e) => return abort(e),
                };
                write.insert(grants, refresh_tree)?;
                Ok(CodeRedemption::Redeemed(Box::new(code)))
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(result)
    }

    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        let o = &self.inner.oauth;
        let write = GrantWrite::new(grant, refresh)?;
        (&o.grants, &o.refresh)
            .transaction(|(grants, refresh_tree)| {
                write.insert(grants, refresh_tree)?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        Self::get(&self.inner.oauth.grants, "oauth_grants", id.as_bytes()).map(|v| v.value)
    }

    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        let grants = &self.inner.oauth.grants;
        loop {
            let current = Self::get::<Grant>(grants, "oauth_grants", id.as_bytes())?;
            if current.value.revoked {
                return Ok(());
            }
            let mut g = current.value.clone();
            g.revoked = true;
            let old = encode(&current.value, current.version)?;
            let new = encode(&g, current.version + 1)?;
            match grants.compare_and_swap(id.as_bytes(), Some(old), Some(new)).map_err(backend)? {
                Ok(()) => return self.durable().await,
                Err(_) => continue,
            }
        }
    }

    async fn refresh_token(&self, hash: &SecretHash) -> Result<Versioned<RefreshToken>, StoreError> {
        Self::get(&self.inner.oauth.refresh, "oauth_refresh", hash.0.as_bytes())
    }

    async fn rotate_refresh_token(
        &self,
        old: &SecretHash,
        seen: Version,
        new: (&SecretHash, &RefreshToken),
    ) -> Result<(), StoreError> {
        let new_bytes = encode(new.1, 1)?;
        self.inner
            .oauth
            .refresh
            .transaction(|refresh| {
                let Some(bytes) = refresh.get(old.0.as_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut current = match decode::<RefreshToken>("oauth_refresh", &bytes) {
                    Ok(c) => c,
                    Err(e) => return abort(e),
                };
                if current.version != seen || current.value.used {
                    return abort(StoreError::Conflict);
                }
                current.value.used = true;
                match encode(&current.value, seen + 1) {
                    Ok(b) => refresh.insert(old.0.as_bytes(), b)?,
                    Err(e) => return abort(e),
                };
                refresh.insert(new.0.0.as_bytes(), new_bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn create_device_authorization(&self, hash: &SecretHash, d: &DeviceAuthorization) -> Result<(), StoreError> {
        let o = &self.inner.oauth;
        let bytes = encode(d, 1)?;
        (&o.devices, &o.user_codes)
            .transaction(|(devices, user_codes)| {
                if user_codes.get(d.user_code.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists);
                }
                user_codes.insert(d.user_code.as_bytes(), hash.0.as_bytes())?;
                devices.insert(hash.0.as_bytes(), bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn device_authorization(&self, hash: &SecretHash) -> Result<Versioned<DeviceAuthorization>, StoreError> {
        Self::get(&self.inner.oauth.devices, "oauth_devices", hash.0.as_bytes())
    }

    async fn device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<(SecretHash, Versioned<DeviceAuthorization>), StoreError> {
        let hash =
            self.inner.oauth.user_codes.get(user_code.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        let hash = SecretHash(String::from_utf8_lossy(&hash).into_owned());
        let d = self.device_authorization(&hash).await?;
        Ok((hash, d))
    }

    async fn update_device_authorization(
        &self,
        hash: &SecretHash,
        d: &DeviceAuthorization,
        seen: Version,
    ) -> Result<Version, StoreError> {
        let bytes = encode(d, seen + 1)?;
        self.inner
            .oauth
            .devices
            .transaction(|devices| {
                if tx_version(devices, "oauth_devices", hash.0.as_bytes())? != seen {
                    return abort(StoreError::Conflict);
                }
                devices.insert(hash.0.as_bytes(), bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen + 1)
    }

    async fn redeem_device_authorization(
        &self,
        hash: &SecretHash,
        seen: Version,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError> {
        let o = &self.inner.oauth;
        let write = GrantWrite::new(grant, refresh)?;
        (&o.devices, &o.grants, &o.refresh)
            .transaction(|(devices, grants, refresh_tree)| {
                let Some(bytes) = devices.get(hash.0.as_bytes())? else {
                    return abort(StoreError::NotFound);
                };
                let mut d = match decode::<DeviceAuthorization>("oauth_devices", &bytes) {
                    Ok(d) => d,
                    Err(e) => return abort(e),
                };
                if d.version != seen || !matches!(d.value.status, DeviceStatus::Approved { .. }) {
                    return abort(StoreError::Conflict);
                }
                d.value.status = DeviceStatus::Redeemed;
                match encode(&d.value, seen + 1) {
                    Ok(b) => devices.insert(hash.0.as_bytes(), b)?,
                    Err(e) => return abort(e),
                };
                write.insert(grants, refresh_tree)?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn create_client(&self, client: &RegisteredClient) -> Result<(), StoreError> {
        let bytes = encode(client, 1)?;
        let prev = self
            .inner
            .oauth
            .clients
            .compare_and_swap(client.client_id.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(backend)?;
        if prev.is_err() {
            return Err(StoreError::AlreadyExists);
        }
        self.durable().await
    }

    async fn registered_client(&self, client_id: &str) -> Result<Versioned<RegisteredClient>, StoreError> {
        Self::get(&self.inner.oauth.clients, "oauth_clients", client_id.as_bytes())
    }

    async fn update_client(&self, client: &RegisteredClient, seen: Version) -> Result<Version, StoreError> {
        let bytes = encode(client, seen + 1)?;
        self.inner
            .oauth
            .clients
            .transaction(|clients| {
                if tx_version(clients, "oauth_clients", client.client_id.as_bytes())? != seen {
                    return abort(StoreError::Conflict);
                }
                clients.insert(client.client_id.as_bytes(), bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen + 1)
    }

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError> {
        self.inner.oauth.clients.remove(client_id.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await
    }

    async fn create_device(&self, device: &Device) -> Result<(), StoreError> {
        let prev = self
            .inner
            .oauth
            .user_devices
            .compare_and_swap(device.id.as_bytes(), None as Option<&[u8]>, Some(encode(device, 1)?))
            .map_err(backend)?;
        if prev.is_err() {
            return Err(StoreError::AlreadyExists);
        }
        self.durable().await
    }

    async fn device(&self, id: &str) -> Result<Device, StoreError> {
        Self::get(&self.inner.oauth.user_devices, "user_devices", id.as_bytes()).map(|v| v.value)
    }
}

#[async_trait]
impl PkiStore for SledStore {
    async fn ca_material(&self) -> Result<Option<CaMaterial>, StoreError> {
        match Self::get(&self.inner.meta, "meta", CA_KEY) {
            Ok(v) => Ok(Some(v.value)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn init_ca_material(&self, material: &CaMaterial) -> Result<CaMaterial, StoreError> {
        let bytes = encode(material, 1)?;
        let previous = self.inner.meta.compare_and_swap(CA_KEY, None as Option<&[u8]>, Some(bytes)).map_err(backend)?;
        self.durable().await?;
        match previous {
            Ok(()) => Ok(material.clone()),
            Err(cas) => match cas.current {
                Some(current) => Ok(decode::<CaMaterial>("meta", &current)?.value),
                None => Err(StoreError::Conflict),
            },
        }
    }

    async fn rotate_ca_material(&self, seen: &CaMaterial, new: &CaMaterial) -> Result<(), StoreError> {
        let new_bytes = encode(new, 1)?;
        self.inner
            .meta
            .transaction(|meta| {
                let current = match meta.get(CA_KEY)? {
                    Some(b) => match decode::<CaMaterial>("meta", &b) {
                        Ok(v) => v.value,
                        Err(e) => return abort(e),
                    },
                    None => return abort(StoreError::NotFound),
                };
                if &current != seen {
                    return abort(StoreError::Conflict);
                }
                let mut retired: Vec<CaMaterial> = match meta.get(RETIRED_CA_KEY)? {
                    Some(b) => match decode("meta", &b) {
                        Ok(v) => v.value,
                        Err(e) => return abort(e),
                    },
                    None => Vec::new(),
                };
                retired.push(current);
                let retired_bytes = match encode(&retired, 1) {
                    Ok(b) => b,
                    Err(e) => return abort(e),
                };
                meta.insert(RETIRED_CA_KEY, retired_bytes)?;
                meta.insert(CA_KEY, new_bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn retired_ca_material(&self) -> Result<Vec<CaMaterial>, StoreError> {
        match Self::get(&self.inner.meta, "meta", RETIRED_CA_KEY) {
            Ok(v) => Ok(v.value),
            Err(StoreError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn ca_chains(&self) -> Result<Option<CaChains>, StoreError> {
        match Self::get(&self.inner.meta, "meta", CA_CHAINS_KEY) {
            Ok(v) => Ok(Some(v.value)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn swap_ca_chains(&self, seen: Option<&CaChains>, new: &CaChains) -> Result<(), StoreError> {
        let meta = &self.inner.meta;
        // The bytes `seen` was read from decide the swap: a decoded match is checked
        // first, then those exact bytes must still be there.
        let current = meta.get(CA_CHAINS_KEY).map_err(backend)?;
        let current_value = current.as_ref().map(|b| decode::<CaChains>("meta", b)).transpose()?.map(|v| v.value);
        if current_value.as_ref() != seen {
            return Err(StoreError::Conflict);
        }
        let swapped = meta.compare_and_swap(CA_CHAINS_KEY, current, Some(encode(new, 1)?)).map_err(backend)?;
        swapped.map_err(|_| StoreError::Conflict)?;
        self.durable().await
    }

    async fn certificate(&self, serial: &Serial) -> Result<Versioned<IssuedCertificate>, StoreError> {
        Self::get(&self.inner.certs, "certs", serial.0.as_bytes())
    }

    async fn create_certificate(&self, cert: &IssuedCertificate) -> Result<(), StoreError> {
        insert_new(&self.inner.certs, cert.serial.0.as_bytes(), encode(cert, 1)?)?;
        self.durable().await
    }

    async fn certificates(&self) -> Result<Vec<Versioned<IssuedCertificate>>, StoreError> {
        self.inner
            .certs
            .iter()
            .map(|entry| {
                let (_, v) = entry.map_err(backend)?;
                decode("certs", &v)
            })
            .collect()
    }

    async fn update_certificate(&self, cert: &IssuedCertificate, seen: Version) -> Result<Version, StoreError> {
        let i = &self.inner;
        let bytes = encode(cert, seen + 1)?;
        let revoked = cert.revoked.map(|r| serde_json::to_vec(&r)).transpose().map_err(backend)?;
        (&i.certs, &i.revoked)
            .transaction(|(certs, revoked_tree)| {
                let key = cert.serial.0.as_bytes();
                if tx_version(certs, "certs", key)? != seen {
                    return abort(StoreError::Conflict);
                }
                certs.insert(key, bytes.as_slice())?;
                match &revoked {
                    Some(r) => revoked_tree.insert(key, r.as_slice())?,
                    None => revoked_tree.remove(key)?,
                };
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await?;
        Ok(seen + 1)
    }

    async fn revoked_certificates(&self) -> Result<Vec<(Serial, crate::model::Revocation)>, StoreError> {
        self.inner
            .revoked
            .iter()
            .map(|entry| {
                let (k, v) = entry.map_err(backend)?;
                let r = serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt { tree: "revoked", message: e.to_string() })?;
                Ok((Serial(String::from_utf8_lossy(&k).into_owned()), r))
            })
            .collect()
    }
}

#[async_trait]
impl ReplayStore for SledStore {
    async fn dpop_nonce_secret(&self, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        const KEY: &[u8] = b"dpop_nonce_secret";
        let previous = self.inner.meta.compare_and_swap(KEY, None as Option<&[u8]>, Some(fresh)).map_err(backend)?;
        self.durable().await?;
        match previous {
            Ok(()) => Ok(fresh.to_vec()),
            Err(cas) => cas.current.map(|v| v.to_vec()).ok_or(StoreError::Conflict),
        }
    }

    async fn remember_dpop_jti(&self, key: &str, expires: i64, now: i64) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let i = &self.inner;
        let tree = &i.dpop_jti;
        let fresh = loop {
            let current = tree.get(key.as_bytes()).map_err(backend)?;
            let expired = current.as_ref().is_some_and(|v| jti_expiry(v) <= now);
            if current.is_some() && !expired {
                break false;
            }
            let new_entry = current.is_none();
            let capacity = i.jti_capacity.load(Relaxed);
            if new_entry
                && i.jti_live.load(Relaxed) >= capacity
                && (i.jti_purged_at.swap(now, Relaxed) >= now || self.purge_dpop_jti(now)? >= capacity)
            {
                return Err(StoreError::Full(
                    "too many DPoP proofs are being remembered for replay detection (limits.dpop_jti_max); retry \
                     later"
                        .into(),
                ));
            }
            match tree.compare_and_swap(key.as_bytes(), current, Some(&expires.to_be_bytes()[..])).map_err(backend)? {
                Ok(()) => {
                    if new_entry {
                        i.jti_live.fetch_add(1, Relaxed);
                    }
                    break true;
                }
                Err(_) => continue,
            }
        };
        if fresh {
            // Every 1024 proofs, drop the entries whose window has passed.
            if i.jti_inserts.fetch_add(1, Relaxed) % 1024 == 1023 {
                self.purge_dpop_jti(now)?;
            }
            self.durable().await?;
        }
        Ok(fresh)
    }

    async fn put_device_nonce(&self, device: &str, nonce: &str, expires: i64) -> Result<(), StoreError> {
        let mut value = expires.to_be_bytes().to_vec();
        value.extend_from_slice(nonce.as_bytes());
        self.inner.oauth.device_nonces.insert(device.as_bytes(), value).map_err(backend)?;
        self.durable().await
    }

    async fn take_device_nonce(&self, device: &str) -> Result<(String, i64), StoreError> {
        let v =
            self.inner.oauth.device_nonces.remove(device.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await?;
        let mut b = [0u8; 8];
        b.copy_from_slice(v.get(..8).ok_or(StoreError::Corrupt { tree: "device_nonces", message: "short".into() })?);
        Ok((String::from_utf8_lossy(v.get(8..).unwrap_or_default()).into_owned(), i64::from_be_bytes(b)))
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
