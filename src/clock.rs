//! Time as an input: cores take `now` from a [`Clock`] so tests can fix it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch (UTC).
pub type UnixTime = i64;

/// A configured number of seconds as a span of [`UnixTime`], saturating (a `u64` past
/// `i64::MAX` is "forever", never a negative span).
pub fn span(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The first and last second a certificate's validity can name: RFC 5280 §4.1.2.5
/// encodes it as UTCTime or GeneralizedTime, both with four-digit years
/// (0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z).
pub const CERTIFICATE_TIMES: std::ops::RangeInclusive<UnixTime> = -62_167_219_200..=253_402_300_799;

/// `secs` seconds after `t`, saturating at the end of time.
pub fn after(t: UnixTime, secs: u64) -> UnixTime {
    t.saturating_add(span(secs))
}

/// The wall clock in milliseconds since the Unix epoch (for rates finer than a second).
pub fn wall_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    /// A clock standing at `now`.
    pub fn new(now: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(now)))
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats a Unix time as an RFC 3339 timestamp (the format of ACME's `expires`).
pub fn rfc3339(t: UnixTime) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    dt.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp into a Unix time.
pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_times_are_years_0000_to_9999_in_utc() {
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00Z"), Some(*CERTIFICATE_TIMES.start()));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59Z"), Some(*CERTIFICATE_TIMES.end()));
        assert!(!CERTIFICATE_TIMES.contains(&parse_rfc3339("0000-01-01T00:00:00+00:01").unwrap()));
        assert!(!CERTIFICATE_TIMES.contains(&parse_rfc3339("9999-12-31T23:59:59-00:01").unwrap()));
    }

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339(&rfc3339(1_800_000_000)), Some(1_800_000_000));
        assert_eq!(parse_rfc3339("not a date"), None);
    }

    #[test]
    fn fixed_clock_advances() {
        let c = FixedClock::new(100);
        c.advance(5);
        assert_eq!(c.now(), 105);
    }
}

#[cfg(test)]
mod span_tests {
    use super::*;

    #[test]
    fn spans_saturate_rather_than_wrap() {
        assert_eq!(after(10, 5), 15);
        assert_eq!(span(u64::MAX), i64::MAX);
        assert_eq!(after(10, u64::MAX), i64::MAX);
    }
}
