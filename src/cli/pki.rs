//! The local development PKI: `idca init`, `idca issue` and `idca certs`, run against
//! the data directory with no server (the store is locked while a server runs).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::app::{AppError, load_or_create_ca, open_store};
use crate::ca::{Ca, KeyType, LeafRequest, NameConstraints, Usage};
use crate::clock::{UnixTime, rfc3339};
use crate::config::Config;
use crate::model::{IssuedCertificate, Revocation, Serial};
use crate::store::{Store, StoreError};

use crate::files::StagedFiles;

type Fail = String;

fn now() -> UnixTime {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn store_error(e: impl std::fmt::Display) -> Fail {
    e.to_string()
}

/// Opens the store of an existing CA; `command` names the subcommand in messages.
async fn open_existing(config: &Config, command: &str) -> Result<Arc<dyn Store>, Fail> {
    let dir = &config.storage.data_dir;
    if config.storage.url.is_empty() && !["db", "db.generation", "root.pem"].iter().any(|f| dir.join(f).exists()) {
        return Err(format!(
            "no CA in {}: run `idca init --local-pki` first (or start `idca serve` once), or point --data at \
             the data directory",
            dir.display()
        ));
    }
    if !config.storage.url.is_empty() {
        // The CA is in the database: the data directory is made only once it is there.
        let store = crate::app::open_backend(config).await.map_err(store_error)?;
        require_ca(config, store.as_ref()).await?;
        crate::app::create_data_dir(config).map_err(store_error)?;
        return Ok(store);
    }
    open_store(config).await.map_err(|e| match e {
        AppError::Store(StoreError::Backend(m)) if m.contains("in use") => {
            format!("{m}: stop the server first (`idca {command}` needs the data directory to itself)")
        }
        other => other.to_string(),
    })
}

/// The CA as the server would load it; leaves name the server's CRL. Never creates one:
/// a CA is made by `idca init` (or the first `idca serve`), deliberately.
async fn load_ca(config: &Config, store: &dyn Store) -> Result<Ca, Fail> {
    require_ca(config, store).await?;
    let material = load_or_create_ca(config, store, now()).await.map_err(store_error)?;
    let crl = format!("{}{}", config.public_url(config.server.listen), crate::acme::paths::CRL);
    let ca = Ca::load(&material, Some(crl)).map_err(store_error)?;
    crate::app::with_configured_chains(config, store, &material, ca, now()).await.map_err(store_error)
}

async fn require_ca(config: &Config, store: &dyn Store) -> Result<(), Fail> {
    if config.ca.root_cert.is_none() && store.ca_material().await.map_err(store_error)?.is_none() {
        crate::app::no_ca_was_made_here(config).map_err(store_error)?;
        return Err(format!(
            "no CA in {}: run `idca init --local-pki` first (or start `idca serve` once)",
            config.storage.data_dir.display()
        ));
    }
    Ok(())
}

/// `idca init` options.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Constrain the CA to local names ([`NameConstraints::local`]).
    pub local_pki: bool,
    /// More domains for a local PKI.
    pub domains: Vec<String>,
    /// Keep the root key offline: write it here and keep only the intermediate's key.
    pub offline_root_key: Option<PathBuf>,
}

