//! `idca trust install | uninstall | status`: idca's root in the system trust store
//! (Debian/Ubuntu, Fedora/RHEL, Arch) and in NSS databases (Chromium, Firefox), with
//! the manual steps for everything else. Each root is stored under a name made from
//! its fingerprint, so only idca's own root is ever added or removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ca::NameConstraints;
use crate::config::Config;

use super::pki::fingerprint;
use crate::files::StagedFiles;

type Fail = String;

/// Where to install, when not detected.
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    /// Install even a root that is not name-constrained.
    pub force: bool,
    /// The system anchors directory (default: the detected distribution's).
    pub system_dir: Option<PathBuf>,
    /// Run after the directory changes (default: the distribution's, only for its own
    /// directory; `none` runs nothing).
    pub update_command: Option<String>,
    /// Leave the system store alone.
    pub no_system: bool,
    /// NSS databases (default: `~/.pki/nssdb` and Firefox profiles that exist).
    pub nss_dbs: Vec<PathBuf>,
    /// Leave NSS databases alone.
    pub no_nss: bool,
}

/// A system trust store: anchors directory, file extension, refresh command.
#[derive(Debug, Clone, PartialEq)]
struct SystemStore {
    dir: PathBuf,
    update: Option<Vec<String>>,
    /// Extra arguments to the update command after a removal (Debian's `--fresh`, which
    /// also drops the links to the removed file).
    after_removal: Vec<String>,
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The distributions' anchor directories and the commands that rebuild their bundles.
fn detect_system_store() -> Option<SystemStore> {
    let known: [(&str, &str, &[&str], &[&str]); 3] = [
        ("/usr/local/share/ca-certificates", "update-ca-certificates", &[], &["--fresh"]),
        ("/etc/pki/ca-trust/source/anchors", "update-ca-trust", &["extract"], &[]),
        ("/etc/ca-certificates/trust-source/anchors", "trust", &["extract-compat"], &[]),
    ];
    known.iter().find_map(|(dir, cmd, args, after_removal)| {
        let program = on_path(cmd)?;
        Path::new(dir).is_dir().then(|| SystemStore {
            dir: PathBuf::from(dir),
            update: Some(
                std::iter::once(program.to_string_lossy().into_owned())
                    .chain(args.iter().map(|a| (*a).to_owned()))
                    .collect(),
            ),
            after_removal: after_removal.iter().map(|a| (*a).to_owned()).collect(),
        })
    })
}

fn system_store(o: &TrustOptions) -> Option<SystemStore> {
    if o.no_system {
        return None;
    }
    let detected = detect_system_store();
    let mut store = match &o.system_dir {
        Some(dir) => SystemStore { dir: dir.clone(), update: None, after_removal: Vec::new() },
        None => detected?,
    };
    match o.update_command.as_deref() {
        Some("none") => store.update = None,
        Some(cmd) => {
            store.update = Some(cmd.split_whitespace().map(str::to_owned).collect());
            store.after_removal = Vec::new();
        }
        None => {}
    }
    Some(store)
}

/// NSS databases that exist: Chromium's shared one and every Firefox profile.
fn nss_dbs(o: &TrustOptions) -> Vec<PathBuf> {
    if o.no_nss {
        return Vec::new();
    }
    if !o.nss_dbs.is_empty() {
        return o.nss_dbs.clone();
    }
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else { return Vec::new() };
    let mut dbs: Vec<PathBuf> = [home.join(".pki/nssdb"), home.join("snap/chromium/current/.pki/nssdb")]
        .into_iter()
        .filter(|d| d.join("cert9.db").is_file())
        .collect();
    for profiles in [home.join(".mozilla/firefox"), home.join("snap/firefox/common/.mozilla/firefox")] {
        if let Ok(entries) = std::fs::read_dir(profiles) {
            dbs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.join("cert9.db").is_file()));
        }
    }
    dbs
}

/// `~/.pki/nssdb` when a Chromium-family browser is installed but has not made it yet
/// (and no databases were named).
fn missing_chromium_db(o: &TrustOptions) -> Option<PathBuf> {
    if o.no_nss || !o.nss_dbs.is_empty() {
        return None;
    }
    let browsers = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "brave-browser"];
    browsers.iter().find_map(|b| on_path(b))?;
    let db = PathBuf::from(std::env::var_os("HOME")?).join(".pki/nssdb");
    (!db.join("cert9.db").exists()).then_some(db)
}

/// The root to trust: from the data directory (`root.pem`, kept current by every
/// command that opens the CA, and readable while a server holds the store).
fn root(config: &Config) -> Result<(PathBuf, Vec<u8>), Fail> {
    let path = config.storage.data_dir.join("root.pem");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {} ({e}): run `idca init --local-pki` first, or point --data at the data directory",
            path.display()
        )
    })?;
    let der =
        crate::ca::pem_block(&text, "CERTIFICATE").ok_or_else(|| format!("{} holds no certificate", path.display()))?;
    // Absolute, for the printed steps (NODE_EXTRA_CA_CERTS and the like).
    Ok((std::fs::canonicalize(&path).unwrap_or(path), der))
}

