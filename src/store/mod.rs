//! All state goes through the [`Store`] trait.
//!
//! Operations are named for the domain and are atomic in each backend. Every call that
//! changes state returns only once the change is durable, so a response sent after it
//! survives a `kill -9`; inside [`one_flush`] (an OAuth or client-identity request on sled) the calls leave
//! that to one flush at its end, before the response. Updates are compare-and-swap on a
//! [`Version`]; a lost race is [`StoreError::Conflict`], never a silent overwrite.
//! [`SledStore`] is the embedded implementation.

#[cfg(test)]
pub(crate) mod conformance;
mod local_limits;
mod postgres_store;
mod quota;
mod sled_store;
mod snapshot;

pub use postgres_store::{PgStore, database_url};
pub use quota::{QUOTA_RETRY_AFTER, Quota};
pub use sled_store::{ServingRequest, SledStore, copy_dir, one_flush, serving_request};
pub use snapshot::Snapshot;

/// The `shared_secret` DPoP nonces are made with.
pub const DPOP_NONCE_SECRET: &str = "dpop_nonce_secret";
/// The `shared_secret` shared ACME nonces are made with.
pub const ACME_NONCE_KEY: &str = "acme_nonce_key";

use async_trait::async_trait;

use crate::clock::UnixTime;
use crate::jose::Jkt;
use crate::model::oauth::{
    AuthorizationCode, CodeRedemption, Device, DeviceAuthorization, Grant, OAuthKey, PendingAuthorization,
    PushedAuthorization, RefreshToken, RegisteredClient, SecretHash, Session,
};
use crate::model::{
    Account, AccountId, Authorization, AuthzId, CaChains, CaMaterial, Identifier, IssuedCertificate, Order, OrderId,
    Serial,
};

/// A record's version, bumped by every write; the token of compare-and-swap updates.
/// Only a store makes and compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a record's first write.
    pub const FIRST: Version = Version(1);

    /// The version the next write gives.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

/// A record with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record under that id.
    #[error("not found")]
    NotFound,
    /// The record changed since it was read (compare-and-swap lost).
    #[error("the record was changed concurrently")]
    Conflict,
    /// A unique key (such as an account key thumbprint) is already taken.
    #[error("already exists")]
    AlreadyExists,
    /// A stored record cannot be decoded.
    #[error("corrupt record in {tree}: {message}")]
    Corrupt { tree: &'static str, message: String },
    /// A bounded part of the store is full (`limits.dpop_jti_max`).
    #[error("{0}")]
    Full(String),
    /// The live data is past `storage.quota_bytes`: no new objects until it falls.
    #[error(
        "the store holds {used} bytes of live data, past its quota of {limit} (storage.quota_bytes); \
         it takes new objects again once expired records are purged"
    )]
    OverQuota { used: u64, limit: u64 },
    /// The store's files are missing, damaged or have lost writes; nothing was changed.
    #[error(
        "the store at {path} is damaged: {problem}. Nothing was changed; restore it (with the db.* files beside it) \
         from a backup, or move it away to start afresh"
    )]
    Damaged { path: String, problem: String },
    /// A value the backend cannot hold: PostgreSQL refuses a NUL character in text and
    /// JSON (SQLSTATE 22021, 22P05). Nothing was written; it came from the request.
    #[error("a value holds a character the store cannot keep (NUL): {0}")]
    Unstorable(String),
    /// The backend failed (I/O, lock, …).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The backend cannot be reached (the database is down or restarting); the request
    /// may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database aborted a transaction to keep it serializable (SQLSTATE 40001,
    /// 40P01); the store retries it a few times before giving up with this.
    #[error("storage contention: {0}")]
    Retry(String),
}

/// What `create_account` found.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountCreation {
    /// The account was stored.
    Created,
    /// An account with the same key already exists (RFC 8555 §7.3.1).
    Existing(Versioned<Account>),
}

/// idca's state: the domains' stores together. Object-safe, so the application holds
/// an `Arc<dyn Store>`; every backend implements the five traits and gets this one.
pub trait Store: AcmeStore + OAuthStore + PkiStore + ReplayStore + LimitStore + Send + Sync + std::fmt::Debug {}

