//! Challenge validation off the request path (RFC 8555 §7.5.1: the server validates
//! "asynchronously" after the client's POST).
//!
//! The challenge POST marks a challenge `processing` (durably) and pushes its
//! authorization on the [`ValidationQueue`]; the [`Validator`] takes a lease on it in the
//! store, checks it (renewing the lease) and records the outcome. Every instance also
//! polls the store for processing authorizations whose lease ran out (their instance
//! died, or a restart) and takes them over, so no accepted challenge is forgotten and no
//! two instances run the same validation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::{AcmeError, KeyAuthorization, load_authz};
use crate::clock::{self, Clock};
use crate::config::AcmeConfig;
use crate::model::{AuthzId, AuthzStatus, ChallengeStatus};
use crate::store::{Store, StoreError};
use crate::validate::ChallengeChecker;

/// Where the challenge endpoint leaves work for the validator. It counts what waits
/// for a validation slot, so that the endpoint can refuse new work past
/// `limits.queued_validations` (what is accepted is never dropped), and holds each
/// authorization once however often it is pushed.
#[derive(Debug, Clone)]
pub struct ValidationQueue {
    tx: mpsc::UnboundedSender<AuthzId>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Queued or being validated here.
    held: Arc<Mutex<HashSet<AuthzId>>>,
    capacity: usize,
}

impl ValidationQueue {
    /// A queue for at most `capacity` waiting validations, and the receiving end the
    /// validator runs on.
    pub fn new(capacity: usize) -> (Self, QueuedValidations) {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let held: Arc<Mutex<HashSet<AuthzId>>> = Arc::default();
        let queue = Self { tx, waiting: waiting.clone(), held: held.clone(), capacity };
        (queue, QueuedValidations { rx, waiting, held })
    }

    /// Whether another validation may be accepted now.
    pub fn has_room(&self) -> bool {
        self.room() > 0
    }

