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