impl<T: AcmeStore + OAuthStore + PkiStore + ReplayStore + LimitStore + Send + Sync + std::fmt::Debug> Store for T {}

/// How a counted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Failed,
    Succeeded,
    /// Neither (the request failed for another reason).
    Abandoned,
}

/// A lockout rule: after `max` failures under one key, each within `lockout_secs` of
/// the one before, the key waits until `lockout_secs` after the last. Attempts still
/// being checked count as failures until they end, so a burst cannot pass the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRule {
    pub max: u32,
    pub lockout_secs: i64,
}

/// How long an attempt being checked holds its place (a crashed instance's attempts
/// free theirs after this).
pub const ATTEMPT_RESERVATION_SECS: i64 = 30;

/// Counters every instance shares: lockouts after failed attempts, and request rates.
/// Each decision is one atomic step, so a burst spread over instances stops at the limit.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Counts an attempt about to be checked under `key`; `Err(seconds to wait)` if
    /// failures and attempts in flight already reach `rule.max`. Each `Ok` is followed by
    /// one [`LimitStore::end_attempt`].
    async fn begin_attempt(&self, key: &str, rule: AttemptRule, now: UnixTime) -> Result<Result<(), i64>, StoreError>;

    /// Ends an attempt counted by `begin_attempt`: a failure counts, a success clears
    /// the key's failures.
    async fn end_attempt(&self, key: &str, rule: AttemptRule, how: Attempt, now: UnixTime) -> Result<(), StoreError>;

    /// Takes one request from `key`'s allowance of `per_minute` a minute (bursts of up to
    /// `per_minute`), by GCRA (Boulder's limiter); `Err(seconds until one is allowed)`.
    async fn take_rate(&self, key: &str, per_minute: u32, now_ms: i64) -> Result<Result<(), u64>, StoreError>;

    /// Removes at most `batch` counters that no longer limit anything at `now`.
    async fn purge_expired_limits(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError>;
    /// The quota every object-creating operation checks first (`storage.quota_bytes`).
    fn quota(&self) -> &Quota;
    /// The bytes of live data (an estimate from the backend's own accounting, which
    /// falls when records are removed, unlike the files' size).
    async fn live_bytes(&self) -> Result<u64, StoreError>;
    /// Measures the live data into [`LimitStore::quota`]; whether it is past the quota.
    async fn measure_quota(&self) -> Result<bool, StoreError> {
        let used = self.live_bytes().await?;
        self.quota().record(used);
        Ok(self.quota().is_over())
    }
}

/// GCRA (the generic cell rate algorithm) for `per_minute` requests a minute: from the
/// theoretical arrival time `tat` (ms) stored for a key, the new one if the request is
/// allowed at `now_ms`, or the seconds to wait. `per_minute` is at least 1.
pub fn gcra(tat: Option<i64>, per_minute: u32, now_ms: i64) -> Result<i64, u64> {
    let (increment, burst) = gcra_steps(per_minute);
    let next = tat.unwrap_or(now_ms).max(now_ms) + increment;
    if next - burst <= now_ms {
        Ok(next)
    } else {
        Err(u64::try_from((next - burst - now_ms + 999) / 1000).unwrap_or(1).max(1))
    }
}

/// GCRA's emission interval and burst offset (ms) for `per_minute` a minute.
pub fn gcra_steps(per_minute: u32) -> (i64, i64) {
    let increment = 60_000 / i64::from(per_minute.max(1));
    (increment, increment * i64::from(per_minute.max(1)))
}

/// ACME accounts, orders and authorizations (RFC 8555).
#[async_trait]
pub trait AcmeStore: Send + Sync {
    /// Stores a new account unless one with the same key exists; `AlreadyExists` if its
    /// external account binding kid is bound to another account already.
    async fn create_account(&self, account: &Account) -> Result<AccountCreation, StoreError>;

    async fn account(&self, id: &AccountId) -> Result<Versioned<Account>, StoreError>;

    async fn account_by_key(&self, jkt: &Jkt) -> Result<Versioned<Account>, StoreError>;

    /// Writes `account` if it is still at `seen`; keeps the key index in step
    /// (`AlreadyExists` if the new key belongs to another account).
    async fn update_account(&self, account: &Account, seen: Version) -> Result<Version, StoreError>;

