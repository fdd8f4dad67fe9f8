//! The CA and its certificates in sled.

use super::*;

#[async_trait]
impl PkiStore for SledStore {
    async fn ca_material(&self) -> Result<Option<CaMaterial>, StoreError> {
        match Self::get(&self.inner.meta, "meta", CA_KEY) {
            Ok(v) => Ok(Some(v.value)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn init_ca_material(&self, material: &CaMaterial) -> Result<CaMaterial, StoreError> {
        let bytes = encode(material, Version::FIRST)?;
        let previous = self.inner.meta.compare_and_swap(CA_KEY, None as Option<&[u8]>, Some(bytes)).map_err(backend)?;
        self.durable().await?;
        match previous {
            Ok(()) => Ok(material.clone()),
            Err(cas) => match cas.current {
                Some(current) => Ok(decode::<CaMaterial>("meta", &current)?.value),
                None => Err(StoreError::Conflict),
            },
        }
    }

    async fn rotate_ca_material(&self, seen: &CaMaterial, new: &CaMaterial) -> Result<(), StoreError> {
        let new_bytes = encode(new, Version::FIRST)?;
        self.inner
            .meta
            .transaction(|meta| {
                let current = match meta.get(CA_KEY)? {
                    Some(b) => match decode::<CaMaterial>("meta", &b) {
                        Ok(v) => v.value,
                        Err(e) => return abort(e),
                    },
                    None => return abort(StoreError::NotFound),
                };
                if &current != seen {
                    return abort(StoreError::Conflict);
                }
                let mut retired: Vec<CaMaterial> = match meta.get(RETIRED_CA_KEY)? {
                    Some(b) => match decode("meta", &b) {
                        Ok(v) => v.value,
                        Err(e) => return abort(e),
                    },
                    None => Vec::new(),
                };
                retired.push(current);
                let retired_bytes = match encode(&retired, Version::FIRST) {
                    Ok(b) => b,
                    Err(e) => return abort(e),
                };
                meta.insert(RETIRED_CA_KEY, retired_bytes)?;
                meta.insert(CA_KEY, new_bytes.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.durable().await
    }

    async fn retired_ca_material(&self) -> Result<Vec<CaMaterial>, StoreError> {
        match Self::get(&self.inner.meta, "meta", RETIRED_CA_KEY) {
            Ok(v) => Ok(v.value),
            Err(StoreError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn ca_chains(&self) -> Result<Option<CaChains>, StoreError> {
        match Self::get(&self.inner.meta, "meta", CA_CHAINS_KEY) {
            Ok(v) => Ok(Some(v.value)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn swap_ca_chains(&self, seen: Option<&CaChains>, new: &CaChains) -> Result<(), StoreError> {
        let meta = &self.inner.meta;
        // The bytes `seen` was read from decide the swap: a decoded match is checked
        // first, then those exact bytes must still be there.
        let current = meta.get(CA_CHAINS_KEY).map_err(backend)?;
        let current_value = current.as_ref().map(|b| decode::<CaChains>("meta", b)).transpose()?.map(|v| v.value);
        if current_value.as_ref() != seen {
            return Err(StoreError::Conflict);
        }
        let swapped =
            meta.compare_and_swap(CA_CHAINS_KEY, current, Some(encode(new, Version::FIRST)?)).map_err(backend)?;
        swapped.map_err(|_| StoreError::Conflict)?;
        self.durable().await
    }

    async fn certificate(&self, serial: &Serial) -> Result<Versioned<IssuedCertificate>, StoreError> {
        Self::get(&self.inner.certs, "certs", serial.0.as_bytes())
    }

    async fn create_certificate(&self, cert: &IssuedCertificate) -> Result<(), StoreError> {
        self.inner.quota.admit()?;
        insert_new(&self.inner.certs, cert.serial.0.as_bytes(), encode(cert, Version::FIRST)?)?;
        self.durable().await
    }

    async fn certificates(&self) -> Result<Vec<Versioned<IssuedCertificate>>, StoreError> {
        self.inner
            .certs
            .iter()
            .map(|entry| {
                let (_, v) = entry.map_err(backend)?;
                decode("certs", &v)
            })
            .collect()
    }

    async fn update_certificate(&self, cert: &IssuedCertificate, seen: Version) -> Result<Version, StoreError> {
        let i = &self.inner;
        let bytes = encode(cert, seen.next())?;
        let revoked = cert.revoked.map(|r| serde_json::to_vec(&r)).transpose().map_err(backend)?;
        (&i.certs, &i.revoked)
            .transaction(|(certs, revoked_tree)| {
                let key = cert.serial.0.as_bytes();
                if tx_version(certs, "certs", key)? != seen {
                    return abort(StoreError::Conflict);
                }
                certs.insert(key, bytes.as_slice())?;
                match &revoked {
                    Some(r) => revoked_tree.insert(key, r.as_slice())?,
                    None => revoked_tree.remove(key)?,
                };
                Ok(())
            })
            .map_err(tx_err)?;
        // Before the flush: a CRL built from here on may already list it.
        i.revocation_epoch.fetch_add(1, Ordering::SeqCst);
        self.durable().await?;
        Ok(seen.next())
    }

    async fn revoked_certificates(&self) -> Result<Vec<(Serial, crate::model::Revocation)>, StoreError> {
        self.inner
            .revoked
            .iter()
            .map(|entry| {
                let (k, v) = entry.map_err(backend)?;
                let r = serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt { tree: "revoked", message: e.to_string() })?;
                Ok((Serial(String::from_utf8_lossy(&k).into_owned()), r))
            })
            .collect()
    }

    async fn revocation_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.inner.revocation_epoch.load(Ordering::SeqCst))
    }
}
