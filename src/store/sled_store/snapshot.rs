//! A sled store's whole content, for `idca db copy`.

use super::*;
use crate::store::Snapshot;

/// Every record of `tree` with its key.
fn records<T: DeserializeOwned>(tree: &Tree, name: &'static str) -> Result<Vec<(String, Versioned<T>)>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (k, v) = entry.map_err(backend)?;
            Ok((String::from_utf8_lossy(&k).into_owned(), decode(name, &v)?))
        })
        .collect()
}

fn values<T: DeserializeOwned>(tree: &Tree, name: &'static str) -> Result<Vec<Versioned<T>>, StoreError> {
    Ok(records(tree, name)?.into_iter().map(|(_, v)| v).collect())
}

/// `(key, expires)` of a tree whose values start with big-endian expiry seconds, with
/// what follows them.
fn expiring(tree: &Tree) -> Result<Vec<(String, i64, String)>, StoreError> {
    tree.iter()
        .map(|entry| {
            let (k, v) = entry.map_err(backend)?;
            let rest = String::from_utf8_lossy(v.get(8..).unwrap_or_default()).into_owned();
            Ok((String::from_utf8_lossy(&k).into_owned(), stored_time(&v), rest))
        })
        .collect()
}

impl SledStore {
    /// Everything this store holds (indexes are derived again by the target).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let i = &self.inner;
        let o = &i.oauth;
        let secret = i.meta.get(b"dpop_nonce_secret").map_err(backend)?.map(|v| v.to_vec());
        let snapshot = Snapshot {
            ca: self.ca_material().await?,
            retired_ca: self.retired_ca_material().await?,
            ca_chains: self.ca_chains().await?,
            dpop_nonce_secret: secret,
            accounts: values(&i.accounts, "accounts")?,
            orders: values(&i.orders, "orders")?,
            authorizations: values(&i.authzs, "authzs")?,
            certificates: values(&i.certs, "certs")?,
            oauth_keys: self.oauth_keys().await?,
            pending: records::<PendingAuthorization>(&o.pending, "oauth_pending")?
                .into_iter()
                .map(|(k, v)| (k, v.value))
                .collect(),
            sessions: records::<Session>(&o.sessions, "oauth_sessions")?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v.value))
                .collect(),
            codes: records::<AuthorizationCode>(&o.codes, "oauth_codes")?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v.value))
                .collect(),
            grants: values(&o.grants, "oauth_grants")?,
            refresh_tokens: records(&o.refresh, "oauth_refresh")?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v))
                .collect(),
            device_authorizations: records(&o.devices, "oauth_devices")?
                .into_iter()
                .map(|(k, v)| (SecretHash(k), v))
                .collect(),
            clients: values(&o.clients, "oauth_clients")?,
            devices: values::<Device>(&o.user_devices, "user_devices")?.into_iter().map(|v| v.value).collect(),
            device_nonces: expiring(&o.device_nonces)?.into_iter().map(|(k, e, n)| (k, n, e)).collect(),
            dpop_jti: expiring(&i.dpop_jti)?.into_iter().map(|(k, e, _)| (k, e)).collect(),
        };
        Ok(snapshot.sorted())
    }
}