/// `idca init`: creates the CA in a data directory that has none. Returns the report.
pub async fn init(config: &Config, o: &InitOptions) -> Result<String, Fail> {
    if !o.domains.is_empty() && !o.local_pki {
        return Err("--domain adds to the names of a local PKI: use it with --local-pki".into());
    }
    let c = &config.ca;
    if c.root_cert.is_some() || c.intermediate_cert.is_some() {
        return Err("config.toml names CA files ([ca] root_cert …); idca init creates a CA of its own".into());
    }
    let mut constraints = if o.local_pki {
        NameConstraints::local(&o.domains).map_err(store_error)?
    } else {
        NameConstraints::uri_hosts(&c.identity_uri_domains)
    };
    constraints.uris.clone_from(&c.identity_uri_domains);
    // idca's own TLS certificate must fit under the constraints, or the server could not start.
    let (dns, ips) = crate::ca::split_names(&c.server_names);
    constraints.check(&dns, &ips).map_err(|e| format!("ca.server_names: {e}"))?;
    let store = open_store(config).await.map_err(store_error)?;
    if let Some(m) = store.ca_material().await.map_err(store_error)? {
        return Err(format!(
            "{} already holds a CA ({}); use another --data directory for a new one",
            config.storage.data_dir.display(),
            describe_ca(&m.root_cert)
        ));
    }
    let mut material = Ca::generate(&c.organization, &constraints, now()).map_err(store_error)?;
    // The offline root key is staged (written and synced) before the CA is stored, and
    // moved into place after: a failed write stores nothing.
    let mut files = StagedFiles::default();
    if let Some(path) = &o.offline_root_key {
        files.stage_new(path, crate::ca::key_pem(&material.root_key).as_bytes(), true)?;
        material.root_key = Vec::new();
    }
    store.init_ca_material(&material).await.map_err(store_error)?;
    files.commit()?;
    let material = load_or_create_ca(config, store.as_ref(), now()).await.map_err(store_error)?;
    let root = config.storage.data_dir.join("root.pem");
    let mut report =
        format!("Created a CA in {}: {}\n", config.storage.data_dir.display(), describe_ca(&material.root_cert));
    if o.local_pki {
        report.push_str(&format!("It can only certify local names: {}.\n", constraints.describe()));
    } else {
        report.push_str("It can certify any name (a test CA): do not add its root to a trust store.\n");
    }
    report.push_str(&format!("Root certificate: {}\n", root.display()));
    if let Some(path) = &o.offline_root_key {
        report.push_str(&format!(
            "Root key: {} (mode 0600). idca keeps only the intermediate's key; move this file offline.\n",
            path.display()
        ));
    }
    report.push_str("Next: `idca trust install`, then `idca issue myapp.test localhost 127.0.0.1`.\n");
    Ok(report)
}

/// "CN …, SHA-256 …, name-constrained|unconstrained".
pub fn describe_ca(root_der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    let cn = x509_parser::certificate::X509Certificate::from_der(root_der)
        .ok()
        .and_then(|(_, c)| c.subject().iter_common_name().next().and_then(|n| n.as_str().ok().map(str::to_owned)))
        .unwrap_or_default();
    let constrained = if NameConstraints::from_cert(root_der).is_ok_and(|c| c.constrains_tls_names()) {
        "name-constrained to local names"
    } else {
        "unconstrained"
    };
    format!("\"{cn}\", {constrained}, SHA-256 {}", fingerprint(root_der))
}

/// The SHA-256 fingerprint of a certificate, hex.
pub fn fingerprint(der: &[u8]) -> String {
    crate::model::hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// The key of a new certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChoice {
    /// Generate one.
    Generate(KeyType),
    /// Use an existing PKCS#8 key (PEM), e.g. RSA, which idca cannot generate.
    File(PathBuf),
}

/// `idca issue` options.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// DNS names (wildcards too), IP addresses, and with `client` email addresses and URIs.
    pub names: Vec<String>,
    /// A client certificate (clientAuth) instead of a server one (serverAuth).
    pub client: bool,
    pub key: KeyChoice,
    /// Days the certificate is valid.
    pub days: u32,
    /// Where to write; default: named after the first name, in the current directory.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Write one PKCS#12 file instead of PEM files, encrypted with this password.
    pub pkcs12: Option<(Option<PathBuf>, String)>,
}

/// The longest validity `idca issue` grants: Apple's limit for TLS certificates.
pub const MAX_DAYS: u32 = 825;

