//! The fuzz targets' seed corpus (`fuzz/corpus/<target>/`), made here from real keys,
//! CSRs and tokens. `IDCA_WRITE_FUZZ_SEEDS=1 cargo test --test it fuzz_seeds` rewrites
//! it; otherwise the test checks that every target has its seeds.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::client::{Key, b64, csr};

const TARGETS: [&str; 7] = ["jws", "jwk", "csr", "dpop", "tokens", "acme_payloads", "oauth_forms"];

/// A flattened JWS over `payload` with `protected`, signed by `key`.
fn flattened(key: &Key, mut protected: Value, payload: &[u8]) -> Vec<u8> {
    protected["alg"] = json!(key.alg());
    let p = b64(protected.to_string());
    let body = b64(payload);
    let sig = b64(key.sign(format!("{p}.{body}").as_bytes()));
    json!({"protected": p, "payload": body, "signature": sig}).to_string().into_bytes()
}

/// A compact JWS with `header` and `claims`, signed by `key`.
fn compact(key: &Key, mut header: Value, claims: Value) -> Vec<u8> {
    header["alg"] = json!(key.alg());
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    format!("{input}.{}", b64(key.sign(input.as_bytes()))).into_bytes()
}

fn with_selector(selector: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(body);
    v
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let keys = [Key::p256(), Key::p384(), Key::ed25519(), Key::rsa2048()];
    let url = "https://localhost:14000/acme/new-acct";
    let mut out = Vec::new();
    for key in &keys {
        out.push(("jwk", key.jwk().to_string().into_bytes()));
        out.push((
            "jws",
            flattened(
                key,
                json!({"jwk": key.jwk(), "nonce": "AAAAAAAAAAAAAAAAAAAAAA", "url": url}),
                br#"{"termsOfServiceAgreed":true}"#,
            ),
        ));
        out.push((
            "dpop",
            compact(
                key,
                json!({"typ": "dpop+jwt", "jwk": key.jwk()}),
                json!({"jti": "j1", "htm": "POST", "htu": "https://localhost:14000/oauth/token", "iat": 1_700_000_000}),
            ),
        ));
    }
    let (csr_der, _) = csr(&["a.test", "b.test"]);
    out.push(("csr", csr_der.clone()));
    let now = 1_700_000_000;
    out.push((
        "tokens",
        compact(
            &keys[0],
            json!({"typ": "at+jwt", "kid": "k1"}),
            json!({"iss": "https://localhost:14000", "sub": "alice", "aud": "https://localhost:14000", "exp": now + 60,
                   "iat": now, "jti": "t1", "client_id": "idca-cli", "scope": "openid acme"}),
        ),
    ));
    out.push((
        "tokens",
        compact(
            &keys[2],
            json!({"typ": "JWT", "kid": "k1"}),
            json!({"iss": "x", "sub": "alice", "aud": "idca-cli", "exp": now + 60, "iat": now, "nonce": "n"}),
        ),
    ));
    let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    for (selector, payload) in [
        (0u8, json!({"termsOfServiceAgreed": true, "contact": ["mailto:a@example.com"]})),
        (
            1,
            json!({"identifiers": [{"type": "dns", "value": "*.a.test"}, {"type": "ip", "value": "127.0.0.1"}], "notBefore": "2026-01-01T00:00:00Z", "profile": "default"}),
        ),
        (2, json!({"csr": b64(&csr_der)})),
        (3, json!({"certificate": b64(cert.der()), "reason": 4})),
    ] {
        out.push(("acme_payloads", with_selector(selector, payload.to_string().as_bytes())));
    }
    let inner = flattened(
        &keys[1],
        json!({"jwk": keys[1].jwk(), "url": "https://localhost:14000/acme/key-change"}),
        json!({"account": "https://localhost:14000/acme/acct/a", "oldKey": keys[0].jwk()}).to_string().as_bytes(),
    );
    out.push(("acme_payloads", with_selector(4, &inner)));
    for (selector, body) in [
        (
            0u8,
            "grant_type=authorization_code&code=abc&client_id=idca-cli&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
        (0, "grant_type=refresh_token&refresh_token=r&client_id=idca-cli"),
        (0, "grant_type=client_credentials&client_id=backend&client_secret=s&scope=acme"),
        (0, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=d&client_id=idca-cli"),
        (
            1,
            "client_id=idca-cli&scope=openid%20acme&claims=%7B%22id_token%22%3A%7B%22keyauth%22%3A%7B%22essential%22%3Atrue%7D%7D%7D",
        ),
    ] {
        out.push(("oauth_forms", with_selector(selector, body.as_bytes())));
    }
    let registration = json!({"redirect_uris": ["https://app.test/cb", "http://127.0.0.1/cb"], "client_name": "App",
        "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none", "scope": "openid profile"});
    out.push(("oauth_forms", with_selector(2, registration.to_string().as_bytes())));
    out
}

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

#[test]
fn fuzz_seeds() {
    if std::env::var_os("IDCA_WRITE_FUZZ_SEEDS").is_some() {
        let mut n: std::collections::HashMap<&str, usize> = Default::default();
        for (target, bytes) in seeds() {
            let i = n.entry(target).or_default();
            *i += 1;
            std::fs::create_dir_all(corpus(target)).unwrap();
            std::fs::write(corpus(target).join(format!("seed-{i}")), bytes).unwrap();
        }
    }
    for target in TARGETS {
        let seeds = std::fs::read_dir(corpus(target))
            .map(|d| {
                d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("seed-"))).count()
            })
            .unwrap_or(0);
        assert!(seeds > 0, "fuzz/corpus/{target} has no seeds: run with IDCA_WRITE_FUZZ_SEEDS=1");
    }
}
