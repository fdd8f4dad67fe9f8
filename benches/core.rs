//! Micro-benchmarks of the cores (criterion): what one ACME or OAuth request costs
//! before HTTP. Run with `cargo bench --bench core`; the whole-server figures come from
//! `idca-load` (`python3 scripts/bench.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use idca::acme::NonceSource;
use idca::ca::{Ca, LeafRequest, NameConstraints, Usage, parse_csr};
use idca::jose::{CompactJws, FlattenedJws, JsonDepth, Jwk, SigningKey, b64_encode};
use idca::model::{Account, AccountId, AccountStatus};
use idca::store::prelude::*;
use idca::store::{SledStore, Store};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

const NOW: i64 = 1_800_000_000;

/// An ES256 key and its public JWK.
fn es256() -> (EcdsaKeyPair, Jwk) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = key.public_key().as_ref();
    let jwk = Jwk::from_value(&json!({"kty": "EC", "crv": "P-256", "x": b64_encode(&public[1..33]),
        "y": b64_encode(&public[33..65])}))
    .unwrap();
    (key, jwk)
}

/// A newOrder request as a client sends it: flattened JWS, ES256, kid.
fn jws_body(key: &EcdsaKeyPair) -> Vec<u8> {
    let protected = b64_encode(
        json!({"alg": "ES256", "kid": "https://localhost:14000/acme/acct/abc", "nonce": "AAAAAAAAAAAAAAAAAAAAAA",
            "url": "https://localhost:14000/acme/new-order"})
        .to_string(),
    );
    let payload = b64_encode(json!({"identifiers": [{"type": "dns", "value": "www.example.test"}]}).to_string());
    let sig = key.sign(&SystemRandom::new(), format!("{protected}.{payload}").as_bytes()).unwrap();
    json!({"protected": protected, "payload": payload, "signature": b64_encode(sig.as_ref())}).to_string().into_bytes()
}

fn jose(c: &mut Criterion) {
    let (key, jwk) = es256();
    let body = jws_body(&key);
    c.bench_function("jws: parse + verify a flattened ES256 request", |b| {
        b.iter(|| FlattenedJws::parse(black_box(&body), JsonDepth::default()).unwrap().verify(&jwk).unwrap())
    });
    c.bench_function("jwk: thumbprint (RFC 7638)", |b| b.iter(|| black_box(&jwk).thumbprint()));
    let signer = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
    let token = signer
        .sign(
            "at+jwt",
            &json!({"iss": "https://localhost:14000", "sub": "alice", "aud": "acme", "exp": NOW + 300,
            "iat": NOW, "jti": "x", "scope": "openid", "client_id": "c"}),
        )
        .unwrap();
    c.bench_function("token: verify an ES256 access token (at+jwt)", |b| {
        b.iter(|| {
            CompactJws::parse(black_box(&token), JsonDepth::default())
                .unwrap()
                .verify::<serde_json::Value>(signer.jwk())
                .unwrap()
        })
    });
}

fn nonces(c: &mut Criterion) {
    let source = NonceSource::new();
    c.bench_function("nonce: issue + consume", |b| {
        b.iter(|| {
            let n = source.issue();
            source.consume(black_box(&n)).unwrap();
        })
    });
}

fn dpop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let verifier = idca::dpop::DpopVerifier::new(
        store,
        idca::dpop::DpopNonces::new(&[7; 32]),
        std::time::Duration::from_secs(300),
        JsonDepth::default(),
    );
    let signer = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().unwrap()).unwrap();
    let expected = idca::dpop::Expected { htm: "POST", htu: "https://localhost:14000/oauth/token", access_token: None };
    // Each proof has its own jti (a repeated one is a replay): sign them beforehand.
    let mut counter = 0u64;
    c.bench_function("dpop: verify a proof (ES256, jti recorded)", |b| {
        b.iter_batched(
            || {
                counter += 1;
                signer
                    .sign_embedding_jwk(
                        "dpop+jwt",
                        &json!({"jti": format!("j{counter}"), "htm": "POST",
                        "htu": "https://localhost:14000/oauth/token", "iat": NOW}),
                    )
                    .unwrap()
            },
            |proof| rt.block_on(verifier.verify(&proof, &expected, false, NOW)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn pki(c: &mut Criterion) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["www.example.test".to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    c.bench_function("csr: parse + check (P-256)", |b| b.iter(|| parse_csr(black_box(&csr)).unwrap()));
    let material = Ca::generate("idca", &NameConstraints::default(), NOW).unwrap();
    let ca = Ca::load(&material, Some("https://localhost:14000/crl".into())).unwrap();
    let info = parse_csr(&csr).unwrap();
    let names = info.dns_names.clone();
    c.bench_function("ca: sign a leaf (P-256 intermediate)", |b| {
        b.iter(|| {
            ca.issue(&LeafRequest {
                spki_der: &info.spki_der,
                key_type: info.key_type,
                dns_names: &names,
                ip_addresses: &[],
                uris: &[],
                emails: &[],
                subject: None,
                not_before: NOW,
                not_after: NOW + 86_400,
                usage: Usage::TlsServer,
            })
            .unwrap()
        })
    });
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db"), 16).unwrap();
    let (_, jwk) = es256();
    let account = |jwk: &Jwk| Account {
        id: AccountId::random(),
        status: AccountStatus::Valid,
        jkt: jwk.thumbprint(),
        key: jwk.clone(),
        contact: vec![],
        terms_of_service_agreed: true,
        created: NOW,
        eab_kid: None,
        subject: None,
    };
    let existing = account(&jwk);
    rt.block_on(store.create_account(&existing)).unwrap();
    c.bench_function("store: read an account", |b| b.iter(|| rt.block_on(store.account(&existing.id)).unwrap()));
    // A durable write: the transaction and the flush before it is acknowledged.
    let keys: Vec<Jwk> = (0..64).map(|_| es256().1).collect();
    let mut i = 0;
    c.bench_function("store: create an account (durable, on disk)", |b| {
        b.iter(|| {
            i += 1;
            let mut a = account(&keys[i % keys.len()]);
            a.jkt = idca::jose::Jkt(format!("bench-{i}"));
            rt.block_on(store.create_account(&a)).unwrap()
        })
    });
}

criterion_group!(benches, jose, nonces, dpop, pki, store);
criterion_main!(benches);