/// The names of a certificate, sorted by form.
#[derive(Debug, Default, PartialEq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Parses command-line names: IP addresses, email addresses and URIs (client
/// certificates only), else DNS names as an ACME order would take them.
pub fn parse_names(names: &[String], client: bool) -> Result<Names, Fail> {
    let mut out = Names::default();
    if names.is_empty() {
        return Err("name at least one DNS name or IP address".into());
    }
    for raw in names {
        if let Ok(ip) = raw.parse::<IpAddr>() {
            out.ips.push(ip);
        } else if raw.contains("://") {
            if !client || raw.chars().any(|c| !c.is_ascii_graphic()) {
                return Err(format!("`{raw}`: URIs name clients (add --client), and must be printable ASCII"));
            }
            out.uris.push(raw.clone());
        } else if let Some((local, domain)) = raw.split_once('@') {
            if !client {
                return Err(format!("`{raw}` is an email address: those name clients (add --client)"));
            }
            let domain = domain.to_ascii_lowercase();
            if local.is_empty() || !local.bytes().all(|b| b.is_ascii_graphic() && b != b'@') {
                return Err(format!("`{raw}` is not an email address"));
            }
            crate::model::check_dns_name(&domain).map_err(|why| format!("`{raw}`: bad domain ({why})"))?;
            out.emails.push(format!("{local}@{domain}"));
        } else {
            let name = raw.to_ascii_lowercase();
            crate::model::check_dns_name(&name).map_err(|why| format!("`{raw}` is not a DNS name: {why}"))?;
            out.dns.push(name);
        }
    }
    out.dns.dedup();
    out.ips.dedup();
    Ok(out)
}

/// The file stem for names, as mkcert does: the first name, `+N` for N more.
pub fn file_stem(names: &[String]) -> String {
    let first = names.first().map(String::as_str).unwrap_or("cert").replace('*', "_wildcard");
    let clean: String =
        first.chars().map(|c| if c.is_ascii_alphanumeric() || "._@-".contains(c) { c } else { '_' }).collect();
    match names.len() {
        0 | 1 => clean,
        n => format!("{clean}+{}", n - 1),
    }
}

/// A key ready for a certificate: its public key, type, and the PKCS#8 PEM to write
/// (none when the key came from a file the user keeps).
struct LeafKey {
    spki: Vec<u8>,
    key_type: KeyType,
    pkcs8_der: Vec<u8>,
    write_pem: Option<String>,
}

fn leaf_key(choice: &KeyChoice) -> Result<LeafKey, Fail> {
    match choice {
        KeyChoice::Generate(t) => {
            let alg = match t {
                KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
                KeyType::Ed25519 => &rcgen::PKCS_ED25519,
                KeyType::P521 => return Err("idca cannot generate P-521 keys: pass one with --key FILE".into()),
                KeyType::Rsa(_) => return Err("idca cannot generate RSA keys: pass one with --key FILE".into()),
            };
            let key = rcgen::KeyPair::generate_for(alg).map_err(store_error)?;
            Ok(LeafKey {
                spki: rcgen::PublicKeyData::subject_public_key_info(&key),
                key_type: *t,
                pkcs8_der: key.serialize_der(),
                write_pem: Some(key.serialize_pem()),
            })
        }
        KeyChoice::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = rcgen::KeyPair::from_pem(&text).map_err(|e| {
                format!(
                    "{}: not a PKCS#8 PEM key (`BEGIN PRIVATE KEY`; convert with `openssl pkcs8 -topk8 -nocrypt`): {e}",
                    path.display()
                )
            })?;
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            let key_type = crate::ca::spki_key_type(&spki).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(LeafKey { spki, key_type, pkcs8_der: key.serialize_der(), write_pem: None })
        }
    }
}

fn with_suffix(stem: &str, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{stem}{suffix}"))
}

