//! Subcommands other than `serve`.

pub mod acme_client;
pub mod db;
pub mod enroll;
pub mod pki;
pub mod trust;

use crate::app::{AppError, load_or_create_ca, open_store};
use crate::config::Config;

/// `idca root`: prints the root certificate (creating the CA on first use). While a
/// server holds the store, reads the `root.pem` it wrote into the data directory.
pub async fn root(config: &Config) -> Result<String, AppError> {
    let written = config.storage.data_dir.join("root.pem");
    match open_store(config).await {
        Ok(store) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let material = load_or_create_ca(config, store.as_ref(), now).await?;
            Ok(crate::ca::cert_pem(&material.root_cert))
        }
        Err(e) => std::fs::read_to_string(&written).map_err(|_| e),
    }
}

/// `idca oauth-rotate-key`: a new signing key signs from now on; the old ones stay in the
/// JWKS (retired) so tokens they signed still verify until they expire. Run it while the
/// server is stopped (the store is locked while it runs).
pub async fn rotate_oauth_key(config: &Config) -> Result<String, AppError> {
    let store = open_store(config).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let bad = |e: crate::jose::JoseError| AppError::Io(e.to_string());
    let pkcs8 = crate::jose::SigningKey::generate_pkcs8().map_err(bad)?;
    let kid = crate::jose::SigningKey::from_pkcs8(&pkcs8).map_err(bad)?.kid().to_owned();
    store
        .rotate_oauth_key(&crate::model::oauth::OAuthKey { kid: kid.clone(), pkcs8, created: now, retired: None })
        .await?;
    Ok(kid)
}
