//! Single-use values in sled: the DPoP nonce secret, replay keys, device nonces.

use super::*;

#[async_trait]
impl ReplayStore for SledStore {
    async fn shared_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = name.as_bytes();
        let previous = self.inner.meta.compare_and_swap(key, None as Option<&[u8]>, Some(fresh)).map_err(backend)?;
        self.durable().await?;
        match previous {
            Ok(()) => Ok(fresh.to_vec()),
            Err(cas) => cas.current.map(|v| v.to_vec()).ok_or(StoreError::Conflict),
        }
    }

    async fn swap_shared_value(&self, name: &str, value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let previous = self.inner.meta.insert(name.as_bytes(), value).map_err(backend)?;
        self.durable().await?;
        Ok(previous.map(|v| v.to_vec()))
    }

    async fn consume_acme_nonce(&self, key: &str, expires: i64) -> Result<bool, StoreError> {
        let tree = &self.inner.acme_nonces;
        let fresh = tree
            .compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(&expires.to_be_bytes()[..]))
            .map_err(backend)?
            .is_ok();
        if fresh {
            self.durable().await?;
        }
        Ok(fresh)
    }

    async fn remember_dpop_jti(&self, key: &str, expires: i64, now: i64) -> Result<bool, StoreError> {
        use Ordering::Relaxed;
        let i = &self.inner;
        let tree = &i.dpop_jti;
        let fresh = loop {
            let current = tree.get(key.as_bytes()).map_err(backend)?;
            let expired = current.as_ref().is_some_and(|v| stored_time(v) <= now);
            if current.is_some() && !expired {
                break false;
            }
            let new_entry = current.is_none();
            let capacity = i.jti_capacity.load(Relaxed);
            if new_entry
                && i.jti_live.load(Relaxed) >= capacity
                && (i.jti_purged_at.swap(now, Relaxed) >= now || self.purge_dpop_jti(now)? >= capacity)
            {
                return Err(StoreError::Full(
                    "too many DPoP proofs are being remembered for replay detection (limits.dpop_jti_max); retry \
                     later"
                        .into(),
                ));
            }
            match tree.compare_and_swap(key.as_bytes(), current, Some(&expires.to_be_bytes()[..])).map_err(backend)? {
                Ok(()) => {
                    if new_entry {
                        i.jti_live.fetch_add(1, Relaxed);
                    }
                    break true;
                }
                Err(_) => continue,
            }
        };
        if fresh {
            // Every 1024 proofs, drop the entries whose window has passed.
            if i.jti_inserts.fetch_add(1, Relaxed) % 1024 == 1023 {
                self.purge_dpop_jti(now)?;
            }
            self.durable().await?;
        }
        Ok(fresh)
    }

    async fn put_device_nonce(&self, device: &str, nonce: &str, expires: i64) -> Result<(), StoreError> {
        let mut value = expires.to_be_bytes().to_vec();
        value.extend_from_slice(nonce.as_bytes());
        self.inner.oauth.device_nonces.insert(device.as_bytes(), value).map_err(backend)?;
        self.durable().await
    }

    /// The replay keys all go at once (one scan, as the bound's own purge does); device
    /// nonces and used shared ACME nonces in batches.
    async fn purge_expired_replay(&self, now: i64, batch: usize) -> Result<usize, StoreError> {
        let i = &self.inner;
        let before = i.jti_live.load(Ordering::Relaxed);
        let remaining = self.purge_dpop_jti(now)?;
        let mut purged = usize::try_from(before.saturating_sub(remaining)).unwrap_or(usize::MAX);
        for tree in [&i.oauth.device_nonces, &i.acme_nonces] {
            let mut removed = 0;
            for entry in tree.iter() {
                if removed >= batch {
                    break;
                }
                let (k, v) = entry.map_err(backend)?;
                // The value holds the expiry first, as big-endian seconds.
                if stored_time(&v) < now
                    && tree.compare_and_swap(k, Some(v), None as Option<&[u8]>).map_err(backend)?.is_ok()
                {
                    removed += 1;
                }
            }
            purged += removed;
        }
        if purged > 0 {
            self.durable().await?;
        }
        Ok(purged)
    }

    async fn take_device_nonce(&self, device: &str) -> Result<(String, i64), StoreError> {
        let v =
            self.inner.oauth.device_nonces.remove(device.as_bytes()).map_err(backend)?.ok_or(StoreError::NotFound)?;
        self.durable().await?;
        let mut b = [0u8; 8];
        b.copy_from_slice(v.get(..8).ok_or(StoreError::Corrupt { tree: "device_nonces", message: "short".into() })?);
        Ok((String::from_utf8_lossy(v.get(8..).unwrap_or_default()).into_owned(), i64::from_be_bytes(b)))
    }
}