    fn room(&self) -> usize {
        self.capacity.saturating_sub(self.waiting.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Queues an authorization with a `processing` challenge (once: one already queued
    /// or being validated here is not queued again).
    pub fn push(&self, id: AuthzId) {
        if !self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone()) {
            return;
        }
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send(id).is_err() {
            self.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("validation queue is closed; another instance, or the next start, takes the challenge over");
        }
    }
}

impl ValidationQueue {
    fn downgrade(&self) -> WeakQueue {
        WeakQueue {
            tx: self.tx.downgrade(),
            waiting: self.waiting.clone(),
            held: self.held.clone(),
            capacity: self.capacity,
        }
    }
}

/// A [`ValidationQueue`] that does not keep the channel open.
struct WeakQueue {
    tx: mpsc::WeakUnboundedSender<AuthzId>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    held: Arc<Mutex<HashSet<AuthzId>>>,
    capacity: usize,
}

impl WeakQueue {
    fn upgrade(&self) -> Option<ValidationQueue> {
        Some(ValidationQueue {
            tx: self.tx.upgrade()?,
            waiting: self.waiting.clone(),
            held: self.held.clone(),
            capacity: self.capacity,
        })
    }
}

/// The validator's end of the [`ValidationQueue`].
#[derive(Debug)]
pub struct QueuedValidations {
    rx: mpsc::UnboundedReceiver<AuthzId>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    held: Arc<Mutex<HashSet<AuthzId>>>,
}

/// Runs validations, at most `concurrency` at once, each under a lease held by `owner`
/// (this instance) in the store.
pub struct Validator {
    store: Arc<dyn Store>,
    checker: Arc<dyn ChallengeChecker>,
    clock: Arc<dyn Clock>,
    config: AcmeConfig,
    metrics: Arc<crate::metrics::Metrics>,
    owner: String,
}

impl Validator {
    /// `owner` names this instance's leases (unique per process).
    pub fn new(
        store: Arc<dyn Store>,
        checker: Arc<dyn ChallengeChecker>,
        clock: Arc<dyn Clock>,
        config: AcmeConfig,
        metrics: Arc<crate::metrics::Metrics>,
        owner: String,
    ) -> Self {
        Self { store, checker, clock, config, metrics, owner }
    }

    fn lease_secs(&self) -> i64 {
        clock::span(self.config.validation.lease_secs.max(1))
    }

    /// How often the store is asked for validations whose lease ran out: a tenth of the
    /// lease, between 0.2 and 5 seconds.
    fn poll_every(&self) -> Duration {
        Duration::from_millis(self.config.validation.lease_secs.saturating_mul(100).clamp(200, 5000))
    }

    /// Takes over (and queues) processing authorizations whose lease ran out; how many.
    pub async fn take_over(&self, queue: &ValidationQueue) -> Result<usize, StoreError> {
        let room = queue.room().min(8);
        if room == 0 {
            return Ok(0);
        }
        let now = self.clock.now();
        let ids = self.store.claim_expired_validations(&self.owner, now, now + self.lease_secs(), room).await?;
        let n = ids.len();
        for id in ids {
            queue.push(id);
        }
        Ok(n)
    }

    /// Serves the queue, and takes over expired leases, until every sender is gone. The
    /// validations run in this task's set: aborting it stops them (as a crash would).
    pub async fn run(self: Arc<Self>, queue: ValidationQueue, mut queued: QueuedValidations) {
        let slots = Arc::new(Semaphore::new(self.config.validation.concurrency));
        let mut running = tokio::task::JoinSet::new();
        let mut poll = tokio::time::interval(self.poll_every());
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The queue's sender kept here only for take-overs: stop once the others are gone.
        let taking_over = queue.downgrade();
        drop(queue);
        loop {
            let id = tokio::select! {
                id = queued.rx.recv() => match id {
                    Some(id) => id,
                    None => break,
                },
                _ = poll.tick() => {
                    let Some(queue) = taking_over.upgrade() else { break };
                    match self.take_over(&queue).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(taken = n, "taking over validations whose lease ran out"),
                        Err(e) => tracing::warn!(error = %e, "could not look for validations to take over"),
                    }
                    continue;
                }
                Some(_) = running.join_next(), if !running.is_empty() => continue,
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            queued.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let (me, held) = (self.clone(), queued.held.clone());
            running.spawn(async move {
                if let Err(e) = me.validate_leased(&id).await {
                    tracing::error!(authz = %id, error = ?e, "validation could not be recorded");
                }
                held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                drop(permit);
            });
        }
        while running.join_next().await.is_some() {}
    }

    /// Validates `id` if this instance gets (or holds) its lease, renewing the lease
    /// every third of its length while the check runs.
    async fn validate_leased(&self, id: &AuthzId) -> Result<(), AcmeError> {
        let lease = self.lease_secs();
        let now = self.clock.now();
        if !self.store.claim_validation(id, &self.owner, now, now + lease).await? {
            return Ok(());
        }
        let validation = self.validate(id);
        tokio::pin!(validation);
        let mut renew = tokio::time::interval(Duration::from_secs(u64::try_from(lease / 3).unwrap_or(1).max(1)));
        renew.tick().await;
        loop {
            tokio::select! {
                r = &mut validation => return r,
                _ = renew.tick() => {
                    let now = self.clock.now();
                    match self.store.claim_validation(id, &self.owner, now, now + lease).await {
                        Ok(true) => {}
                        // Another instance took it over (this one was too slow); its outcome
                        // or this one's is recorded, by compare-and-swap, once.
                        Ok(false) => tracing::warn!(authz = %id, "validation lease lost"),
                        Err(e) => tracing::warn!(authz = %id, error = %e, "validation lease not renewed"),
                    }
                }
            }
        }
    }

    /// Validates the `processing` challenge of one authorization and records the result.
    pub async fn validate(&self, id: &AuthzId) -> Result<(), AcmeError> {
        let mut delay = self.config.testing.validation_delay_ms;
        if self.config.testing.random_delay && delay > 0 {
            let mut b = [0u8; 8];
            crate::model::fill_random(&mut b);
            delay = u64::from_be_bytes(b) % delay;
        }
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let authz = load_authz(self.store.as_ref(), id).await?;
        let Some(challenge) = authz.value.challenges.iter().find(|c| c.status == ChallengeStatus::Processing) else {
            return Ok(());
        };
        let (challenge_id, kind, token) = (challenge.id.clone(), challenge.kind, challenge.token.clone());
        let account = self.store.account(&authz.value.account).await?;
        let key_authorization = KeyAuthorization::new(&token, &account.value.jkt);
        let outcome = if self.config.testing.always_valid {
            Ok(())
        } else {
            self.checker.check(kind, &authz.value.identifier, &token, &key_authorization).await
        };
        tracing::info!(authz = %id, challenge = kind.as_str(), ok = outcome.is_ok(), "validated");
        self.metrics.validation(kind.as_str(), outcome.is_ok());
        // Record it; if the authorization changed meanwhile (deactivated, say), re-read
        // and apply the same outcome to what is there now.
        let mut current = authz;
        for _ in 0..5 {
            let now = self.clock.now();
            let mut a = current.value.clone();
            if !a.challenges.iter().any(|c| c.id == challenge_id && c.status == ChallengeStatus::Processing) {
                return Ok(());
            }
            record_outcome(&mut a, &challenge_id, &outcome, now, clock::span(self.config.valid_authz_lifetime_secs));
            match self.store.update_authorization(&a, current.version).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) => current = load_authz(self.store.as_ref(), id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AcmeError::internal(StoreError::Conflict))
    }
}

/// Writes a validation outcome into an authorization: the challenge becomes valid (with
/// its time) or invalid (with its problem), and a pending authorization follows it
/// (RFC 8555 §7.1.6).
pub(crate) fn record_outcome(
    a: &mut crate::model::Authorization,
    challenge: &crate::model::ChallengeId,
    outcome: &Result<(), crate::validate::ValidationError>,
    now: clock::UnixTime,
    valid_lifetime: i64,
) {
    let pending = a.status == AuthzStatus::Pending;
    let Some(c) = a.challenges.iter_mut().find(|c| &c.id == challenge) else { return };
    match outcome {
        Ok(()) => {
            c.status = ChallengeStatus::Valid;
            c.validated = Some(now);
            if pending {
                a.status = AuthzStatus::Valid;
                a.expires = now + valid_lifetime;
            }
        }
        Err(e) => {
            c.status = ChallengeStatus::Invalid;
            c.error = Some(e.to_problem());
            if pending {
                a.status = AuthzStatus::Invalid;
            }
        }
    }
}
