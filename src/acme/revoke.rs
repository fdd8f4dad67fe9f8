//! Revocation (RFC 8555 §7.6), the CRL (RFC 5280 §5), and renewal information
//! (RFC 9773).

use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Acme, AcmeError, KeyRule, Reply, SignedRequest, Signer, found, wire};
use crate::ca::is_revocation_reason;
use crate::clock::{UnixTime, rfc3339};
use crate::jose::{Jwk, b64_decode, b64_encode};
use crate::model::{IssuedCertificate, Revocation, Serial};
use crate::store::{StoreError, Versioned};

/// Seconds until the next CRL is promised (RFC 5280 §5.1.2.5 `nextUpdate`).
const CRL_NEXT_UPDATE_SECS: i64 = 86_400;
/// A kept CRL is signed again after this long, so its `nextUpdate` is always at least
/// 23 hours ahead.
const CRL_REBUILD_SECS: i64 = 3_600;
/// `Retry-After` on renewal information (RFC 9773 §4.3 suggests hours).
const ARI_RETRY_AFTER_SECS: u64 = 21_600;

/// The raw key bytes of a DER SubjectPublicKeyInfo, comparable with
/// [`jwk_key_bytes`]: the EC point, the Ed25519 key, or the RSA modulus.
pub(crate) fn spki_key_bytes(spki_der: &[u8]) -> Vec<u8> {
    let Ok((_, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der) else {
        return Vec::new();
    };
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => trim_zeros(rsa.modulus),
        _ => spki.subject_public_key.data.to_vec(),
    }
}

fn trim_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or_default().to_vec()
}

/// The raw key bytes of a JWK (see [`spki_key_bytes`]).
pub(crate) fn jwk_key_bytes(jwk: &Jwk) -> Vec<u8> {
    match jwk {
        Jwk::Ec { x, y, .. } => {
            let mut p = vec![4u8];
            p.extend(b64_decode(x).unwrap_or_default());
            p.extend(b64_decode(y).unwrap_or_default());
            p
        }
        Jwk::Okp { x, .. } => b64_decode(x).unwrap_or_default(),
        Jwk::Rsa { n, .. } => trim_zeros(&b64_decode(n).unwrap_or_default()),
    }
}

/// Whether `jwk` is the key in `spki_der`.
pub(crate) fn same_key(jwk: &Jwk, spki_der: &[u8]) -> bool {
    let a = spki_key_bytes(spki_der);
    !a.is_empty() && a == jwk_key_bytes(jwk)
}

/// Parses an RFC 9773 CertID, `base64url(AKI keyIdentifier) "." base64url(serial)`.
pub(crate) fn parse_cert_id(id: &str) -> Result<(Vec<u8>, Serial), AcmeError> {
    let bad = || AcmeError::Malformed("not a CertID (base64url(AKI).base64url(serial))".into());
    let (aki, serial) = id.split_once('.').ok_or_else(bad)?;
    let aki = b64_decode(aki).map_err(|_| bad())?;
    let serial = b64_decode(serial).map_err(|_| bad())?;
    if aki.is_empty() || serial.is_empty() || serial.len() > 20 {
        return Err(bad());
    }
    Ok((aki, Serial(crate::model::hex(&serial))))
}

/// The CertID of one of our certificates (RFC 9773 §4.1).
pub fn cert_id(aki: &[u8], serial: &Serial) -> String {
    let bytes: Vec<u8> = (0..serial.0.len())
        .step_by(2)
        .filter_map(|i| serial.0.get(i..i + 2))
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    format!("{}.{}", b64_encode(aki), b64_encode(bytes))
}

