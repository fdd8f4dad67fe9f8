//! Pebble compatibility: read a Pebble JSON configuration into idca's [`Config`], so a
//! CI job that runs `pebble -config test/config/pebble-config.json -dnsserver …` can run
//! idca with the same file and flags.
//!
//! Mapping (`{"pebble": {…}}`): `listenAddress` → `server.listen`;
//! `managementListenAddress` → `management.listen`; `certificate`/`privateKey` →
//! `server.tls_cert`/`server.tls_key` (clients keep trusting the same TLS certificate);
//! `httpPort`/`tlsPort` → `acme.validation.http_port`/`tls_port`;
//! `externalAccountBindingRequired`/`externalAccountMACKeys` → `acme.eab` (with
//! `reusable_keys`, as Pebble binds no account to a kid);
//! `caaIdentities`; `domainBlocklist` → `acme.blocked_domains`; `profiles`
//! (`validityPeriod` seconds) → `acme.profiles`; `certificateValidityPeriod` → the
//! default profile's validity; `retryAfter.authz` → `acme.retry_after_secs`.
//! Ignored with a warning: `ocspResponderURL` (idca has a CRL, no OCSP) and
//! `keyAlgorithm` (idca's CA is P-256).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::{Config, ConfigError, MAX_ALTERNATE_ROOTS, MAX_CHAIN_LENGTH, ProfileConfig};

