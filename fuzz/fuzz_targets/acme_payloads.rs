//! ACME JSON payloads (RFC 8555 §7.3-7.6): the first byte picks newAccount, newOrder,
//! finalize, revokeCert or keyChange; the rest is the payload, parsed and checked as
//! the handlers do before any store access.
#![no_main]
use idca::acme::wire;
use idca::jose::{b64_decode, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, payload)) = data.split_first() else { return };
    match which % 5 {
        0 => {
            if let Ok(p) = json::from_slice::<wire::NewAccountPayload>(payload)
                && let Some(eab) = &p.external_account_binding
            {
                let _ = idca::jose::MacJws::parse(eab);
            }
        }
        1 => {
            if let Ok(p) = json::from_slice::<wire::NewOrderPayload>(payload) {
                for i in &p.identifiers {
                    let _ = idca::acme::parse_identifier(i);
                }
                for t in [&p.not_before, &p.not_after].into_iter().flatten() {
                    let _ = idca::clock::parse_rfc3339(t);
                }
            }
        }
        2 => {
            if let Ok(p) = json::from_slice::<wire::FinalizePayload>(payload)
                && let Ok(der) = b64_decode(&p.csr)
            {
                let _ = idca::ca::parse_csr(&der);
            }
        }
        3 => {
            if let Ok(p) = json::from_slice::<wire::RevokePayload>(payload)
                && let Ok(der) = b64_decode(&p.certificate)
            {
                // As revokeCert reads it: the certificate, its serial and key.
                if let Ok((_, cert)) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
                    x509_parser::error::X509Error,
                >>::from_der(&der)
                {
                    let _ = (cert.raw_serial(), cert.public_key().raw);
                }
            }
        }
        _ => {
            // keyChange: the payload is itself a JWS whose payload names the account.
            if let Ok(inner) = idca::jose::FlattenedJws::parse(payload) {
                let _ = json::from_slice::<wire::KeyChangePayload>(&inner.payload);
                if let Some(key) = &inner.header.jwk {
                    let _ = inner.verify(key);
                }
            }
        }
    }
});
