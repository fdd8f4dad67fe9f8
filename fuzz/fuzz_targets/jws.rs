//! Flattened JWS (RFC 7515 §7.2.2) parse, then verify with the key it embeds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jws) = idca::jose::FlattenedJws::parse(data)
        && let Some(key) = &jws.header.jwk
    {
        let _ = jws.verify(key);
    }
});