    /// Stores an order with the authorizations it created (a reader that finds the
    /// order finds them); when it replaces a certificate (RFC 9773), also writes that
    /// certificate (if still at its version) with `replaced_by` set, atomically.
    async fn create_order(
        &self,
        order: &Order,
        new_authzs: &[Authorization],
        replaces: Option<(&IssuedCertificate, Version)>,
    ) -> Result<(), StoreError>;

    async fn order(&self, id: &OrderId) -> Result<Versioned<Order>, StoreError>;

    /// Up to `per_page` of an account's orders, oldest first, from the order at `from`
    /// (its `created` and id; `None`: the oldest), and the first order of the next page.
    /// A range read from a position, so every page costs the same however deep it is.
    async fn account_orders(
        &self,
        account: &AccountId,
        from: Option<(UnixTime, &OrderId)>,
        per_page: usize,
    ) -> Result<(Vec<OrderId>, Option<OrderId>), StoreError>;

    async fn authorization(&self, id: &AuthzId) -> Result<Versioned<Authorization>, StoreError>;

    /// The authorizations an account holds for an identifier, oldest first.
    async fn account_authorizations(
        &self,
        account: &AccountId,
        identifier: &Identifier,
    ) -> Result<Vec<AuthzId>, StoreError>;

    /// Writes `authz` if it is still at `seen`.
    async fn update_authorization(&self, authz: &Authorization, seen: Version) -> Result<Version, StoreError>;

    /// Authorizations with a challenge in `processing`, whose validation must resume
    /// after a restart.
    async fn authorizations_processing(&self) -> Result<Vec<AuthzId>, StoreError>;

