//! PKCS#10 CSR parse and checks (signature, key type and size, requested names).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = idca::ca::parse_csr(data) {
        let _ = idca::ca::spki_key_type(&csr.spki_der);
    }
});
