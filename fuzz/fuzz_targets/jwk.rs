//! JWK parse (RFC 7517) and thumbprint (RFC 7638), and a verification with it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = idca::jose::json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(key) = idca::jose::Jwk::from_value(&value) {
        let _ = key.thumbprint();
        let _ = key.to_value();
        for alg in ["ES256", "ES384", "EdDSA", "RS256"] {
            if let Ok(alg) = idca::jose::Algorithm::parse(alg) {
                let _ = key.verify(alg, b"message", data);
            }
        }
    }
});
