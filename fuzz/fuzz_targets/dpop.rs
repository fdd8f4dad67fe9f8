//! DPoP proof verification (RFC 9449 §4.3) against a temporary store, and a Wire
//! client-identity proof.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: idca::dpop::DpopVerifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let store: Arc<dyn idca::store::Store> = Arc::new(idca::store::SledStore::temporary().expect("store"));
        let verifier = idca::dpop::DpopVerifier::new(store, idca::dpop::DpopNonces::new(&[7u8; 32]), 300);
        Fixture { rt: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"), verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = std::str::from_utf8(data) else { return };
    let f = fixture();
    let expected = idca::dpop::Expected {
        htm: "POST",
        htu: "https://localhost:14000/oauth/token",
        access_token: data.first().filter(|b| **b % 2 == 0).map(|_| "token"),
    };
    let _ = f.rt.block_on(f.verifier.verify(proof, &expected, false, 1_700_000_000));
});
