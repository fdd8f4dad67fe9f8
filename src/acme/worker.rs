//! Challenge validation off the request path (RFC 8555 §7.5.1: the server validates
//! "asynchronously" after the client's POST).
//!
//! The challenge POST marks a challenge `processing` (durably) and pushes its
//! authorization on the [`ValidationQueue`]; the [`Validator`] checks it and records the
//! outcome. After a restart, `Validator::resume` re-queues every authorization the store
//! still has in `processing`, so no accepted challenge is forgotten.

use std::sync::Arc;
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
/// `limits.queued_validations` (what is accepted is never dropped).
#[derive(Debug, Clone)]
pub struct ValidationQueue {
    tx: mpsc::UnboundedSender<AuthzId>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    capacity: usize,
}

impl ValidationQueue {
    /// A queue for at most `capacity` waiting validations, and the receiving end the
    /// validator runs on.
    pub fn new(capacity: usize) -> (Self, QueuedValidations) {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiting: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        (Self { tx, waiting: waiting.clone(), capacity }, QueuedValidations { rx, waiting })
    }

    /// Whether another validation may be accepted now.
    pub fn has_room(&self) -> bool {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed) < self.capacity
    }

    /// Queues an authorization with a `processing` challenge.
    pub fn push(&self, id: AuthzId) {
        self.waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.tx.send(id).is_err() {
            self.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("validation queue is closed; the challenge resumes at next start");
        }
    }
}

/// The validator's end of the [`ValidationQueue`].
#[derive(Debug)]
pub struct QueuedValidations {
    rx: mpsc::UnboundedReceiver<AuthzId>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// Runs validations, at most `concurrency` at once.
pub struct Validator {
    store: Arc<dyn Store>,
    checker: Arc<dyn ChallengeChecker>,
    clock: Arc<dyn Clock>,
    config: AcmeConfig,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Validator {
    pub fn new(
        store: Arc<dyn Store>,
        checker: Arc<dyn ChallengeChecker>,
        clock: Arc<dyn Clock>,
        config: AcmeConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self { store, checker, clock, config, metrics }
    }

    /// Re-queues the authorizations left `processing` by a previous run.
    pub async fn resume(&self, queue: &ValidationQueue) -> Result<usize, StoreError> {
        let ids = self.store.authorizations_processing().await?;
        let n = ids.len();
        for id in ids {
            queue.push(id);
        }
        Ok(n)
    }

    /// Serves the queue until every sender is gone.
    pub async fn run(self: Arc<Self>, mut queued: QueuedValidations) {
        let slots = Arc::new(Semaphore::new(self.config.validation.concurrency));
        while let Some(id) = queued.rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            queued.waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.validate(&id).await {
                    tracing::error!(authz = %id, error = ?e, "validation could not be recorded");
                }
                drop(permit);
            });
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