/// `idca issue`: signs a certificate with the local CA, records it in the store, and
/// writes the files (all or nothing). Returns the report.
pub async fn issue(config: &Config, o: &IssueOptions) -> Result<String, Fail> {
    let names = parse_names(&o.names, o.client)?;
    if o.days == 0 || o.days > MAX_DAYS {
        return Err(format!("--days must be 1 to {MAX_DAYS} (Apple's clients refuse longer TLS certificates)"));
    }
    let store = open_existing(config, "issue").await?;
    let ca = load_ca(config, store.as_ref()).await?;
    ca.constraints().check(&names.dns, &names.ips).map_err(|e| {
        format!("{e}.\nThis CA is a local PKI; names elsewhere need another CA (or an ACME CA that can validate them).")
    })?;
    let key = leaf_key(&o.key)?;
    let stem = file_stem(&o.names);
    let now = now();
    let (not_before, not_after) = (now - 60, now + i64::from(o.days) * 86_400);
    let leaf = ca
        .issue(&LeafRequest {
            spki_der: &key.spki,
            key_type: key.key_type,
            dns_names: &names.dns,
            ip_addresses: &names.ips,
            uris: &names.uris,
            emails: &names.emails,
            subject: None,
            not_before,
            not_after,
            usage: if o.client { Usage::ClientIdentity } else { Usage::TlsServer },
        })
        .map_err(store_error)?;
    // Stage every file first: an unwritable path fails here, before anything is recorded.
    let mut files = StagedFiles::default();
    let mut wrote = Vec::new();
    match &o.pkcs12 {
        Some((path, password)) => {
            let path = path.clone().unwrap_or_else(|| with_suffix(&stem, ".p12"));
            let der = crate::ca::pkcs12::encode(
                &key.pkcs8_der,
                &[leaf.der.clone(), ca.intermediate_der().to_vec()],
                password,
                &stem,
            )
            .map_err(store_error)?;
            files.stage(&path, &der, true)?;
            wrote.push(format!("PKCS#12:     {} (certificate, intermediate and key)", path.display()));
        }
        None => {
            let cert_path = o.cert_file.clone().unwrap_or_else(|| with_suffix(&stem, ".pem"));
            files.stage(&cert_path, leaf.chain_pem.as_bytes(), false)?;
            wrote.push(format!("certificate: {} (with the intermediate)", cert_path.display()));
            if let Some(pem) = &key.write_pem {
                let key_path = o.key_file.clone().unwrap_or_else(|| with_suffix(&stem, "-key.pem"));
                files.stage(&key_path, pem.as_bytes(), true)?;
                wrote.push(format!("key:         {} (mode 0600)", key_path.display()));
            }
        }
    }
    let record = IssuedCertificate::new(leaf.serial.clone(), leaf.chain_pem, (not_before, not_after), now, None);
    store.create_certificate(&record).await.map_err(store_error)?;
    files.commit()?;
    let quoted: Vec<String> = o.names.iter().map(|n| format!("\"{n}\"")).collect();
    let mut report = format!(
        "Created a {} certificate for {} ({}, valid until {})\n",
        if o.client { "client" } else { "server" },
        quoted.join(", "),
        key_type_name(key.key_type),
        rfc3339(not_after)
    );
    for line in wrote {
        report.push_str(&format!("  {line}\n"));
    }
    report.push_str(&format!("  serial:      {}\n", leaf.serial.as_str()));
    report.push_str(&format!("  root:        {}\n", config.storage.data_dir.join("root.pem").display()));
    if key.key_type == KeyType::Ed25519 && !o.client {
        report.push_str("Note: browsers do not accept Ed25519 server certificates; use P-256 for them.\n");
    }
    Ok(report)
}

fn key_type_name(t: KeyType) -> String {
    match t {
        KeyType::P256 => "P-256".into(),
        KeyType::P384 => "P-384".into(),
        KeyType::P521 => "P-521".into(),
        KeyType::Ed25519 => "Ed25519".into(),
        KeyType::Rsa(bits) => format!("RSA {bits}"),
    }
}