#[derive(Deserialize)]
struct File {
    pebble: Pebble,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Pebble {
    listen_address: Option<String>,
    management_listen_address: Option<String>,
    certificate: Option<String>,
    private_key: Option<String>,
    http_port: Option<u16>,
    tls_port: Option<u16>,
    ocsp_responder_url: Option<String>,
    external_account_binding_required: Option<bool>,
    #[serde(rename = "externalAccountMACKeys")]
    external_account_mac_keys: Option<BTreeMap<String, String>>,
    caa_identities: Option<Vec<String>>,
    domain_blocklist: Option<Vec<String>>,
    key_algorithm: Option<String>,
    profiles: Option<BTreeMap<String, PebbleProfile>>,
    retry_after: Option<RetryAfter>,
    certificate_validity_period: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PebbleProfile {
    description: String,
    validity_period: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RetryAfter {
    authz: Option<u64>,
}

/// Go matches JSON keys to struct fields case-insensitively (`ListenAddress`,
/// `listenaddress`); this renames such keys to the spelling serde expects, in the
/// objects Pebble decodes into structs (not in maps such as `externalAccountMACKeys`).
fn canonical_keys(v: &mut serde_json::Value) {
    const TOP: &[&str] = &["pebble"];
    const PEBBLE: &[&str] = &[
        "listenAddress",
        "managementListenAddress",
        "certificate",
        "privateKey",
        "httpPort",
        "tlsPort",
        "ocspResponderURL",
        "externalAccountBindingRequired",
        "externalAccountMACKeys",
        "caaIdentities",
        "domainBlocklist",
        "keyAlgorithm",
        "profiles",
        "retryAfter",
        "certificateValidityPeriod",
    ];
    fn rename(v: &mut serde_json::Value, names: &[&str]) {
        if let Some(o) = v.as_object_mut() {
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                if let Some(canonical) = names.iter().find(|n| n.eq_ignore_ascii_case(&k) && **n != k)
                    && let Some(x) = o.remove(&k)
                {
                    o.insert((*canonical).to_owned(), x);
                }
            }
        }
    }
    rename(v, TOP);
    let Some(p) = v.get_mut("pebble") else { return };
    rename(p, PEBBLE);
    if let Some(r) = p.get_mut("retryAfter") {
        rename(r, &["authz", "order"]);
    }
    if let Some(profiles) = p.get_mut("profiles").and_then(|x| x.as_object_mut()) {
        for profile in profiles.values_mut() {
            rename(profile, &["description", "validityPeriod"]);
        }
    }
}

/// Pebble's default certificate validity (`validityPeriod` 0 or missing).
const PEBBLE_DEFAULT_VALIDITY: u64 = 7_776_000;

/// Reads a Pebble JSON configuration file. Relative certificate paths are relative to
/// the working directory, as in Pebble.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
}

/// Parses Pebble JSON into a [`Config`] starting from idca's defaults.
pub fn parse(text: &str) -> Result<Config, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a Pebble configuration: {e}"))?;
    canonical_keys(&mut value);
    let file: File = serde_json::from_value(value).map_err(|e| format!("not a Pebble configuration: {e}"))?;
    let p = file.pebble;
    let mut c = Config::default();
    // Pebble limits no new accounts; test suites make one per test.
    c.limits.new_accounts_per_minute_per_address = 0;
    if let Some(listen) = p.listen_address {
        c.server.listen = listen.parse().map_err(|_| format!("listenAddress `{listen}` is not ip:port"))?;
    }
    // Missing or null is Go's zero value "": no management listener, as in Pebble.
    c.management.listen = p.management_listen_address.unwrap_or_default();
    if let (Some(cert), Some(key)) = (p.certificate, p.private_key) {
        c.server.tls_cert = Some(cert.into());
        c.server.tls_key = Some(key.into());
    }
    if let Some(port) = p.http_port {
        c.acme.validation.http_port = port;
    }
    if let Some(port) = p.tls_port {
        c.acme.validation.tls_port = port;
    }
    if p.ocsp_responder_url.is_some_and(|u| !u.is_empty()) {
        tracing::warn!("ocspResponderURL is ignored: idca publishes a CRL, not OCSP");
    }
    if p.key_algorithm.is_some() {
        tracing::warn!("keyAlgorithm is ignored: idca's CA keys are P-256");
    }
    c.acme.eab.required = p.external_account_binding_required.unwrap_or(false);
    c.acme.eab.keys = p.external_account_mac_keys.unwrap_or_default();
    // Pebble binds no account to a kid: suites reuse one key for many accounts.
    c.acme.eab.reusable_keys = true;
    // Pebble's management API sets renewal information.
    c.acme.testing.set_renewal_info = true;
    if let Some(caa) = p.caa_identities {
        c.acme.caa_identities = caa;
    }
    c.acme.blocked_domains = p.domain_blocklist.unwrap_or_default();
    if let Some(secs) = p.certificate_validity_period.filter(|s| *s > 0)
        && let Some(d) = c.acme.profiles.get_mut(&c.acme.default_profile)
    {
        d.validity_secs = secs;
    }
    if let Some(profiles) = p.profiles.filter(|p| !p.is_empty()) {
        c.acme.profiles = profiles
            .into_iter()
            .map(|(name, pp)| {
                let validity_secs = if pp.validity_period > 0 { pp.validity_period } else { PEBBLE_DEFAULT_VALIDITY };
                (name, ProfileConfig { description: pp.description, validity_secs })
            })
            .collect();
        if !c.acme.profiles.contains_key(&c.acme.default_profile) {
            c.acme.default_profile = c.acme.profiles.keys().next().cloned().unwrap_or_default();
        }
    }
    if let Some(secs) = p.retry_after.and_then(|r| r.authz) {
        c.acme.retry_after_secs = secs;
    }
    c.check().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Rewrites Pebble's flags (`-config F`, `-dnsserver A`, `-strict`, `-version`, and Go's
/// `-flag=value` forms: `-config=F`, `-dnsserver=A`, `-strict=false`) into idca's
/// (`serve --pebble-config F --dnsserver A --strict`), so `idca` can be invoked exactly
/// as `pebble` was. A `-dnsserver` without a host (`:5053`) means this machine, as in Go.
/// Other arguments pass through.
pub fn translate_args(args: Vec<String>) -> Vec<String> {
    let flag = |a: &str| a.split_once('=').map_or(a, |(f, _)| f).to_owned();
    let pebble_style =
        args.iter().skip(1).any(|a| matches!(flag(a).as_str(), "-config" | "-dnsserver" | "-strict" | "-version"));
    if !pebble_style {
        return args;
    }
    let mut out: Vec<String> = args.iter().take(1).cloned().collect();
    if args.iter().skip(1).any(|a| a == "-version") {
        out.push("--version".into());
        return out;
    }
    out.push("serve".into());
    let mut dns_next = false;
    for a in args.into_iter().skip(1) {
        if std::mem::take(&mut dns_next) {
            out.push(resolver_address(&a));
            continue;
        }
        match (a.as_str(), a.split_once('=')) {
            ("-config", _) => out.push("--pebble-config".into()),
            ("-dnsserver", _) => {
                out.push("--dnsserver".into());
                dns_next = true;
            }
            ("-strict", _) => out.push("--strict".into()),
            (_, Some(("-config", file))) => out.extend(["--pebble-config".to_owned(), file.to_owned()]),
            (_, Some(("-dnsserver", addr))) => out.extend(["--dnsserver".to_owned(), resolver_address(addr)]),
            (_, Some(("-strict", value))) => {
                if matches!(value, "true" | "1" | "t" | "T" | "TRUE" | "True") {
                    out.push("--strict".into());
                }
            }
            _ => out.push(a),
        }
    }
    out
}

/// `:PORT` (Go: this machine) as `127.0.0.1:PORT`; anything else unchanged.
fn resolver_address(a: &str) -> String {
    match a.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => a.to_owned(),
    }
}

