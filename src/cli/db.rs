//! `idca db status`, `idca db migrate` (the PostgreSQL schema of `storage.url`) and
//! `idca db copy` (moving a sled data directory into PostgreSQL).

use std::path::Path;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::store::{PgStore, SledStore, StoreError, database_url};

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

/// `idca db copy`: the sled store of the data directory `from` into the empty database
/// `to`, in one transaction, then read back and compared record by record.
pub async fn copy(from: &Path, to: &str, cache_capacity_mib: u64) -> Result<String, Fail> {
    if !from.join("db").exists() {
        return Err(format!("{} holds no sled store (no {}/db)", from.display(), from.display()));
    }
    let source = SledStore::open(&from.join("db"), cache_capacity_mib).map_err(|e| match e {
        StoreError::Backend(m) if m.contains("in use") => format!("{m}: stop the server first"),
        other => other.to_string(),
    })?;
    let snapshot = source.snapshot().await.map_err(|e| e.to_string())?;
    if snapshot.ca.is_none() {
        return Err(format!("{} holds no CA: nothing to copy", from.display()));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let target = PgStore::open(to, 2, now).await.map_err(|e| e.to_string())?;
    if !target.is_empty().await.map_err(|e| e.to_string())? {
        return Err(format!(
            "{} already holds records: idca db copy only fills an empty database (nothing was changed)",
            database_url(to)
        ));
    }
    target.import(&snapshot).await.map_err(|e| format!("the copy failed and was rolled back: {e}"))?;
    let copied = target.snapshot().await.map_err(|e| e.to_string())?;
    let counts = snapshot.counts();
    if copied != snapshot {
        let differs: Vec<&str> =
            counts.iter().zip(copied.counts()).filter(|((_, a), (_, b))| a != b).map(|((name, _), _)| *name).collect();
        return Err(format!(
            "the copy in {} does not read back equal to the source (differs in: {}); do not switch to it",
            database_url(to),
            if differs.is_empty() { "record contents".to_owned() } else { differs.join(", ") }
        ));
    }
    let mut out = format!("copied {} into {}:\n", from.display(), database_url(to));
    for (name, n) in counts.iter().filter(|(_, n)| *n > 0) {
        out.push_str(&format!("  {n} {name}\n"));
    }
    out.push_str(&format!(
        "verified: every record reads back equal. Set storage.url (or IDCA_STORAGE_URL) to the database and \
         keep --data {} (root.pem and the demo password stay there).\n",
        from.display()
    ));
    Ok(out)
}
