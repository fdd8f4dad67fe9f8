//! A PostgreSQL store's whole content, and a copy of another store's into an empty one,
//! for `idca db copy`.

use super::*;
use crate::store::Snapshot;

/// Every table that holds records (the target of a copy must have none).
const TABLES: &[&str] = &[
    "meta",
    "accounts",
    "orders",
    "authorizations",
    "certificates",
    "oauth_keys",
    "oauth_pending",
    "oauth_pushed",
    "oauth_sessions",
    "oauth_codes",
    "oauth_grants",
    "oauth_refresh",
    "device_authorizations",
    "oauth_clients",
    "devices",
    "device_nonces",
    "replay",
];

async fn meta_put<T: Serialize + std::fmt::Debug + Sync>(
    c: &impl GenericClient,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    exec(c, "INSERT INTO meta (key, version, body) VALUES ($1, 1, $2)", &[&key, &json(value)]).await?;
    Ok(())
}

/// `(key, version, body)` rows of `sql` as keyed records.
async fn keyed<T: DeserializeOwned>(
    c: &impl GenericClient,
    sql: &str,
    table: &'static str,
) -> Result<Vec<(String, Versioned<T>)>, StoreError> {
    let rows = query(c, sql, &[]).await?;
    rows.iter()
        .map(|r| {
            let value = Versioned { version: version_of(r, 1, table)?, value: body(r, 2, table)? };
            Ok((text(r, 0, table)?, value))
        })
        .collect()
}

async fn all_versioned<T: DeserializeOwned>(
    c: &impl GenericClient,
    sql: &str,
    table: &'static str,
) -> Result<Vec<Versioned<T>>, StoreError> {
    query(c, sql, &[]).await?.iter().map(|r| versioned(r, table)).collect()
}

/// `(key, body)` rows of `sql`.
async fn all_plain<T: DeserializeOwned>(
    c: &impl GenericClient,
    sql: &str,
    table: &'static str,
) -> Result<Vec<(String, T)>, StoreError> {
    query(c, sql, &[]).await?.iter().map(|r| Ok((text(r, 0, table)?, body(r, 1, table)?))).collect()
}

