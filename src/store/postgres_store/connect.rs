//! Where to connect: `storage.url`, completed as libpq completes it (PGHOST, PGPORT,
//! PGDATABASE, PGUSER, PGPASSWORD, and the password file PGPASSFILE or ~/.pgpass), so
//! credentials need not be in the configuration. No password is ever logged.

use std::path::PathBuf;

use tokio_postgres::config::Host;

use super::StoreError;
use super::tls::{self, TlsOptions};

/// The connection settings of `url` (`postgres://…` or libpq `key=value` words), with
/// what it leaves out taken from libpq's environment variables and password file.
pub(super) fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    Ok(connection(url)?.0)
}

/// The connection settings of `url` and how to secure them (see `tls`).
pub(super) fn connection(url: &str) -> Result<(tokio_postgres::Config, TlsOptions), StoreError> {
    let env = |name: &str| std::env::var(name).ok();
    let (rest, tls) = tls::split_options(url, &env)?;
    let mut c = config_with(&rest, &env)?;
    c.ssl_mode(tls.mode);
    // Acknowledged means committed to the WAL on disk, whatever the server's default says.
    let options = format!("{} -c synchronous_commit=on", c.get_options().unwrap_or_default());
    c.options(options.trim_start().to_owned());
    Ok((c, tls))
}

fn config_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<tokio_postgres::Config, StoreError> {
    let mut c: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("storage.url is not a PostgreSQL connection string: {e}")))?;
    if c.get_hosts().is_empty() {
        for host in env("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into()).split(',') {
            if host.starts_with('/') {
                c.host_path(host);
            } else {
                c.host(host);
            }
        }
    }
    if c.get_ports().is_empty()
        && let Some(port) = env("PGPORT").and_then(|p| p.parse().ok())
    {
        c.port(port);
    }
    if c.get_user().is_none()
        && let Some(user) = env("PGUSER").or_else(|| env("USER"))
    {
        c.user(user);
    }
    if c.get_dbname().is_none()
        && let Some(db) = env("PGDATABASE").or_else(|| c.get_user().map(str::to_owned))
    {
        c.dbname(db);
    }
    if c.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            c.password(password);
        } else if let Some(password) = from_password_file(&c, env) {
            c.password(password);
        }
    }
    Ok(c)
}

/// The password for `c` in the password file (libpq §34.16: lines of
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`;
/// a Unix socket matches `localhost`).
fn from_password_file(c: &tokio_postgres::Config, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let path =
        env("PGPASSFILE").map(PathBuf::from).or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match c.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        Host::Unix(_) => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
    let wanted = [host.as_str(), port.as_str(), c.get_dbname().unwrap_or_default(), c.get_user().unwrap_or_default()];
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let fields = split_escaped(line);
        let [h, p, d, u, password] = fields.as_slice() else { return None };
        [h, p, d, u].iter().zip(wanted).all(|(f, w)| f.as_str() == "*" || f.as_str() == w).then(|| password.clone())
    })
}

fn split_escaped(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut escaped) = (Vec::new(), String::new(), false);
    for ch in line.chars() {
        match (escaped, ch) {
            (true, _) => {
                field.push(ch);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, ':') => fields.push(std::mem::take(&mut field)),
            (false, _) => field.push(ch),
        }
    }
    fields.push(field);
    fields
}

/// `url` as safe to log: where and as whom, never the password.
pub fn database_url(url: &str) -> String {
    match config(url) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    Host::Tcp(h) => h.clone(),
                    Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            format!(
                "postgres host={} dbname={} user={}",
                hosts.join(","),
                c.get_dbname().unwrap_or_default(),
                c.get_user().unwrap_or_default()
            )
        }
        Err(_) => "postgres (unparsable storage.url)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_environment_fills_in_what_the_url_leaves_out() {
        let vars = env(&[("PGHOST", "/tmp/pg"), ("PGUSER", "idca"), ("PGPASSWORD", "s3cret")]);
        let c = config_with("postgres:///ca", &vars).unwrap();
        assert_eq!(c.get_hosts(), &[Host::Unix("/tmp/pg".into())]);
        assert_eq!((c.get_user(), c.get_dbname()), (Some("idca"), Some("ca")));
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        let given = config_with("postgres://alice:pw@db.test:6000/x", &vars).unwrap();
        assert_eq!((given.get_user(), given.get_password()), (Some("alice"), Some(&b"pw"[..])));
        assert_eq!(given.get_ports(), &[6000]);
        assert!(config_with("postgres://[", &vars).is_err());
    }

    #[test]
    fn the_password_file_matches_with_wildcards_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "# comment\nother:*:*:*:no\ndb.test:5432:ca:idca:pa\\:ss\n*:*:*:idca:any\n").unwrap();
        let path: &'static str = Box::leak(file.display().to_string().into_boxed_str());
        let vars = move |name: &str| (name == "PGPASSFILE").then(|| path.to_owned());
        let c = config_with("host=db.test dbname=ca user=idca", &vars).unwrap();
        assert_eq!(c.get_password(), Some(&b"pa:ss"[..]));
        let c = config_with("host=elsewhere dbname=x user=idca", &vars).unwrap();
        assert_eq!(c.get_password(), Some(&b"any"[..]));
        let c = config_with("host=elsewhere dbname=x user=bob", &vars).unwrap();
        assert_eq!(c.get_password(), None);
    }

    #[test]
    fn the_logged_form_has_no_password() {
        let shown = database_url("postgres://alice:hunter2@db.test/ca");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.test") && shown.contains("alice"), "{shown}");
    }
}