impl Acme {
    /// revokeCert (§7.6), by the issuing account (`kid`) or by the certificate's own key
    /// (`jwk`):
    /// 1. the request verifies, signed either way;
    /// 2. `certificate` is one idca issued, byte for byte;
    /// 3. the signer is its account, or holds its key (else `unauthorized`);
    /// 4. `reason` is an RFC 5280 code other than 7 (else `badRevocationReason`);
    /// 5. it is not revoked yet (else `alreadyRevoked`);
    /// 6. the revocation is durable before `200` is sent.
    pub async fn revoke_cert(&self, req: SignedRequest, now: UnixTime) -> Result<Reply<()>, AcmeError> {
        // 1.
        let v = self.verify(&req, KeyRule::Any).await?;
        let p: wire::RevokePayload = v.json()?;
        // 2.
        let der =
            b64_decode(&p.certificate).map_err(|_| AcmeError::Malformed("`certificate` is not base64url".into()))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|_| AcmeError::Malformed("`certificate` is not a certificate".into()))?;
        let stored = self.issued_exactly(&der, &cert).await?;
        // 3.
        match &v.signer {
            Signer::Account(a) if Some(&a.value.id) == stored.value.account.as_ref() => {}
            Signer::Account(_) => {
                return Err(AcmeError::Unauthorized("this account did not issue this certificate".into()));
            }
            Signer::Key(jwk) if same_key(jwk, cert.public_key().raw) => {}
            Signer::Key(_) => {
                return Err(AcmeError::Unauthorized("the JWS key is not this certificate's key".into()));
            }
        }
        // 4.
        let reason = match p.reason.unwrap_or(0) {
            r @ 0..=10 if is_revocation_reason(r as u8) => r as u8,
            other => return Err(AcmeError::BadRevocationReason(format!("reason {other} is not allowed"))),
        };
        // 5. and 6.
        self.update_issued(stored, |c| {
            if c.revoked.is_some() {
                return Err(AcmeError::AlreadyRevoked("the certificate is already revoked".into()));
            }
            c.revoked = Some(Revocation { reason, at: now });
            Ok(())
        })
        .await?;
        self.metrics.revocation();
        Ok(Reply::ok(()))
    }

    /// The stored record of exactly `der` (parsed as `cert`): same serial, same bytes.
    async fn issued_exactly(
        &self,
        der: &[u8],
        cert: &X509Certificate<'_>,
    ) -> Result<Versioned<IssuedCertificate>, AcmeError> {
        let serial = Serial(crate::model::hex(cert.raw_serial()));
        let stored = self.issued(&serial).await?;
        if stored.value.leaf_der().as_deref() != Some(der) {
            return Err(AcmeError::NotFound("no such certificate".into()));
        }
        Ok(stored)
    }

    /// Applies `change` to a stored certificate by compare-and-swap, reading it again
    /// after a lost race (three tries); `change` may refuse, on any of them.
    async fn update_issued(
        &self,
        mut stored: Versioned<IssuedCertificate>,
        change: impl Fn(&mut IssuedCertificate) -> Result<(), AcmeError>,
    ) -> Result<(), AcmeError> {
        for _ in 0..3 {
            let mut updated = stored.value.clone();
            change(&mut updated)?;
            match self.store.update_certificate(&updated, stored.version).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) => stored = self.issued(&updated.serial).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AcmeError::internal(StoreError::Conflict))
    }

    pub(crate) async fn issued(&self, serial: &Serial) -> Result<Versioned<IssuedCertificate>, AcmeError> {
        found(self.store.certificate(serial).await, "certificate")
    }

    /// A certificate's status by serial (Pebble's management `cert-status-by-serial`).
    pub async fn certificate_status(&self, serial: &str) -> Result<wire::CertificateStatus, AcmeError> {
        let serial = Serial(serial.to_ascii_lowercase());
        let cert = self.issued(&serial).await?.value;
        Ok(wire::CertificateStatus {
            status: if cert.revoked.is_some() { "Revoked" } else { "Valid" },
            serial: cert.serial.0.clone(),
            certificate: cert.leaf_der().map(|d| crate::ca::cert_pem(&d)).unwrap_or_default(),
            reason: cert.revoked.map(|r| r.reason),
            revoked_at: cert.revoked.map(|r| rfc3339(r.at)),
        })
    }

    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> &str {
        self.ca.intermediate_pem()
    }

    /// The current CRL, DER, signed by the intermediate.
    pub async fn crl(&self, now: UnixTime) -> Result<Vec<u8>, AcmeError> {
        self.crl_of(&self.ca.crl_id(), now).await
    }

    /// The CRL of the CA named `id` ([`Ca::crl_id`]): the current one or one retired by
    /// a root rotation, signed by that CA's intermediate. It lists every revoked serial;
    /// serials are random 128-bit numbers, so another CA's never names one of its leaves.
    /// Built once per revocation epoch and kept (see [`CrlCache`]).
    pub async fn crl_of(&self, id: &str, now: UnixTime) -> Result<Vec<u8>, AcmeError> {
        let ca = std::iter::once(&self.ca)
            .chain(&self.retired)
            .find(|ca| ca.crl_id() == id)
            .ok_or_else(|| AcmeError::NotFound("no such CRL".into()))?;
        // The epoch before the list: a revocation between the two moves the epoch on, so
        // the next request builds again.
        let epoch = self.store.revocation_epoch().await?;
        if let Some(der) = self.crls.get(id, epoch, now) {
            return Ok(der);
        }
        let revoked = self.store.revoked_certificates().await?;
        let der = ca.crl(&revoked, now, CRL_NEXT_UPDATE_SECS)?;
        self.crls.put(id, epoch, now, der.clone());
        Ok(der)
    }

    /// The certificate named by a CertID, if idca issued it.
    pub(crate) async fn by_cert_id(&self, id: &str) -> Result<Versioned<IssuedCertificate>, AcmeError> {
        let (aki, serial) = parse_cert_id(id)?;
        if aki != self.ca.intermediate_ski() {
            return Err(AcmeError::NotFound("no certificate of this CA has that CertID".into()));
        }
        self.issued(&serial).await
    }

    /// renewalInfo (RFC 9773 §4): when to renew. The window starts two thirds into the
    /// validity and lasts a tenth of it; a revoked certificate should be renewed now.
    pub async fn renewal_info(&self, cert_id: &str, now: UnixTime) -> Result<Reply<String>, AcmeError> {
        let cert = self.by_cert_id(cert_id).await?.value;
        let body = match cert.renewal_info {
            Some(set) => set,
            None => {
                let (start, end) = if cert.revoked.is_some() {
                    (now - 3600, now - 3599)
                } else {
                    let lifetime = (cert.not_after - cert.not_before).max(1);
                    let start = cert.not_after - lifetime / 3;
                    (start, (start + lifetime / 10).min(cert.not_after).max(start + 1))
                };
                let window = wire::SuggestedWindow { start: rfc3339(start), end: rfc3339(end) };
                serde_json::to_string(&wire::RenewalInfo { suggested_window: window }).map_err(AcmeError::internal)?
            }
        };
        let mut reply = Reply::ok(body);
        reply.retry_after = Some(ARI_RETRY_AFTER_SECS);
        Ok(reply)
    }

    /// Pebble's management `POST /set-renewal-info/` (`acme.testing.set_renewal_info`):
    /// `{"certificate": PEM, "ARIResponse": text}` (keys in any case, as Go decodes
    /// them); the certificate's renewal information is then `text`, verbatim.
    pub async fn set_renewal_info(&self, body: &[u8]) -> Result<(), AcmeError> {
        if !self.config.testing.set_renewal_info {
            return Err(AcmeError::NotFound("set-renewal-info is off (acme.testing.set_renewal_info)".into()));
        }
        let v: serde_json::Value = crate::jose::json::from_slice(body, self.json_depth)
            .map_err(|e| AcmeError::Malformed(format!("the body is not JSON: {e}")))?;
        let field = |name: &str| {
            v.as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .and_then(|(_, v)| v.as_str())
        };
        let pem = field("certificate").ok_or_else(|| AcmeError::Malformed("`certificate` (PEM) is missing".into()))?;
        let response = field("ARIResponse").unwrap_or_default().to_owned();
        let der = crate::ca::pem_block(pem, "CERTIFICATE")
            .ok_or_else(|| AcmeError::Malformed("`certificate` holds no PEM CERTIFICATE".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| AcmeError::Malformed(format!("`certificate` does not parse: {e}")))?;
        let stored = self.issued_exactly(&der, &cert).await?;
        self.update_issued(stored, |c| {
            c.renewal_info = Some(response.clone());
            Ok(())
        })
        .await
    }
}

