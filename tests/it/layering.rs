//! Architecture test: protocol cores never import the web framework or the storage
//! engine, and acme never reaches into http (aesthetics §7.3).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn check(dirs: &[&str], forbidden: &[&str], except: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    for d in dirs {
        let mut files = Vec::new();
        let path = src.join(d);
        if path.is_dir() {
            rust_files(&path, &mut files);
        }
        for f in files {
            if except.iter().any(|e| f.ends_with(e)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for word in forbidden {
                    if code.contains(word) {
                        bad.push(format!("{}:{}: uses `{word}`", f.display(), i + 1));
                    }
                }
            }
        }
    }
    bad
}

#[test]
fn cores_do_not_import_actix_or_sled() {
    let cores = ["model", "jose", "ca", "store", "validate", "acme", "oauth", "dpop"];
    let mut bad = check(&cores, &["actix_web", "actix_tls", "use actix"], &[]);
    // No core but the store talks to a database; the store's backends only in their files.
    bad.extend(check(
        &cores,
        &["tokio_postgres", "postgres::", "sqlx"],
        &[
            "store/postgres_store.rs",
            "store/postgres_store/acme.rs",
            "store/postgres_store/oauth.rs",
            "store/postgres_store/pki.rs",
            "store/postgres_store/replay.rs",
            "store/postgres_store/tests.rs",
            "store/postgres_store/connect.rs",
            "store/postgres_store/snapshot.rs",
            "store/postgres_store/tls.rs",
        ],
    ));
    bad.extend(check(
        &cores,
        &["use sled::", " sled::", "(sled::", "<sled::"],
        &[
            "store/sled_store.rs",
            "store/sled_store/acme.rs",
            "store/sled_store/oauth.rs",
            "store/sled_store/pki.rs",
            "store/sled_store/replay.rs",
            "store/sled_store/tests.rs",
            "store/sled_store/guard.rs",
        ],
    ));
    bad.extend(check(&["acme", "validate", "oauth", "dpop"], &["crate::http", "crate::app", "crate::cli"], &[]));
    bad.extend(check(&["model", "jose", "ca"], &["crate::store", "crate::acme"], &[]));
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_can_fail() {
    assert!(!check(&["http"], &["actix_web"], &[]).is_empty());
}

/// The bodies of every `fn name` in `file` (each from its line to the closing brace at
/// its indent), one after another.
fn function_body(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut bodies = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        if !(line.contains(&format!("fn {name}(")) || line.contains(&format!("fn {name}<"))) {
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let end = lines[start..]
            .iter()
            .position(|l| *l == format!("{indent}}}"))
            .unwrap_or_else(|| panic!("fn {name} in {file} does not end"));
        bodies.push(lines[start..=start + end].join("\n"));
    }
    assert!(!bodies.is_empty(), "no fn {name} in {file}");
    bodies.join("\n")
}

/// Every place a secret or a value derived from one is compared goes through
/// `jose::ct_eq` (subtle's `ConstantTimeEq`) or `ring::hmac::verify`, so the time a
/// refusal takes says nothing about how much of a guess was right. This checks the
/// code, not the clock: a timing measurement on a shared machine would be noise.
#[test]
fn secrets_are_compared_in_constant_time() {
    let sites = [
        ("oauth/pkce.rs", "verify", "PKCE verifier digest"),
        ("oauth/clients.rs", "verify", "registered client secret"),
        ("oauth/login.rs", "recompute", "argon2 output"),
        ("oauth/registration.rs", "managed_client", "registration access token"),
        ("oauth/authorize.rs", "login", "login form CSRF token and cookie"),
        ("oauth/authorize.rs", "consent", "consent form CSRF token"),
        ("oauth/device_grant.rs", "device_decide", "device page CSRF token"),
        ("oauth/account.rs", "account_revoke", "account page CSRF token"),
        ("oauth/logout.rs", "logout", "logout confirmation CSRF token"),
        ("acme/nonce.rs", "consume", "ACME nonce tag"),
        ("validate/http01.rs", "check", "http-01 key authorization"),
        ("validate/dns01.rs", "check", "dns-01 digest"),
        ("validate/tls_alpn01.rs", "check_certificate", "tls-alpn-01 digest"),
        ("validate/identity.rs", "check_wire_oidc", "wire-oidc-01 keyauth"),
        ("dpop/mod.rs", "verify", "DPoP ath"),
        ("dpop/nonce.rs", "accepts", "DPoP server nonce"),
        ("dpop/wire.rs", "verify_wire_proof", "Wire backend nonce"),
    ];
    let mut bad = Vec::new();
    for (file, name, what) in sites {
        if !function_body(file, name).contains("ct_eq(") {
            bad.push(format!("{file}::{name} compares the {what} without ct_eq"));
        }
    }
    for (file, name) in [("jose/mac.rs", "verify"), ("jose/compact.rs", "verify_mac")] {
        let body = function_body(file, name);
        if !body.contains("hmac::verify(") {
            bad.push(format!("{file}::{name} checks a MAC without ring::hmac::verify"));
        }
    }
    let ct_eq = function_body("jose/mod.rs", "ct_eq");
    assert!(ct_eq.contains("ConstantTimeEq") || ct_eq.contains(".ct_eq("), "{ct_eq}");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