/// `idca rotate-root`: prints the plan for replacing the root (and intermediate); with
/// `apply`, carries out its first steps: a new CA with the same name constraints becomes
/// the signing one, and the current one is retired (its certificates stay listed and
/// revocable, its root stays in `retired-roots.pem` until `idca trust uninstall --retired`).
pub async fn rotate_root(
    config: &Config,
    apply: bool,
    offline_root_key: Option<&std::path::Path>,
) -> Result<String, Fail> {
    use x509_parser::prelude::FromDer;
    let store = open_existing(config, "rotate-root").await?;
    require_ca(config, store.as_ref()).await?;
    let current = load_or_create_ca(config, store.as_ref(), now()).await.map_err(store_error)?;
    if config.ca.root_cert.is_some() {
        return Err("the CA comes from files named in config.toml ([ca] root_cert …): rotate it there".into());
    }
    let constraints = NameConstraints::from_cert(&current.intermediate_cert).map_err(store_error)?;
    let root_until = x509_parser::certificate::X509Certificate::from_der(&current.root_cert)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .unwrap_or_default();
    let now = now();
    let live: Vec<IssuedCertificate> = store
        .certificates()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|v| v.value)
        .filter(|c| c.revoked.is_none() && c.not_after > now)
        .collect();
    let cli: Vec<CertSummary> = live.iter().filter(|c| c.account.is_none()).map(|c| summarize(c, now)).collect();
    let last = live.iter().map(|c| c.not_after).max();
    let data = config.storage.data_dir.display();
    let idca = if config.storage.data_dir == std::path::Path::new("data") {
        "idca".to_owned()
    } else {
        format!("idca --data {data}")
    };
    let mut plan = format!("Root rotation for {data}\n");
    plan.push_str(&format!(
        "  current root: {}, valid until {}\n",
        describe_ca(&current.root_cert),
        rfc3339(root_until)
    ));
    plan.push_str(&format!(
        "  it signed {} certificates still valid ({} through ACME, {} with idca issue){}\n",
        live.len(),
        live.len() - cli.len(),
        cli.len(),
        last.map(|t| format!("; the last expires {}", rfc3339(t))).unwrap_or_default()
    ));
    plan.push_str(&format!(
        "\n{}:\n  1. create a new root and intermediate with the same name constraints ({}){}\n  \
         2. retire the current CA: its certificates stay listed and revocable (idca certs), its root is kept \
         in {data}/retired-roots.pem\n  3. the new intermediate signs from then on (restart a running idca serve)\n\
         Then:\n  4. {idca} trust install   (trusts the new root beside the old one)\n",
        if apply { "Now" } else { "`idca rotate-root --apply` will" },
        constraints.describe(),
        offline_root_key
            .map(|p| format!(", writing the new root key to {} (offline)", p.display()))
            .unwrap_or_default()
    ));
    if cli.is_empty() {
        plan.push_str("  5. nothing issued with idca issue to reissue; ACME clients renew onto the new chain\n");
    } else {
        plan.push_str("  5. reissue what idca issue made (ACME clients renew onto the new chain by themselves):\n");
        for c in &cli {
            let names: Vec<String> = c.names.iter().map(|n| shell_quote(n)).collect();
            let client = if c.client { " --client" } else { "" };
            plan.push_str(&format!("       {idca} issue{client} {}\n", names.join(" ")));
        }
    }
    plan.push_str(&format!(
        "  6. once nothing serves the old chain{}: {idca} trust uninstall --retired\n",
        last.map(|t| format!(" (at the latest {})", rfc3339(t))).unwrap_or_default()
    ));
    if !apply {
        return Ok(plan);
    }
    let mut fresh = Ca::generate(&config.ca.organization, &constraints, now).map_err(store_error)?;
    let mut files = StagedFiles::default();
    if let Some(path) = offline_root_key {
        files.stage_new(path, crate::ca::key_pem(&fresh.root_key).as_bytes(), true)?;
        fresh.root_key = Vec::new();
    }
    store.rotate_ca_material(&current, &fresh).await.map_err(store_error)?;
    files.commit()?;
    let installed = load_or_create_ca(config, store.as_ref(), now).await.map_err(store_error)?;
    plan.push_str(&format!("\nDone: the new root is {}\n", describe_ca(&installed.root_cert)));
    Ok(plan)
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._@:/+-=".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a listed certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub serial: Serial,
    pub names: Vec<String>,
    pub not_after: UnixTime,
    pub status: &'static str,
    /// `acme <account>` or `cli`.
    pub via: String,
    /// A client certificate (clientAuth without serverAuth).
    pub client: bool,
}

