//! Single-use values in PostgreSQL: the DPoP nonce secret, replay keys, device nonces.

use super::*;

/// `replay.kind` of a used shared ACME nonce.
const ACME_NONCE: i16 = 1;
/// `replay.kind` of a DPoP proof's replay key.
const DPOP_JTI: i16 = 2;

impl PgStore {
    /// Drops the DPoP replay keys whose window has passed; returns how many remain.
    async fn purge_dpop_jti(&self, now: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        exec(&client, "DELETE FROM replay WHERE kind = $1 AND expires <= $2", &[&DPOP_JTI, &now]).await?;
        let row = query_opt(&client, "SELECT count(*) FROM replay WHERE kind = $1", &[&DPOP_JTI]).await?;
        let remaining: i64 = row.map_or(Ok(0), |r| r.try_get(0))?;
        let remaining = u64::try_from(remaining).unwrap_or(0);
        self.jti.live.store(remaining, Ordering::Relaxed);
        Ok(remaining)
    }
}

#[async_trait]
impl ReplayStore for PgStore {
    async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.meta_insert_new(name, &crate::jose::b64_encode(fresh)).await?;
        let stored: String = self.meta(name).await?.ok_or(StoreError::Conflict)?;
        crate::jose::b64_decode(&stored)
            .map_err(|e| StoreError::Corrupt { tree: "meta", message: format!("{name}: {e}") })
    }

    /// One statement: the old value read in the same snapshot the upsert writes in.
    async fn swap_shared_value(&self, name: &str, value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let sql = "WITH old AS (SELECT body FROM meta WHERE key = $1), \
                   new AS (INSERT INTO meta (key, version, body) VALUES ($1, 1, $2) \
                   ON CONFLICT (key) DO UPDATE SET version = meta.version + 1, body = EXCLUDED.body) \
                   SELECT body FROM old";
        let row = query_opt(&client, sql, &[&name, &json(&crate::jose::b64_encode(value))]).await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = body(&row, 0, "meta")?;
        crate::jose::b64_decode(&stored)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { tree: "meta", message: format!("{name}: {e}") })
    }

    /// One statement decides: the insert of a key not there yet.
    async fn consume_acme_nonce(&self, key: &str, expires: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let sql = "INSERT INTO replay (kind, key, expires) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        Ok(exec(&client, sql, &[&ACME_NONCE, &key, &expires]).await? == 1)
    }

    /// The insert decides: a new key, or an expired one taken over, is one row; a live
    /// one is none (a replay). Past `limits.dpop_jti_max` live keys, `Full`.
    async fn remember_dpop_jti(&self, key: &str, expires: i64, now: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let j = &self.jti;
        let capacity = j.capacity.load(Ordering::Relaxed);
        // Below the bound (the usual case) the insert alone decides, in one round trip;
        // at it, a replay is still a replay (`false`), and a new key is refused.
        if j.live.load(Ordering::Relaxed) >= capacity {
            let live = "SELECT 1 FROM replay WHERE kind = $1 AND key = $2 AND expires > $3";
            if query_opt(&client, live, &[&DPOP_JTI, &key, &now]).await?.is_some() {
                return Ok(false);
            }
            if j.purged_at.swap(now, Ordering::Relaxed) >= now || self.purge_dpop_jti(now).await? >= capacity {
                return Err(StoreError::Full(
                    "too many DPoP proofs are being remembered for replay detection (limits.dpop_jti_max); retry \
                     later"
                        .into(),
                ));
            }
        }
        let sql = "INSERT INTO replay (kind, key, expires) VALUES ($1, $2, $3) ON CONFLICT (kind, key) \
                   DO UPDATE SET expires = EXCLUDED.expires WHERE replay.expires <= $4";
        let fresh = exec(&client, sql, &[&DPOP_JTI, &key, &expires, &now]).await? == 1;
        if fresh {
            j.live.fetch_add(1, Ordering::Relaxed);
            // Every 1024 proofs, drop the keys whose window has passed.
            if j.inserts.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
                self.purge_dpop_jti(now).await?;
            }
        }
        Ok(fresh)
    }

    async fn put_device_nonce(&self, device: &str, nonce: &str, expires: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        let sql = "INSERT INTO device_nonces (device_id, nonce, expires) VALUES ($1, $2, $3) \
                   ON CONFLICT (device_id) DO UPDATE SET nonce = EXCLUDED.nonce, expires = EXCLUDED.expires";
        exec(&client, sql, &[&device, &nonce, &expires]).await?;
        Ok(())
    }

    async fn purge_expired_replay(&self, now: UnixTime, batch: usize) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let keys = "DELETE FROM replay WHERE (kind, key) IN \
                    (SELECT kind, key FROM replay WHERE expires <= $1 LIMIT $2)";
        let nonces = "DELETE FROM device_nonces WHERE device_id IN \
                      (SELECT device_id FROM device_nonces WHERE expires < $1 LIMIT $2)";
        let gone = exec(&client, keys, &[&now, &batch]).await?;
        if gone > 0 {
            self.jti.live.fetch_sub(gone.min(self.jti.live.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
        let purged = gone + exec(&client, nonces, &[&now, &batch]).await?;
        Ok(usize::try_from(purged).unwrap_or(usize::MAX))
    }

    /// One statement: whoever deletes the row has the nonce.
    async fn take_device_nonce(&self, device: &str) -> Result<(String, i64), StoreError> {
        let client = self.client().await?;
        let sql = "DELETE FROM device_nonces WHERE device_id = $1 RETURNING nonce, expires";
        let row = query_opt(&client, sql, &[&device]).await?.ok_or(StoreError::NotFound)?;
        Ok((text(&row, 0, "device_nonces")?, row.try_get(1)?))
    }
}
