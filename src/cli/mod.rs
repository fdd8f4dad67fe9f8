//! Subcommands other than `serve`.

use crate::app::{AppError, load_or_create_ca, open_store};
use crate::config::Config;

/// `idca root`: prints the root certificate (creating the CA on first use). While a
/// server holds the store, reads the `root.pem` it wrote into the data directory.
pub async fn root(config: &Config) -> Result<String, AppError> {
    let written = config.storage.data_dir.join("root.pem");
    match open_store(config) {
        Ok(store) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let material = load_or_create_ca(config, &store, now).await?;
            Ok(crate::ca::cert_pem(&material.root_cert))
        }
        Err(e) => std::fs::read_to_string(&written).map_err(|_| e),
    }
}