/// This root's name in stores: `idca-root-<first 16 hex digits of its SHA-256>`.
fn store_name(der: &[u8]) -> String {
    format!("idca-root-{}", fingerprint(der).get(..16).unwrap_or_default())
}

fn run(argv: &[String]) -> Result<String, Fail> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let out = Command::new(program).args(args).output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`{}` failed ({}): {}", argv.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn certutil() -> Option<String> {
    on_path("certutil").map(|p| p.to_string_lossy().into_owned())
}

fn nss_has(certutil: &str, db: &Path, name: &str) -> bool {
    Command::new(certutil)
        .args(["-L", "-d", &format!("sql:{}", db.display()), "-n", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn manual_steps(root_path: &Path, name: &str) -> String {
    let p = root_path.display();
    format!(
        "Elsewhere, by hand:\n  \
         macOS:   sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {p}\n  \
         Windows: certutil -addstore -f ROOT {p}   (elevated prompt; or Import-Certificate -FilePath {p} \
         -CertStoreLocation Cert:\\LocalMachine\\Root)\n  \
         Java:    keytool -importcert -cacerts -storepass changeit -noprompt -alias {name} -file {p}\n  \
         Node:    export NODE_EXTRA_CA_CERTS={p}\n"
    )
}

/// `idca trust install`. Returns the report.
pub fn install(config: &Config, o: &TrustOptions) -> Result<String, Fail> {
    let (root_path, der) = root(config)?;
    if !NameConstraints::from_cert(&der).is_ok_and(|c| c.constrains_tls_names()) && !o.force {
        return Err(format!(
            "refusing to trust {}: this root is not name-constrained, so it could vouch for any site (your bank \
             included), and whoever can read {} could then intercept your HTTPS. Make a local PKI with \
             `idca --data <new dir> init --local-pki` and trust that, or pass --force if this root is really \
             meant to be trusted for every name",
            root_path.display(),
            config.storage.data_dir.display()
        ));
    }
    let name = store_name(&der);
    let pem = crate::ca::cert_pem(&der);
    let scope = NameConstraints::from_cert(&der).map(|c| c.describe()).unwrap_or_default();
    let mut report = format!("Root {} ({name})\n  it can vouch for: {scope}\n", root_path.display());
    // A system store this user cannot write is reported; NSS still goes ahead.
    let mut system_failure = None;
    match system_store(o) {
        Some(store) => {
            let file = store.dir.join(format!("{name}.crt"));
            if std::fs::read_to_string(&file).is_ok_and(|t| t == pem) {
                report.push_str(&format!("  system store: already trusted ({})\n", file.display()));
            } else {
                let mut files = StagedFiles::default();
                match files.stage(&file, pem.as_bytes(), false) {
                    Ok(()) => {
                        files.commit()?;
                        if let Some(cmd) = &store.update {
                            run(cmd)?;
                        }
                        report.push_str(&format!("  system store: added {}\n", file.display()));
                    }
                    Err(e) => {
                        let hint = need_root(e, &store.dir);
                        report.push_str(&format!("  system store: NOT added: {hint}\n"));
                        system_failure = Some(hint);
                    }
                }
            }
        }
        None if o.no_system => {}
        None => report.push_str("  system store: none found (Debian/Ubuntu, Fedora/RHEL and Arch are known)\n"),
    }
    if let Some(user) = sudo_user(o) {
        // Under sudo HOME is root's: the user's browsers would get nothing, or a
        // root-owned database they cannot use.
        report.push_str(&format!(
            "  NSS: skipped under sudo (browser databases belong to {user}): run `idca trust install --no-system` \
             as {user}\n"
        ));
        report.push_str(&manual_steps(&root_path, &name));
        return match system_failure {
            Some(_) => Err(report.trim_end().to_owned()),
            None => Ok(report),
        };
    }
    let mut dbs = nss_dbs(o);
    if let (Some(certutil), Some(db)) = (certutil(), missing_chromium_db(o)) {
        // Chromium creates ~/.pki/nssdb on its first run; create it now so the root is
        // there when the browser first starts.
        std::fs::create_dir_all(&db).map_err(|e| format!("cannot create {}: {e}", db.display()))?;
        run(&[certutil, "-N".into(), "-d".into(), format!("sql:{}", db.display()), "--empty-password".into()])?;
        report.push_str(&format!("  NSS {}: created for Chromium\n", db.display()));
        dbs.push(db);
    }
    match (certutil(), dbs.is_empty()) {
        (_, true) => {
            if !o.no_nss {
                report.push_str("  NSS: no databases found (Chromium's ~/.pki/nssdb, Firefox profiles)\n");
            }
        }
        (None, false) => report.push_str(
            "  NSS: databases found but no certutil: install it (Debian: libnss3-tools, Fedora: nss-tools) and \
             run this again\n",
        ),
        (Some(certutil), false) => {
            for db in dbs {
                if nss_has(&certutil, &db, &name) {
                    report.push_str(&format!("  NSS {}: already trusted\n", db.display()));
                    continue;
                }
                run(&[
                    certutil.clone(),
                    "-A".into(),
                    "-d".into(),
                    format!("sql:{}", db.display()),
                    "-t".into(),
                    "C,,".into(),
                    "-n".into(),
                    name.clone(),
                    "-i".into(),
                    root_path.to_string_lossy().into_owned(),
                ])?;
                report.push_str(&format!("  NSS {}: added (restart the browser)\n", db.display()));
            }
        }
    }
    report.push_str(&manual_steps(&root_path, &name));
    match system_failure {
        // The NSS part is done; the exit status still says the system store is not.
        Some(_) => Err(report.trim_end().to_owned()),
        None => Ok(report),
    }
}

fn need_root(e: String, dir: &Path) -> String {
    if e.contains("ermission denied") {
        format!("{e}; writing to {} needs root: run `sudo idca trust install --no-nss`", dir.display())
    } else {
        e
    }
}

/// The invoking user when run through sudo with the NSS databases left to detection.
fn sudo_user(o: &TrustOptions) -> Option<String> {
    if o.no_nss || !o.nss_dbs.is_empty() {
        return None;
    }
    std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty() && u != "root")
}

/// The roots retired by `idca rotate-root`, from `retired-roots.pem` (none if absent).
fn retired_roots(config: &Config) -> Vec<Vec<u8>> {
    let path = config.storage.data_dir.join(crate::app::RETIRED_ROOTS_FILE);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive("-----END CERTIFICATE-----")
        .filter_map(|block| crate::ca::pem_block(block, "CERTIFICATE"))
        .collect()
}

/// `idca trust uninstall`: removes this data directory's roots (and only them) wherever
/// install put them: the current one and those retired by rotations, or with
/// `retired_only` just the retired ones.
pub fn uninstall(config: &Config, o: &TrustOptions, retired_only: bool) -> Result<String, Fail> {
    let (_, der) = root(config)?;
    let current = fingerprint(&der);
    let mut roots = retired_roots(config);
    if !retired_only {
        roots.insert(0, der);
    }
    let mut report = String::new();
    if roots.is_empty() {
        report.push_str("no retired roots (idca rotate-root retires one)\n");
    }
    let store = system_store(o);
    let nss = certutil().map(|c| (c, nss_dbs(o)));
    for root in roots {
        let name = store_name(&root);
        let which = if fingerprint(&root) == current { "current" } else { "retired" };
        report.push_str(&format!("Root {name} ({which})\n"));
        if let Some(store) = &store {
            let file = store.dir.join(format!("{name}.crt"));
            if file.exists() {
                std::fs::remove_file(&file)
                    .map_err(|e| need_root(format!("cannot remove {}: {e}", file.display()), &store.dir))?;
                if let Some(cmd) = &store.update {
                    run(&[cmd.as_slice(), store.after_removal.as_slice()].concat())?;
                }
                report.push_str(&format!("  system store: removed {}\n", file.display()));
            } else {
                report.push_str("  system store: was not there\n");
            }
        }
        if let Some((certutil, dbs)) = &nss {
            for db in dbs {
                if nss_has(certutil, db, &name) {
                    run(&[
                        certutil.clone(),
                        "-D".into(),
                        "-d".into(),
                        format!("sql:{}", db.display()),
                        "-n".into(),
                        name.clone(),
                    ])?;
                    report.push_str(&format!("  NSS {}: removed\n", db.display()));
                } else {
                    report.push_str(&format!("  NSS {}: was not there\n", db.display()));
                }
            }
        }
    }
    Ok(report)
}

/// `idca trust status`: where this root is trusted.
pub fn status(config: &Config, o: &TrustOptions) -> Result<String, Fail> {
    let (root_path, der) = root(config)?;
    let name = store_name(&der);
    let constrained = if NameConstraints::from_cert(&der).is_ok_and(|c| c.constrains_tls_names()) {
        "name-constrained to local names"
    } else {
        "NOT name-constrained"
    };
    let mut report = format!("Root {} ({name}, {constrained})\n", root_path.display());
    match system_store(o) {
        Some(store) => {
            let file = store.dir.join(format!("{name}.crt"));
            let state = if file.exists() { "trusted" } else { "not trusted" };
            report.push_str(&format!("  system store {}: {state}\n", store.dir.display()));
        }
        None => report.push_str("  system store: none found\n"),
    }
    match certutil() {
        Some(certutil) => {
            for db in nss_dbs(o) {
                let state = if nss_has(&certutil, &db, &name) { "trusted" } else { "not trusted" };
                report.push_str(&format!("  NSS {}: {state}\n", db.display()));
            }
        }
        None => report.push_str("  NSS: certutil not installed, cannot tell\n"),
    }
    let node = std::env::var("NODE_EXTRA_CA_CERTS").ok();
    let node_state = if node.as_deref().map(Path::new) == Some(root_path.as_path()) { "trusted" } else { "not set" };
    report.push_str(&format!("  Node (NODE_EXTRA_CA_CERTS): {node_state}\n"));
    Ok(report)
}
