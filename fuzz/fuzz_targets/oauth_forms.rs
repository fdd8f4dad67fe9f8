//! OAuth bodies through the authorization server core, on a temporary store: the token
//! form (RFC 6749 §4.1.3, §4.4.2, §6), the device authorization form (RFC 8628 §3.1)
//! and client registration JSON (RFC 7591 §2). The first byte picks which.
#![no_main]
use std::sync::{Arc, OnceLock};

use idca::oauth::{AuthServer, ClientCredentials, ClientMetadata, TokenForm};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: AuthServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let store: Arc<dyn idca::store::Store> = Arc::new(idca::store::SledStore::temporary().expect("store"));
        let server = rt
            .block_on(AuthServer::new(
                store,
                idca::config::OAuthConfig::default(),
                idca::config::DpopConfig::default(),
                idca::config::DevicesConfig::default(),
                "https://localhost:14000",
                1_700_000_000,
            ))
            .expect("server");
        Fixture { rt, server }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else { return };
    let f = fixture();
    let now = 1_700_000_000;
    let from = std::net::IpAddr::from([127, 0, 0, 1]);
    match which % 3 {
        0 | 1 => {
            let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(body) else { return };
            let client_id = form.client_id.clone().unwrap_or_default();
            let creds = match &form.client_secret {
                Some(secret) => ClientCredentials::Post { client_id, secret: secret.clone() },
                None => ClientCredentials::None { client_id },
            };
            if which % 3 == 0 {
                let _ = f.rt.block_on(f.server.token(&creds, from, &form, &[], now));
            } else {
                let _ = f.rt.block_on(f.server.device_authorization(
                    &creds,
                    from,
                    form.scope.as_deref(),
                    form.claims.as_deref(),
                    now,
                ));
            }
        }
        _ => {
            if let Ok(m) = idca::jose::json::from_slice::<ClientMetadata>(body) {
                let _ = f.rt.block_on(f.server.register(&m, now));
            }
        }
    }
});
