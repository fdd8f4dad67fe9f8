//! Lockout counters and rate buckets in this process's memory, for a store only one
//! process opens (sled): a restart forgives everyone, which suits one instance. Memory
//! is bounded: past [`MAX_TRACKED`] keys, those that limit nothing any more are dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Attempt, AttemptRule};
use crate::clock::UnixTime;

const MAX_TRACKED: usize = 100_000;

/// Per key: failures, the last failure, attempts being checked.
#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    last_failure: UnixTime,
    in_flight: u32,
    /// When this counter stops limiting anything (the last failure's lockout ends).
    expires: UnixTime,
}

/// The counters and buckets of one process.
#[derive(Debug, Default)]
pub(super) struct LocalLimits {
    attempts: Mutex<HashMap<String, Counter>>,
    /// Per key: GCRA's theoretical arrival time (ms).
    rates: Mutex<HashMap<String, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalLimits {
    pub(super) fn begin_attempt(&self, key: &str, rule: AttemptRule, now: UnixTime) -> Result<(), i64> {
        let mut map = lock(&self.attempts);
        if map.len() >= MAX_TRACKED {
            map.retain(|_, c| c.in_flight > 0 || c.expires > now);
        }
        let c =
            map.entry(key.to_owned()).or_insert(Counter { failures: 0, last_failure: now, in_flight: 0, expires: now });
        if now >= c.last_failure.saturating_add(rule.lockout_secs) {
            c.failures = 0;
        }
        let max = rule.max.max(1);
        if c.failures >= max {
            return Err((c.last_failure.saturating_add(rule.lockout_secs) - now).max(1));
        }
        if c.failures + c.in_flight >= max {
            return Err(1);
        }
        c.in_flight += 1;
        Ok(())
    }

    pub(super) fn end_attempt(&self, key: &str, rule: AttemptRule, how: Attempt, now: UnixTime) {
        let mut map = lock(&self.attempts);
        let Some(c) = map.get_mut(key) else { return };
        c.in_flight = c.in_flight.saturating_sub(1);
        match how {
            Attempt::Failed => {
                if now >= c.last_failure.saturating_add(rule.lockout_secs) {
                    c.failures = 0;
                }
                c.failures += 1;
                c.last_failure = now;
                c.expires = now.saturating_add(rule.lockout_secs);
            }
            Attempt::Succeeded => c.failures = 0,
            Attempt::Abandoned => {}
        }
        if c.failures == 0 && c.in_flight == 0 {
            map.remove(key);
        }
    }

    pub(super) fn take_rate(&self, key: &str, per_minute: u32, now_ms: i64) -> Result<(), u64> {
        let mut map = lock(&self.rates);
        if map.len() >= MAX_TRACKED {
            map.retain(|_, tat| *tat > now_ms);
        }
        let tat = super::gcra(map.get(key).copied(), per_minute, now_ms)?;
        map.insert(key.to_owned(), tat);
        Ok(())
    }

    /// Drops up to `batch` counters and buckets that limit nothing at `now`.
    pub(super) fn purge(&self, now: UnixTime, batch: usize) -> usize {
        let mut gone = 0;
        {
            let mut map = lock(&self.attempts);
            let idle: Vec<String> = map
                .iter()
                .filter(|(_, c)| c.in_flight == 0 && c.expires <= now)
                .map(|(k, _)| k.clone())
                .take(batch)
                .collect();
            for k in idle {
                map.remove(&k);
                gone += 1;
            }
        }
        let mut map = lock(&self.rates);
        let now_ms = now.saturating_mul(1000);
        let full: Vec<String> =
            map.iter().filter(|(_, tat)| **tat <= now_ms).map(|(k, _)| k.clone()).take(batch).collect();
        for k in full {
            map.remove(&k);
            gone += 1;
        }
        gone
    }
}
