//! The CA and its certificates in PostgreSQL.

use super::*;

const CERT_EXISTS: &str = "SELECT 1 FROM certificates WHERE serial = $1";

#[async_trait]
impl PkiStore for PgStore {
    async fn ca_material(&self) -> Result<Option<CaMaterial>, StoreError> {
        self.meta(CA_KEY).await
    }

    /// The first to insert wins; everyone gets the winner's material.
    async fn init_ca_material(&self, material: &CaMaterial) -> Result<CaMaterial, StoreError> {
        self.meta_insert_new(CA_KEY, material).await?;
        self.meta(CA_KEY).await?.ok_or(StoreError::Conflict)
    }

    /// One transaction whose first statement locks the current CA: it must still be
    /// `seen`; it joins the retired ones and `new` takes its place.
    async fn rotate_ca_material(&self, seen: &CaMaterial, new: &CaMaterial) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            let row = query_opt(&tx, "SELECT body FROM meta WHERE key = $1 FOR UPDATE", &[&CA_KEY]).await?;
            let current: CaMaterial = body(&row.ok_or(StoreError::NotFound)?, 0, "meta")?;
            if &current != seen {
                return Err(StoreError::Conflict);
            }
            let row = query_opt(&tx, "SELECT body FROM meta WHERE key = $1 FOR UPDATE", &[&RETIRED_CA_KEY]).await?;
            let mut retired: Vec<CaMaterial> = row.map(|r| body(&r, 0, "meta")).transpose()?.unwrap_or_default();
            retired.push(current);
            let upsert = "INSERT INTO meta (key, version, body) VALUES ($1, 1, $2) \
                          ON CONFLICT (key) DO UPDATE SET version = meta.version + 1, body = EXCLUDED.body";
            exec(&tx, upsert, &[&RETIRED_CA_KEY, &json(&retired)]).await?;
            exec(&tx, "UPDATE meta SET version = version + 1, body = $2 WHERE key = $1", &[&CA_KEY, &json(new)])
                .await?;
            Ok(())
        })
    }

    async fn retired_ca_material(&self) -> Result<Vec<CaMaterial>, StoreError> {
        Ok(self.meta(RETIRED_CA_KEY).await?.unwrap_or_default())
    }

    async fn ca_chains(&self) -> Result<Option<CaChains>, StoreError> {
        self.meta(CA_CHAINS_KEY).await
    }

    async fn swap_ca_chains(&self, seen: Option<&CaChains>, new: &CaChains) -> Result<(), StoreError> {
        let Some(seen) = seen else {
            return match self.meta_insert_new(CA_CHAINS_KEY, new).await? {
                true => Ok(()),
                false => Err(StoreError::Conflict),
            };
        };
        transaction!(self, |tx| {
            let row = query_opt(&tx, "SELECT body FROM meta WHERE key = $1 FOR UPDATE", &[&CA_CHAINS_KEY]).await?;
            let current: CaChains = body(&row.ok_or(StoreError::Conflict)?, 0, "meta")?;
            if &current != seen {
                return Err(StoreError::Conflict);
            }
            let sql = "UPDATE meta SET version = version + 1, body = $2 WHERE key = $1";
            exec(&tx, sql, &[&CA_CHAINS_KEY, &json(new)]).await?;
            Ok(())
        })
    }

    async fn certificate(&self, serial: &Serial) -> Result<Versioned<IssuedCertificate>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT version, body FROM certificates WHERE serial = $1", &[&serial.0]).await?;
        versioned(&row.ok_or(StoreError::NotFound)?, "certificates")
    }

    async fn create_certificate(&self, cert: &IssuedCertificate) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO certificates (serial, revoked, version, body) VALUES ($1, $2, 1, $3) \
                   ON CONFLICT DO NOTHING";
        match exec(&client, sql, &[&cert.serial.0, &cert.revoked.is_some(), &json(cert)]).await? {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn certificates(&self) -> Result<Vec<Versioned<IssuedCertificate>>, StoreError> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT version, body FROM certificates ORDER BY serial", &[]).await?;
        rows.iter().map(|r| versioned(r, "certificates")).collect()
    }

    async fn update_certificate(&self, cert: &IssuedCertificate, seen: Version) -> Result<Version, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE certificates SET revoked = $2, version = version + 1, body = $3 \
                   WHERE serial = $1 AND version = $4";
        let params: [&(dyn ToSql + Sync); 4] =
            [&cert.serial.0, &cert.revoked.is_some(), &json(cert), &db_version(seen)];
        match exec(&client, sql, &params).await? {
            1 => Ok(seen.next()),
            _ => Err(lost(&client, CERT_EXISTS, &cert.serial.0).await),
        }
    }

    async fn revoked_certificates(&self) -> Result<Vec<(Serial, crate::model::Revocation)>, StoreError> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT body FROM certificates WHERE revoked ORDER BY serial", &[]).await?;
        rows.iter()
            .filter_map(|r| match body::<IssuedCertificate>(r, 0, "certificates") {
                Ok(c) => c.revoked.map(|rev| Ok((c.serial, rev))),
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    /// Moved by the triggers on `certificates` (migration 5), in the writing statement.
    async fn revocation_epoch(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT epoch FROM revocation_epoch", &[]).await?.ok_or(StoreError::NotFound)?;
        let epoch: i64 = row.try_get(0)?;
        Ok(epoch.cast_unsigned())
    }
}
