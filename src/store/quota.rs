//! The store quota (`storage.quota_bytes`): while the live data the store last measured
//! is past it, every operation that creates an object is refused with
//! [`StoreError::OverQuota`] (updates, removals and purges go on), so a loop on a public
//! endpoint cannot fill the disk. The measure is the backend's own
//! ([`LimitStore::live_bytes`](super::LimitStore::live_bytes)): it falls when records
//! are removed, so the store takes new objects again after a purge.

use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// Seconds a client refused for the quota is told to wait.
pub const QUOTA_RETRY_AFTER: u64 = 60;

/// The quota and the last measurement; 0: no quota.
#[derive(Debug, Default)]
pub struct Quota {
    limit: AtomicU64,
    used: AtomicU64,
}

impl Quota {
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// The live bytes measured last.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Records a measurement of the live data.
    pub fn record(&self, used: u64) {
        self.used.store(used, Ordering::Relaxed);
    }

    pub fn is_over(&self) -> bool {
        let limit = self.limit();
        limit > 0 && self.used() > limit
    }

    /// Called first by every store operation that creates an object.
    pub fn admit(&self) -> Result<(), StoreError> {
        if self.is_over() {
            return Err(StoreError::OverQuota { used: self.used(), limit: self.limit() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_until_a_measurement_passes_the_limit_and_again_below_it() {
        let q = Quota::default();
        q.record(u64::MAX);
        assert!(q.admit().is_ok(), "no limit: no quota");
        q.set_limit(1000);
        q.record(1000);
        assert!(q.admit().is_ok(), "at the limit is not past it");
        q.record(1001);
        assert!(matches!(q.admit(), Err(StoreError::OverQuota { used: 1001, limit: 1000 })));
        q.record(10);
        assert!(q.admit().is_ok());
    }
}
