//! Lockout counters and rate buckets in PostgreSQL, shared by every instance: each
//! decision is one upsert whose row count decides (research: scale-out §3.7).

use super::*;
use crate::store::{ATTEMPT_RESERVATION_SECS, gcra_steps};

/// `end_attempt`'s `$4`.
fn how_code(how: Attempt) -> i16 {
    match how {
        Attempt::Failed => 1,
        Attempt::Succeeded => 2,
        Attempt::Abandoned => 0,
    }
}

#[async_trait]
impl LimitStore for PgStore {
    /// One upsert: counted if failures (still within their lockout) plus attempts in
    /// flight (still within their reservation) stay below `max`; no row otherwise.
    async fn begin_attempt(&self, key: &str, rule: AttemptRule, now: UnixTime) -> Result<Result<(), i64>, StoreError> {
        let client = self.client().await?;
        let reserved = now.saturating_add(ATTEMPT_RESERVATION_SECS);
        let max = i32::try_from(rule.max.max(1)).unwrap_or(i32::MAX);
        let sql = "INSERT INTO attempts AS a (key, failures, last_failure, pending, pending_until, expires) \
                   VALUES ($1, 0, 0, 1, $4, $4) ON CONFLICT (key) DO UPDATE SET \
                   failures = CASE WHEN a.last_failure + $2 <= $3 THEN 0 ELSE a.failures END, \
                   pending = CASE WHEN a.pending_until <= $3 THEN 1 ELSE a.pending + 1 END, \
                   pending_until = $4, expires = GREATEST(a.expires, $4) \
                   WHERE (CASE WHEN a.last_failure + $2 <= $3 THEN 0 ELSE a.failures END) \
                   + (CASE WHEN a.pending_until <= $3 THEN 0 ELSE a.pending END) < $5";
        if exec(&client, sql, &[&key, &rule.lockout_secs, &now, &reserved, &max]).await? == 1 {
            return Ok(Ok(()));
        }
        let row = query_opt(&client, "SELECT failures, last_failure FROM attempts WHERE key = $1", &[&key]).await?;
        let (failures, last): (i32, i64) = match row {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, 0),
        };
        let until = last.saturating_add(rule.lockout_secs);
        Ok(Err(if failures >= max && until > now { until - now } else { 1 }))
    }

    async fn end_attempt(&self, key: &str, rule: AttemptRule, how: Attempt, now: UnixTime) -> Result<(), StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE attempts AS a SET pending = GREATEST(a.pending - 1, 0), \
                   failures = CASE $4::smallint WHEN 1 THEN (CASE WHEN a.last_failure + $2 <= $3 THEN 1 ELSE a.failures + 1 END) \
                   WHEN 2 THEN 0 ELSE a.failures END, \
                   last_failure = CASE WHEN $4::smallint = 1 THEN $3 ELSE a.last_failure END, \
                   expires = CASE WHEN $4::smallint = 1 THEN GREATEST(a.expires, $3 + $2) ELSE a.expires END \
                   WHERE key = $1";
        exec(&client, sql, &[&key, &rule.lockout_secs, &now, &how_code(how)]).await?;
        Ok(())
    }

    /// GCRA in one upsert (Boulder's `ratelimits`): the theoretical arrival time moves
    /// on only if the request fits in the burst; no row: limited.
    async fn take_rate(&self, key: &str, per_minute: u32, now_ms: i64) -> Result<Result<(), u64>, StoreError> {
        let client = self.client().await?;
        let (increment, burst) = gcra_steps(per_minute);
        let sql = "INSERT INTO rate_buckets AS b (key, tat_ms) VALUES ($1, $2::bigint + $3::bigint) \
                   ON CONFLICT (key) DO UPDATE SET tat_ms = GREATEST(b.tat_ms, $2) + $3 \
                   WHERE GREATEST(b.tat_ms, $2) + $3 - $4::bigint <= $2";
        if exec(&client, sql, &[&key, &now_ms, &increment, &burst]).await? == 1 {
            return Ok(Ok(()));
        }
        let row = query_opt(&client, "SELECT tat_ms FROM rate_buckets WHERE key = $1", &[&key]).await?;
        let tat: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
        // Refused by the upsert: the wait from what is stored now (at least a second, if
        // the bucket refilled in between: nothing was taken).
        Ok(Err(crate::store::gcra(tat, per_minute, now_ms).err().unwrap_or(1)))
    }

    fn quota(&self) -> &crate::store::Quota {
        &self.quota
    }

    /// Per table of this schema: PostgreSQL's count of live rows (its statistics, which
    /// fall as soon as a deleting transaction's counts are reported, within seconds)
    /// times the average size of up to 100 of its rows. The files' size would not do:
    /// PostgreSQL reuses freed space but does not give it back.
    async fn live_bytes(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let tables = client
            .query(
                "SELECT relname::text, n_live_tup FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() AND n_live_tup > 0",
                &[],
            )
            .await?;
        let mut total = 0f64;
        for row in tables {
            let (name, rows): (String, i64) = (row.get(0), row.get(1));
            let sample = format!(
                "SELECT coalesce(avg(pg_column_size(t.*)), 0)::float8 FROM (SELECT * FROM \"{}\" LIMIT 100) t",
                name.replace('"', "\"\"")
            );
            let width: f64 = client.query_one(&sample, &[]).await?.get(0);
            total += width * rows as f64;
        }
        Ok(total as u64)
    }

    async fn purge_expired_limits(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let now_ms = now.saturating_mul(1000);
        let attempts = "DELETE FROM attempts WHERE key IN (SELECT key FROM attempts WHERE expires <= $1 LIMIT $2)";
        let buckets =
            "DELETE FROM rate_buckets WHERE key IN (SELECT key FROM rate_buckets WHERE tat_ms <= $1 LIMIT $2)";
        let gone = exec(&client, attempts, &[&now, &batch]).await? + exec(&client, buckets, &[&now_ms, &batch]).await?;
        Ok(usize::try_from(gone).unwrap_or(usize::MAX))
    }
}