    /// Takes the validation of `id` for `owner` until `until`: `true` if its authorization
    /// is processing and no other owner holds a lease on it that runs past `now` (a
    /// holder renews with the same call). One atomic step: no two owners validate at once.
    async fn claim_validation(
        &self,
        id: &AuthzId,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Takes up to `max` processing authorizations whose lease ran out before `now` (their
    /// instance died) for `owner` until `until`; returns those taken. Two instances
    /// asking at once never get the same one.
    async fn claim_expired_validations(
        &self,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
        max: usize,
    ) -> Result<Vec<AuthzId>, StoreError>;

    /// The account's orders not finalized yet whose expiry is after `now` (for
    /// `limits.pending_orders_per_account`), at most `max`.
    async fn open_orders(&self, account: &AccountId, now: UnixTime, max: usize) -> Result<Vec<OrderId>, StoreError>;

    /// Writes the finalized `order` (if still at `seen`, `Conflict` otherwise) and its
    /// certificate; the certificate is on record before the order names it.
    async fn finalize_order(&self, order: &Order, seen: Version, cert: &IssuedCertificate) -> Result<(), StoreError>;
}

/// The authorization server: signing keys, pending authorizations, sessions, codes,
/// grants and refresh tokens, devices, registered clients, device authorizations.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// OAuth signing keys, oldest first.
    async fn oauth_keys(&self) -> Result<Vec<OAuthKey>, StoreError>;

    /// Adds a signing key and retires every other active one (key rotation).
    async fn rotate_oauth_key(&self, key: &OAuthKey) -> Result<(), StoreError>;

    /// Keeps an authorization request while the user logs in.
    async fn put_pending_authorization(&self, id: &str, p: &PendingAuthorization) -> Result<(), StoreError>;

    async fn pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError>;

    /// Removes and returns it, once.
    async fn take_pending_authorization(&self, id: &str) -> Result<PendingAuthorization, StoreError>;
    /// Keeps a pushed authorization request (RFC 9126 §2.2) under the hash of its
    /// `request_uri`; durable before the `201`.
    async fn put_pushed_authorization(&self, hash: &SecretHash, p: &PushedAuthorization) -> Result<(), StoreError>;
    /// Takes a pushed request once (RFC 9126 §4: one-time use), only for the client that
    /// pushed it and before it expires; one atomic step decides (`NotFound` otherwise, and
    /// a wrong client leaves it in place).
    async fn take_pushed_authorization(
        &self,
        hash: &SecretHash,
        client_id: &str,
        now: UnixTime,
    ) -> Result<PushedAuthorization, StoreError>;

    async fn put_session(&self, id: &SecretHash, session: &Session) -> Result<(), StoreError>;

    async fn session(&self, id: &SecretHash) -> Result<Session, StoreError>;

    async fn put_code(&self, hash: &SecretHash, code: &AuthorizationCode) -> Result<(), StoreError>;

    async fn code(&self, hash: &SecretHash) -> Result<AuthorizationCode, StoreError>;

    /// Redeems a code exactly once, storing the grant (and its first refresh token) it
    /// produces in the same transaction; a second redemption revokes that grant.
    async fn redeem_code(
        &self,
        hash: &SecretHash,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<CodeRedemption, StoreError>;

    /// Stores a grant made without a code (client credentials, device flow) and its
    /// first refresh token.
    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError>;

    async fn grant(&self, id: &str) -> Result<Grant, StoreError>;

    /// Revokes a grant: its refresh tokens and access tokens stop working.
    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError>;
    /// The user's grants that are not revoked, oldest first (the account page, and
    /// remembered consent).
    async fn user_grants(&self, sub: &str) -> Result<Vec<Grant>, StoreError>;
    /// The user's browser sessions that have not ended, with their ids' hashes.
    async fn user_sessions(&self, sub: &str, now: UnixTime) -> Result<Vec<(SecretHash, Session)>, StoreError>;
    /// The user's devices, oldest first.
    async fn user_devices(&self, user: &str) -> Result<Vec<Device>, StoreError>;
    /// Removes a device: its client id gets no more nonces or tokens (`NotFound` if absent).
    async fn delete_device(&self, id: &str) -> Result<(), StoreError>;

    async fn refresh_token(&self, hash: &SecretHash) -> Result<Versioned<RefreshToken>, StoreError>;

    /// Stores a new device.
    async fn create_device(&self, device: &Device) -> Result<(), StoreError>;

    async fn device(&self, id: &str) -> Result<Device, StoreError>;

    /// Stores a dynamically registered client (`AlreadyExists` if the id is taken).
    async fn create_client(&self, client: &RegisteredClient) -> Result<(), StoreError>;

    async fn registered_client(&self, client_id: &str) -> Result<Versioned<RegisteredClient>, StoreError>;

    async fn update_client(&self, client: &RegisteredClient, seen: Version) -> Result<Version, StoreError>;

    async fn delete_client(&self, client_id: &str) -> Result<(), StoreError>;

    /// Stores a device authorization under its device-code hash, indexed by user code
    /// (`AlreadyExists` if that user code is taken).
    async fn create_device_authorization(&self, hash: &SecretHash, d: &DeviceAuthorization) -> Result<(), StoreError>;

    async fn device_authorization(&self, hash: &SecretHash) -> Result<Versioned<DeviceAuthorization>, StoreError>;

    async fn device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<(SecretHash, Versioned<DeviceAuthorization>), StoreError>;

    /// Writes `d` if still at `seen`.
    async fn update_device_authorization(
        &self,
        hash: &SecretHash,
        d: &DeviceAuthorization,
        seen: Version,
    ) -> Result<Version, StoreError>;

    /// Marks an approved device authorization redeemed (if still at `seen`) and stores
    /// the grant and refresh token it produces, together.
    async fn redeem_device_authorization(
        &self,
        hash: &SecretHash,
        seen: Version,
        grant: &Grant,
        refresh: Option<(&SecretHash, &RefreshToken)>,
    ) -> Result<(), StoreError>;

    /// Removes at most `batch` records of each short-lived kind (authorization codes,
    /// sessions, pending authorizations, device authorizations) that expired before `now`;
    /// returns how many went. Run periodically so the store does not grow without bound.
    async fn purge_expired_oauth(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError>;

    /// Marks `old` used (if still at `seen`) and stores its successor, together.
    async fn rotate_refresh_token(
        &self,
        old: &SecretHash,
        seen: Version,
        new: (&SecretHash, &RefreshToken),
    ) -> Result<(), StoreError>;
}

/// The CA and the certificates it issued.
#[async_trait]
pub trait PkiStore: Send + Sync {
    /// The CA's keys and certificates, if created.
    async fn ca_material(&self) -> Result<Option<CaMaterial>, StoreError>;

    /// Stores `material` unless some is already stored; returns what is stored after.
    async fn init_ca_material(&self, material: &CaMaterial) -> Result<CaMaterial, StoreError>;

    /// Root rotation: makes `new` the CA if `seen` is still it (`Conflict` otherwise),
    /// and keeps `seen` among the retired CAs, in one transaction.
    async fn rotate_ca_material(&self, seen: &CaMaterial, new: &CaMaterial) -> Result<(), StoreError>;

    /// The CAs retired by rotations, oldest first.
    async fn retired_ca_material(&self) -> Result<Vec<CaMaterial>, StoreError>;

    /// The issuance chains built for the CA (alternate roots, longer chains), if any.
    async fn ca_chains(&self) -> Result<Option<CaChains>, StoreError>;

    /// Stores `new` as the chains if `seen` is still what is stored (`None`: nothing
    /// is), in one compare-and-swap; `Conflict` otherwise, when another instance built
    /// them first (read them again).
    async fn swap_ca_chains(&self, seen: Option<&CaChains>, new: &CaChains) -> Result<(), StoreError>;

    async fn certificate(&self, serial: &Serial) -> Result<Versioned<IssuedCertificate>, StoreError>;

    /// Stores a certificate issued outside ACME (`idca issue`); `AlreadyExists` if the
    /// serial is taken.
    async fn create_certificate(&self, cert: &IssuedCertificate) -> Result<(), StoreError>;

    /// Every issued certificate, in serial order.
    async fn certificates(&self) -> Result<Vec<Versioned<IssuedCertificate>>, StoreError>;

    /// Writes `cert` if it is still at `seen`; keeps the revoked index in step.
    async fn update_certificate(&self, cert: &IssuedCertificate, seen: Version) -> Result<Version, StoreError>;

    /// Every revoked certificate's serial and revocation (for the CRL).
    async fn revoked_certificates(&self) -> Result<Vec<(Serial, crate::model::Revocation)>, StoreError>;

    /// A number that changes whenever the set [`revoked_certificates`](Self::revoked_certificates)
    /// returns may have changed, on every instance: a CRL built at one epoch is current
    /// while the epoch stays (it may also change when the set did not).
    async fn revocation_epoch(&self) -> Result<u64, StoreError>;
}

/// Single-use values shared by every instance: the DPoP nonce secret, DPoP proof
/// replay keys (`jti`), device nonces.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// The secret named `name` all instances share: the stored one, or `fresh` stored now
    /// (first start; the first to store wins).
    async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Stores `value` under `name` (shared by every instance) and returns what was there.
    async fn swap_shared_value(&self, name: &str, value: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Records an ACME nonce as used until `expires`; `false` if it was already (RFC 8555
    /// §6.5: each nonce is accepted once, by any instance).
    async fn consume_acme_nonce(&self, key: &str, expires: i64) -> Result<bool, StoreError>;

    /// Records a DPoP proof's replay key until `expires`; `false` if it was already
    /// recorded and has not expired (a replay). Expired entries are purged as it goes;
    /// `Full` when as many unexpired keys as the store holds at most are recorded.
    async fn remember_dpop_jti(&self, key: &str, expires: i64, now: i64) -> Result<bool, StoreError>;

    /// Sets the device's one backend nonce (a new one replaces the old).
    async fn put_device_nonce(&self, device: &str, nonce: &str, expires: i64) -> Result<(), StoreError>;

    /// Removes and returns the device's backend nonce and its expiry, once.
    async fn take_device_nonce(&self, device: &str) -> Result<(String, i64), StoreError>;

    /// Removes at most `batch` expired DPoP replay keys and `batch` expired device nonces;
    /// returns how many went.
    async fn purge_expired_replay(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError>;
}

/// The store traits, to call their methods on a `dyn Store` (`use crate::store::prelude::*`).
pub mod prelude {
    pub use super::{AcmeStore as _, LimitStore as _, OAuthStore as _, PkiStore as _, ReplayStore as _};
}
