//! Access-token and id_token verification (RFC 9068, OIDC Core §3.1.3.7) with idca's
//! own signing keys.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn keys() -> &'static idca::oauth::Keys {
    static K: OnceLock<idca::oauth::Keys> = OnceLock::new();
    K.get_or_init(|| {
        let pkcs8 = idca::jose::SigningKey::generate_pkcs8().expect("key");
        let kid = idca::jose::SigningKey::from_pkcs8(&pkcs8).expect("key").kid().to_owned();
        idca::oauth::Keys::load(&[idca::model::oauth::OAuthKey { kid, pkcs8, created: 0, retired: None }])
            .expect("keys")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = keys().verify::<idca::oauth::AccessTokenClaims>(token, idca::oauth::AT_JWT);
    let _ = keys().verify::<idca::oauth::IdTokenClaims>(token, "JWT");
    if let Ok(jws) = idca::jose::CompactJws::parse(token)
        && let Some(key) = jws.header.jwk.as_ref().and_then(|v| idca::jose::Jwk::from_value(v).ok())
    {
        let _ = jws.verify::<serde_json::Value>(&key);
    }
});
