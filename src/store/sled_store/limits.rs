//! Lockouts and rates for sled: in this process's memory (sled is opened by one process
//! only), and the expired entries of the open-orders index.

use super::*;

#[async_trait]
impl LimitStore for SledStore {
    async fn begin_attempt(&self, key: &str, rule: AttemptRule, now: UnixTime) -> Result<Result<(), i64>, StoreError> {
        Ok(self.inner.limits.begin_attempt(key, rule, now))
    }

    async fn end_attempt(&self, key: &str, rule: AttemptRule, how: Attempt, now: UnixTime) -> Result<(), StoreError> {
        self.inner.limits.end_attempt(key, rule, how, now);
        Ok(())
    }

    async fn take_rate(&self, key: &str, per_minute: u32, now_ms: i64) -> Result<Result<(), u64>, StoreError> {
        Ok(self.inner.limits.take_rate(key, per_minute, now_ms))
    }

    fn quota(&self) -> &crate::store::Quota {
        &self.inner.quota
    }

    /// sled's own count of live bytes in its log segments (vendored addition,
    /// `vendor/sled/PATCHES.md`): it falls as soon as records are removed.
    async fn live_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.live_bytes())
    }

    async fn purge_expired_limits(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError> {
        let mut gone = self.inner.limits.purge(now, batch);
        let tree = &self.inner.open_orders;
        let mut expired = 0;
        for entry in tree.iter() {
            let (key, expires) = entry.map_err(backend)?;
            if expired == batch {
                break;
            }
            if stored_time(&expires) <= now {
                let _ = tree.compare_and_swap(key, Some(expires), None as Option<&[u8]>).map_err(backend)?;
                expired += 1;
            }
        }
        gone += expired;
        if expired > 0 {
            self.durable().await?;
        }
        Ok(gone)
    }
}