/// Applies Pebble's environment variables as overrides, so idca can replace Pebble
/// in a CI job unchanged: `PEBBLE_VA_ALWAYS_VALID`, `PEBBLE_VA_NOSLEEP`,
/// `PEBBLE_VA_SLEEPTIME` (seconds; a random delay below it), `PEBBLE_WFE_NONCEREJECT`,
/// `PEBBLE_AUTHZREUSE`, `PEBBLE_WFE_ORDERS_PER_PAGE`, `PEBBLE_CHAIN_LENGTH`,
/// `PEBBLE_ALTERNATE_ROOTS` (clamped to idca's limits). Unparseable values are ignored.
pub fn apply_env(config: &mut Config, get: impl Fn(&str) -> Option<String>) {
    let truthy = |v: Option<String>| matches!(v.as_deref(), Some("1") | Some("true"));
    let number = |k: &str| get(k).and_then(|v| v.trim().parse::<u64>().ok());
    let testing = &mut config.acme.testing;
    if truthy(get("PEBBLE_VA_ALWAYS_VALID")) {
        testing.always_valid = true;
    }
    if let Some(secs) = number("PEBBLE_VA_SLEEPTIME") {
        testing.validation_delay_ms = secs.saturating_mul(1000);
        testing.random_delay = true;
    }
    if truthy(get("PEBBLE_VA_NOSLEEP")) {
        testing.validation_delay_ms = 0;
    }
    if let Some(p) = number("PEBBLE_WFE_NONCEREJECT") {
        testing.nonce_reject_percent = p.min(99) as u8;
    }
    if let Some(p) = number("PEBBLE_AUTHZREUSE") {
        testing.authz_reuse_percent = p.min(100) as u8;
    }
    if let Some(n) = number("PEBBLE_WFE_ORDERS_PER_PAGE").filter(|n| *n > 0) {
        config.acme.orders_per_page = n as usize;
    }
    if let Some(n) = number("PEBBLE_CHAIN_LENGTH").filter(|n| *n > 0) {
        config.ca.chain_length = n.min(MAX_CHAIN_LENGTH.into()) as u32;
    }
    if let Some(n) = number("PEBBLE_ALTERNATE_ROOTS") {
        config.ca.alternate_roots = n.min(MAX_ALTERNATE_ROOTS.into()) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pebble's own test/config/pebble-config.json (shape as of 2026).
    const PEBBLE_CONFIG: &str = r#"{
      "pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": "test/certs/localhost/cert.pem",
        "privateKey": "test/certs/localhost/key.pem",
        "httpPort": 5002,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
        "domainBlocklist": ["blocked-domain.example"],
        "retryAfter": {"authz": 3, "order": 5},
        "keyAlgorithm": "ecdsa",
        "profiles": {
          "default": {"description": "The profile you know and love", "validityPeriod": 7776000},
          "shortlived": {"description": "A short-lived cert profile, without actual enforcement", "validityPeriod": 518400}
        }
      }
    }"#;

    #[test]
    fn reads_pebbles_own_config() {
        let c = parse(PEBBLE_CONFIG).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:14000");
        assert_eq!(c.management.listen, "0.0.0.0:15000");
        assert_eq!(c.server.tls_cert.as_deref(), Some(Path::new("test/certs/localhost/cert.pem")));
        assert_eq!((c.acme.validation.http_port, c.acme.validation.tls_port), (5002, 5001));
        assert_eq!(c.acme.blocked_domains, vec!["blocked-domain.example"]);
        assert_eq!(c.acme.retry_after_secs, 3);
        assert_eq!(c.acme.profiles["shortlived"].validity_secs, 518_400);
        assert_eq!(c.acme.default_profile, "default");
        // As Pebble: no limit on new accounts (idca's own default has one).
        assert_eq!(c.limits.new_accounts_per_minute_per_address, 0);
        assert_ne!(Config::default().limits.new_accounts_per_minute_per_address, 0);
    }

    #[test]
    fn reads_keys_in_any_case_and_a_missing_management_address_as_off() {
        let c = parse(
            r#"{"Pebble": {"ListenAddress": "127.0.0.1:1", "HTTPPORT": 7, "externalaccountmackeys": {"Kid-A": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"},
              "RetryAfter": {"Authz": 9}, "Profiles": {"Short": {"ValidityPeriod": 60}}}}"#,
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.acme.validation.http_port, 7);
        assert!(c.acme.eab.keys.contains_key("Kid-A"), "map keys keep their case");
        assert_eq!(c.acme.retry_after_secs, 9);
        assert_eq!(c.acme.profiles["Short"].validity_secs, 60);
        assert_eq!(c.management.listen, "");
        let c = parse(r#"{"pebble": {"managementListenAddress": null}}"#).unwrap();
        assert_eq!(c.management.listen, "");
    }

    #[test]
    fn reads_eab_keys_and_rejects_other_json() {
        let c = parse(
            r#"{"pebble": {"externalAccountBindingRequired": true,
            "externalAccountMACKeys": {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}}}"#,
        )
        .unwrap();
        assert!(c.acme.eab.required);
        assert!(c.acme.eab.keys.contains_key("kid-1"));
        assert!(parse(r#"{"server": {}}"#).is_err());
        assert!(parse(r#"{"pebble": {"listenAddress": "nope"}}"#).is_err());
    }

    #[test]
    fn translates_pebble_flags() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            translate_args(args(&["idca", "-config", "p.json", "-dnsserver", "127.0.0.1:8053", "-strict"])),
            args(&["idca", "serve", "--pebble-config", "p.json", "--dnsserver", "127.0.0.1:8053", "--strict"])
        );
        assert_eq!(translate_args(args(&["idca", "serve"])), args(&["idca", "serve"]));
        assert_eq!(
            translate_args(args(&["idca", "-config=p.json", "-dnsserver=:5053", "-strict=false"])),
            args(&["idca", "serve", "--pebble-config", "p.json", "--dnsserver", "127.0.0.1:5053"])
        );
        assert_eq!(
            translate_args(args(&["idca", "-strict=true", "-dnsserver", ":8053"])),
            args(&["idca", "serve", "--strict", "--dnsserver", "127.0.0.1:8053"])
        );
        assert_eq!(translate_args(args(&["idca", "-version"])), args(&["idca", "--version"]));
    }

    #[test]
    fn pebble_env_sets_always_valid() {
        let mut c = Config::default();
        c.acme.testing.validation_delay_ms = 500;
        apply_env(&mut c, |k| match k {
            "PEBBLE_VA_ALWAYS_VALID" | "PEBBLE_VA_NOSLEEP" => Some("1".into()),
            "PEBBLE_WFE_NONCEREJECT" => Some("250".into()),
            "PEBBLE_AUTHZREUSE" => Some("100".into()),
            "PEBBLE_WFE_ORDERS_PER_PAGE" => Some("3".into()),
            "PEBBLE_CHAIN_LENGTH" => Some("3".into()),
            "PEBBLE_ALTERNATE_ROOTS" => Some("99".into()),
            _ => None,
        });
        assert_eq!((c.ca.chain_length, c.ca.alternate_roots), (3, 16));
        assert!(c.acme.testing.always_valid);
        assert_eq!(c.acme.testing.validation_delay_ms, 0);
        assert_eq!(c.acme.testing.nonce_reject_percent, 99);
        assert_eq!(c.acme.testing.authz_reuse_percent, 100);
        assert_eq!(c.acme.orders_per_page, 3);
        let mut c = Config::default();
        apply_env(&mut c, |k| (k == "PEBBLE_VA_SLEEPTIME").then(|| "4".into()));
        assert_eq!((c.acme.testing.validation_delay_ms, c.acme.testing.random_delay), (4000, true));
    }
}
