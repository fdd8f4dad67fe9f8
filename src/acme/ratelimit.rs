//! A per-account token bucket for new orders (RFC 8555 §6.6 `rateLimited`), and the
//! orders each account holds that are not finished yet.
//!
//! State is in memory: a restart forgives everyone, which suits a test CA. Memory is
//! bounded: when the table grows past [`MAX_TRACKED`] accounts, buckets that are full
//! again (idle accounts) are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::model::AccountId;

const MAX_TRACKED: usize = 100_000;

/// Allows `per_minute` requests per key per minute, in bursts of up to `per_minute`.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<AccountId, (f64, Instant)>>,
}

impl RateLimiter {
    /// `0` means unlimited.
    pub fn per_minute(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says in how many seconds one will be there.
    pub fn check(&self, key: &AccountId) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &AccountId, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets
                .retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < capacity);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((capacity, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The orders each account created that may still be pending (in memory, like the
/// bucket: a restart forgets them). `new_order` re-reads them to count what is really
/// still open, and keeps only those, so each account's list stays as short as its limit.
#[derive(Debug, Default)]
pub(super) struct OpenOrders {
    per_account: Mutex<HashMap<AccountId, Vec<(crate::model::OrderId, crate::clock::UnixTime)>>>,
}

impl OpenOrders {
    /// The account's orders that have not expired by `now`.
    pub(super) fn live(&self, account: &AccountId, now: crate::clock::UnixTime) -> Vec<crate::model::OrderId> {
        let map = self.per_account.lock().unwrap_or_else(|p| p.into_inner());
        map.get(account)
            .map_or_else(Vec::new, |v| v.iter().filter(|(_, e)| *e > now).map(|(id, _)| id.clone()).collect())
    }

    /// Keeps only `open` of the account's orders.
    pub(super) fn keep(&self, account: &AccountId, open: &[crate::model::OrderId]) {
        let mut map = self.per_account.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_empty() {
            map.remove(account);
        } else if let Some(v) = map.get_mut(account) {
            v.retain(|(id, _)| open.contains(id));
        }
    }

    /// Remembers a new order until it expires. Past [`MAX_TRACKED`] accounts, those
    /// whose orders have all expired are forgotten.
    pub(super) fn add(
        &self,
        account: &AccountId,
        order: crate::model::OrderId,
        expires: crate::clock::UnixTime,
        now: i64,
    ) {
        let mut map = self.per_account.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, orders| {
                orders.retain(|(_, e)| *e > now);
                !orders.is_empty()
            });
        }
        map.entry(account.clone()).or_default().push((order, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_refills() {
        let l = RateLimiter::per_minute(3);
        let a = AccountId("a".into());
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check_at(&a, t0).unwrap();
        }
        assert_eq!(l.check_at(&a, t0), Err(20));
        // Another account has its own bucket.
        l.check_at(&AccountId("b".into()), t0).unwrap();
        // 20 s later one token is back.
        l.check_at(&a, t0 + Duration::from_secs(20)).unwrap();
        assert!(l.check_at(&a, t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::per_minute(0);
        for _ in 0..1000 {
            l.check(&AccountId("a".into())).unwrap();
        }
    }
}