/// The CRLs last built, by CA id: each is served until a revocation moves the store's
/// revocation epoch ([`crate::store::PkiStore::revocation_epoch`], shared by every
/// instance) or it is [`CRL_REBUILD_SECS`] old. Building one signs a list the size of
/// every revocation, so without this each download would cost as much as the list.
#[derive(Debug, Default)]
pub(super) struct CrlCache(std::sync::Mutex<std::collections::HashMap<String, KeptCrl>>);

#[derive(Debug)]
struct KeptCrl {
    epoch: u64,
    this_update: UnixTime,
    der: Vec<u8>,
}

impl CrlCache {
    fn get(&self, id: &str, epoch: u64, now: UnixTime) -> Option<Vec<u8>> {
        let kept = self.0.lock().ok()?;
        let crl = kept.get(id)?;
        let fresh = crl.epoch == epoch && (crl.this_update..crl.this_update + CRL_REBUILD_SECS).contains(&now);
        fresh.then(|| crl.der.clone())
    }

    /// Keeps `der`, unless a CRL of a later epoch was kept meanwhile (a slow build
    /// finishing after a newer one).
    fn put(&self, id: &str, epoch: u64, now: UnixTime, der: Vec<u8>) {
        if let Ok(mut kept) = self.0.lock()
            && kept.get(id).is_none_or(|k| k.epoch <= epoch)
        {
            kept.insert(id.to_owned(), KeptCrl { epoch, this_update: now, der });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_id_round_trips() {
        let serial = Serial("0a1b2c".into());
        let id = cert_id(&[1, 2, 3], &serial);
        assert_eq!(id, "AQID.Chss");
        assert_eq!(parse_cert_id(&id).unwrap(), (vec![1, 2, 3], serial));
        for bad in ["", "AQID", ".Chss", "AQID.", "**.**"] {
            assert!(parse_cert_id(bad).is_err(), "{bad}");
        }
    }

    /// A kept CRL is served for its CA at its epoch within the hour after it was built;
    /// another epoch, another CA, an hour later or a clock set back builds again.
    #[test]
    fn kept_crls_are_served_only_while_current() {
        let kept = CrlCache::default();
        assert_eq!(kept.get("a", 1, 100), None);
        kept.put("a", 1, 100, vec![1]);
        assert_eq!(kept.get("a", 1, 100), Some(vec![1]));
        assert_eq!(kept.get("a", 1, 100 + CRL_REBUILD_SECS - 1), Some(vec![1]));
        for (id, epoch, now) in [("a", 2, 100), ("b", 1, 100), ("a", 1, 100 + CRL_REBUILD_SECS), ("a", 1, 99)] {
            assert_eq!(kept.get(id, epoch, now), None, "{id} {epoch} {now}");
        }
        kept.put("a", 2, 200, vec![2]);
        assert_eq!((kept.get("a", 2, 200), kept.get("a", 1, 200)), (Some(vec![2]), None));
        // A build of an older epoch finishing late does not replace it.
        kept.put("a", 1, 201, vec![1]);
        assert_eq!(kept.get("a", 2, 201), Some(vec![2]));
    }
}