impl PgStore {
    /// Whether the database holds no record at all.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        for table in TABLES {
            if query_opt(&client, &format!("SELECT 1 FROM {table} LIMIT 1"), &[]).await?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes every record of `s`, with its version, in one transaction.
    pub async fn import(&self, s: &Snapshot) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            if let Some(ca) = &s.ca {
                meta_put(&tx, CA_KEY, ca).await?;
            }
            if !s.retired_ca.is_empty() {
                meta_put(&tx, RETIRED_CA_KEY, &s.retired_ca).await?;
            }
            if let Some(chains) = &s.ca_chains {
                meta_put(&tx, CA_CHAINS_KEY, chains).await?;
            }
            if let Some(secret) = &s.dpop_nonce_secret {
                meta_put(&tx, DPOP_NONCE_SECRET_KEY, &crate::jose::b64_encode(secret)).await?;
            }
            for a in &s.accounts {
                let sql = "INSERT INTO accounts (id, jkt, eab_kid, version, body) VALUES ($1, $2, $3, $4, $5)";
                let v = &a.value;
                exec(&tx, sql, &[&v.id.0, &v.jkt.0, &v.eab_kid, &db_version(a.version), &json(v)]).await?;
            }
            for o in &s.orders {
                let sql = "INSERT INTO orders (id, account_id, created, version, body, open_until) \
                           VALUES ($1, $2, $3, $4, $5, $6)";
                let v = &o.value;
                let params: [&(dyn ToSql + Sync); 6] =
                    [&v.id.0, &v.account.0, &v.created, &db_version(o.version), &json(v), &acme::open_until(v)];
                exec(&tx, sql, &params).await?;
            }
            for a in &s.authorizations {
                let sql = "INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, \
                           processing, version, body) VALUES ($1, $2, $3, $4, $5, $6, $7)";
                let v = &a.value;
                let params: [&(dyn ToSql + Sync); 7] = [
                    &v.id.0,
                    &v.account.0,
                    &v.identifier.kind.as_str(),
                    &v.identifier.value,
                    &acme::processing(v),
                    &db_version(a.version),
                    &json(v),
                ];
                exec(&tx, sql, &params).await?;
            }
            for c in &s.certificates {
                let sql = "INSERT INTO certificates (serial, revoked, version, body) VALUES ($1, $2, $3, $4)";
                let v = &c.value;
                exec(&tx, sql, &[&v.serial.0, &v.revoked.is_some(), &db_version(c.version), &json(v)]).await?;
            }
            for k in &s.oauth_keys {
                let sql = "INSERT INTO oauth_keys (kid, created, body) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[&k.kid, &k.created, &json(k)]).await?;
            }
            for (id, p) in &s.pending {
                let sql = "INSERT INTO oauth_pending (id, expires, body) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[id, &p.expires, &json(p)]).await?;
            }
            for (id, session) in &s.sessions {
                let sql = "INSERT INTO oauth_sessions (id, expires, body) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[&id.0, &session.expires, &json(session)]).await?;
            }
            for (hash, code) in &s.codes {
                let sql = "INSERT INTO oauth_codes (hash, redeemed_grant, expires, body) VALUES ($1, $2, $3, $4)";
                exec(&tx, sql, &[&hash.0, &code.redeemed, &code.expires, &json(code)]).await?;
            }
            for g in &s.grants {
                let sql = "INSERT INTO oauth_grants (id, version, body) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[&g.value.id, &db_version(g.version), &json(&g.value)]).await?;
            }
            for (hash, r) in &s.refresh_tokens {
                let sql = "INSERT INTO oauth_refresh (hash, grant_id, version, body) VALUES ($1, $2, $3, $4)";
                exec(&tx, sql, &[&hash.0, &r.value.grant, &db_version(r.version), &json(&r.value)]).await?;
            }
            for (hash, d) in &s.device_authorizations {
                let sql = "INSERT INTO device_authorizations (hash, user_code, expires, version, body) \
                           VALUES ($1, $2, $3, $4, $5)";
                let v = &d.value;
                exec(&tx, sql, &[&hash.0, &v.user_code, &v.expires, &db_version(d.version), &json(v)]).await?;
            }
            for c in &s.clients {
                let sql = "INSERT INTO oauth_clients (client_id, version, body) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[&c.value.client_id, &db_version(c.version), &json(&c.value)]).await?;
            }
            for d in &s.devices {
                let sql = "INSERT INTO devices (id, user_name, body) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[&d.id, &d.user, &json(d)]).await?;
            }
            for (device, nonce, expires) in &s.device_nonces {
                let sql = "INSERT INTO device_nonces (device_id, nonce, expires) VALUES ($1, $2, $3)";
                exec(&tx, sql, &[device, nonce, expires]).await?;
            }
            for (key, expires) in &s.dpop_jti {
                let sql = "INSERT INTO replay (kind, key, expires) VALUES (2, $1, $2)";
                exec(&tx, sql, &[key, expires]).await?;
            }
            Ok(())
        })?;
        let live = u64::try_from(s.dpop_jti.len()).unwrap_or(u64::MAX);
        self.jti.live.fetch_add(live, Ordering::Relaxed);
        Ok(())
    }

    /// Everything this store holds.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let c = self.client().await?;
        let secret: Option<String> = self.meta(DPOP_NONCE_SECRET_KEY).await?;
        let dpop_nonce_secret = secret
            .map(|s| crate::jose::b64_decode(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt { tree: "meta", message: e.to_string() })?;
        let snapshot = Snapshot {
            ca: self.ca_material().await?,
            retired_ca: self.retired_ca_material().await?,
            ca_chains: self.ca_chains().await?,
            dpop_nonce_secret,
            accounts: all_versioned(&c, "SELECT version, body FROM accounts", "accounts").await?,
            orders: all_versioned(&c, "SELECT version, body FROM orders", "orders").await?,
            authorizations: all_versioned(&c, "SELECT version, body FROM authorizations", "authorizations").await?,
            certificates: all_versioned(&c, "SELECT version, body FROM certificates", "certificates").await?,
            oauth_keys: self.oauth_keys().await?,
            pending: all_plain(&c, "SELECT id, body FROM oauth_pending", "oauth_pending").await?,
            sessions: all_plain(&c, "SELECT id, body FROM oauth_sessions", "oauth_sessions")
                .await?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v))
                .collect(),
            codes: all_plain(&c, "SELECT hash, body FROM oauth_codes", "oauth_codes")
                .await?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v))
                .collect(),
            grants: all_versioned(&c, "SELECT version, body FROM oauth_grants", "oauth_grants").await?,
            refresh_tokens: keyed(&c, "SELECT hash, version, body FROM oauth_refresh", "oauth_refresh")
                .await?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v))
                .collect(),
            device_authorizations: keyed(
                &c,
                "SELECT hash, version, body FROM device_authorizations",
                "device_authorizations",
            )
            .await?
            .into_iter()
            .map(|(k, v)| (SecretHash(k), v))
            .collect(),
            clients: all_versioned(&c, "SELECT version, body FROM oauth_clients", "oauth_clients").await?,
            devices: query(&c, "SELECT body FROM devices", &[])
                .await?
                .iter()
                .map(|r| body(r, 0, "devices"))
                .collect::<Result<_, _>>()?,
            device_nonces: query(&c, "SELECT device_id, nonce, expires FROM device_nonces", &[])
                .await?
                .iter()
                .map(|r| Ok((text(r, 0, "device_nonces")?, text(r, 1, "device_nonces")?, r.try_get(2)?)))
                .collect::<Result<_, StoreError>>()?,
            dpop_jti: query(&c, "SELECT key, expires FROM replay WHERE kind = 2", &[])
                .await?
                .iter()
                .map(|r| Ok((text(r, 0, "replay")?, r.try_get(1)?)))
                .collect::<Result<_, StoreError>>()?,
        };
        Ok(snapshot.sorted())
    }
}