fn summarize(cert: &IssuedCertificate, now: UnixTime) -> CertSummary {
    use x509_parser::prelude::*;
    let mut names = Vec::new();
    let der = cert.leaf_der().unwrap_or_default();
    let parsed = X509Certificate::from_der(&der).ok().map(|(_, x)| x);
    let client = parsed
        .as_ref()
        .and_then(|x| x.extended_key_usage().ok().flatten())
        .is_some_and(|eku| eku.value.client_auth && !eku.value.server_auth);
    if let Some(Ok(Some(san))) = parsed.as_ref().map(|x| x.subject_alternative_name()) {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) | GeneralName::RFC822Name(d) | GeneralName::URI(d) => {
                    names.push((*d).to_owned())
                }
                GeneralName::IPAddress(b) if b.len() == 4 || b.len() == 16 => {
                    let ip = if b.len() == 4 {
                        <[u8; 4]>::try_from(*b).map(IpAddr::from).ok()
                    } else {
                        <[u8; 16]>::try_from(*b).map(IpAddr::from).ok()
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    let status = match (cert.revoked, cert.not_after <= now) {
        (Some(_), _) => "revoked",
        (None, true) => "expired",
        (None, false) => "valid",
    };
    let via = match &cert.account {
        Some(a) => format!("acme {}", a.as_str()),
        None => "cli".into(),
    };
    CertSummary { serial: cert.serial.clone(), names, not_after: cert.not_after, status, via, client }
}

/// Every issued certificate, oldest first; with `expiring_within`, only valid ones that
/// expire within that many seconds.
pub async fn list(config: &Config, expiring_within: Option<i64>) -> Result<Vec<CertSummary>, Fail> {
    let store = open_existing(config, "certs").await?;
    let now = now();
    let mut certs: Vec<IssuedCertificate> =
        store.certificates().await.map_err(store_error)?.into_iter().map(|v| v.value).collect();
    certs.sort_by_key(|c| (c.issued, c.serial.0.clone()));
    Ok(certs
        .iter()
        .map(|c| summarize(c, now))
        .filter(|s| expiring_within.is_none_or(|w| s.status == "valid" && s.not_after <= now + w))
        .collect())
}

/// A table of certificates for the terminal.
pub fn table(certs: &[CertSummary]) -> String {
    let mut out = format!("{:<32}  {:<20}  {:<7}  {:<10}  NAMES\n", "SERIAL", "NOT AFTER", "STATUS", "VIA");
    for c in certs {
        let via = if c.via.len() > 10 { c.via.get(..10).unwrap_or_default() } else { &c.via };
        out.push_str(&format!(
            "{:<32}  {:<20}  {:<7}  {:<10}  {}\n",
            c.serial.as_str(),
            rfc3339(c.not_after),
            c.status,
            via,
            c.names.join(", ")
        ));
    }
    out
}

/// `idca certs revoke`: revokes the certificate whose serial is `serial` (or starts
/// with it, when that is unique and at least 8 digits); it is in the next CRL.
pub async fn revoke(config: &Config, serial: &str, reason: u8) -> Result<String, Fail> {
    if !crate::ca::is_revocation_reason(reason) {
        return Err(format!("{reason} is not a revocation reason (RFC 5280 §5.3.1: 0-6, 8-10)"));
    }
    let wanted = serial.to_ascii_lowercase().replace(':', "");
    if wanted.len() < 8 {
        return Err("give at least 8 digits of the serial".into());
    }
    let store = open_existing(config, "certs revoke").await?;
    let matches: Vec<_> = store
        .certificates()
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|c| c.value.serial.as_str().starts_with(&wanted))
        .collect();
    let mut found = match matches.as_slice() {
        [one] => one.clone(),
        [] => return Err(format!("no certificate with serial {wanted}")),
        _ => return Err(format!("{} certificates have serials starting {wanted}: give more digits", matches.len())),
    };
    if found.value.revoked.is_some() {
        return Err(format!("{} is already revoked", found.value.serial.as_str()));
    }
    found.value.revoked = Some(Revocation { reason, at: now() });
    store.update_certificate(&found.value, found.version).await.map_err(store_error)?;
    Ok(format!("revoked {} (reason {reason}); it is listed in the CRL from now on\n", found.value.serial.as_str()))
}

#[cfg(test)]
mod tests;
