//! `idca db status` and `idca db migrate`: the PostgreSQL schema (`storage.url`).

use crate::clock::rfc3339;
use crate::config::Config;
use crate::store::{PgStore, database_url};

type Fail = String;

fn database(config: &Config) -> Result<PgStore, Fail> {
    if config.storage.url.is_empty() {
        return Err("storage.url names no database (idca keeps its state in sled, which needs no migrations)".into());
    }
    PgStore::connect(&config.storage.url, 1).map_err(|e| e.to_string())
}

/// The schema versions applied, and whether this idca's are all there.
pub async fn status(config: &Config) -> Result<String, Fail> {
    let store = database(config)?;
    let applied = store.schema_versions().await.map_err(|e| e.to_string())?;
    let latest = PgStore::latest_schema_version();
    let mut out = format!("{}\n", database_url(&config.storage.url));
    for (version, at) in &applied {
        out.push_str(&format!("schema version {version}, applied {}\n", rfc3339(*at)));
    }
    let current = applied.last().map_or(0, |(v, _)| *v);
    out.push_str(&match current.cmp(&latest) {
        std::cmp::Ordering::Equal => format!("up to date (version {latest})\n"),
        std::cmp::Ordering::Less => {
            format!("behind: this idca knows version {latest}; run `idca db migrate` (or start idca)\n")
        }
        std::cmp::Ordering::Greater => {
            format!("ahead: the database is at version {current}, this idca knows {latest}; upgrade idca\n")
        }
    });
    Ok(out)
}

/// Applies the migrations the database lacks (idca also does at start).
pub async fn migrate(config: &Config) -> Result<String, Fail> {
    let store = database(config)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let applied = store.migrate(now).await.map_err(|e| e.to_string())?;
    Ok(match applied.as_slice() {
        [] => format!("up to date (version {})\n", PgStore::latest_schema_version()),
        versions => format!("applied schema versions {versions:?}\n"),
    })
}
