//! The server's background tasks: key refresh, purges of expired records, the store
//! quota's measurements. Each ends when what it works on is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// Runs `work` on `on` every `period` (at least a second; the first time one period from
/// now) until `on` is dropped.
fn every<T, F>(on: Weak<T>, period: Duration, work: impl Fn(Arc<T>) -> F + Send + 'static)
where
    T: ?Sized + Send + Sync + 'static,
    F: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(on) = on.upgrade() else { return };
            work(on).await;
        }
    });
}

/// Every [`crate::oauth::KeyRing::REFRESH_SECS`], reloads the OAuth signing keys, so that
/// a rotation made elsewhere (another instance, `idca oauth-rotate-key`) is signed with
/// and published here too. Ends when the authorization server is dropped.
pub(super) fn spawn_key_refresh(authz: Weak<crate::oauth::AuthServer>) {
    every(authz, Duration::from_secs(crate::oauth::KeyRing::REFRESH_SECS), |authz| async move {
        if let Err(e) = authz.reload_keys().await {
            tracing::warn!(error = %e, "reloading the OAuth signing keys failed; retrying later");
        }
    });
}

/// Records removed per statement (or per tree scan) when purging.
const PURGE_BATCH: usize = 1000;

/// Every `period`, removes the short-lived records that expired (codes, sessions, pending
/// and device authorizations, device nonces, DPoP replay keys, lockout counters, rate
/// buckets, open-order entries) in batches, so the store does not grow without bound.
/// Ends when the store is dropped.
pub(super) fn spawn_purge(store: Weak<dyn Store>, clock: Arc<dyn Clock>, period: Duration) {
    every(store, period, move |store| {
        let clock = clock.clone();
        async move {
            loop {
                let now = clock.now();
                let purged = async {
                    Ok::<_, StoreError>(
                        store.purge_expired_oauth(now, PURGE_BATCH).await?
                            + store.purge_expired_replay(now, PURGE_BATCH).await?
                            + store.purge_expired_limits(now, PURGE_BATCH).await?,
                    )
                }
                .await;
                match purged {
                    Ok(n) if n >= PURGE_BATCH => tokio::task::yield_now().await,
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(purged = n, "expired records removed");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "purging expired records failed; retrying later");
                        break;
                    }
                }
            }
        }
    });
}

/// Measures the store's live data against `storage.quota_bytes` now and every `period`,
/// and logs each crossing of the quota (once, not per refused request).
pub(super) async fn watch_quota(store: &Arc<dyn Store>, limit: u64, period: Duration) {
    store.quota().set_limit(limit);
    if limit == 0 {
        return;
    }
    let was_over = Arc::new(AtomicBool::new(false));
    let check = move |store: Arc<dyn Store>| {
        let was_over = was_over.clone();
        async move {
            match store.measure_quota().await {
                Ok(over) => {
                    let (used, limit) = (store.quota().used(), store.quota().limit());
                    match (was_over.swap(over, Ordering::Relaxed), over) {
                        (false, true) => {
                            tracing::warn!(
                                used,
                                limit,
                                "the store is past storage.quota_bytes: new objects are refused"
                            )
                        }
                        (true, false) => tracing::info!(
                            used,
                            limit,
                            "the store is below storage.quota_bytes again: new objects are taken"
                        ),
                        _ => {}
                    }
                }
                Err(e) => tracing::warn!(error = %e, "measuring the store for its quota failed; retrying later"),
            }
        }
    };
    check(store.clone()).await;
    every(Arc::downgrade(store), period, check);
}
