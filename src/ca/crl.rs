//! Certificate revocation lists (RFC 5280 §5), signed by the intermediate.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber};

use super::{Ca, CaError, datetime};
use crate::clock::UnixTime;
use crate::model::{Revocation, Serial};

impl Ca {
    /// A CRL (RFC 5280 §5) signed by the intermediate, listing `revoked`. Its number is
    /// `now`, which grows with every CRL idca issues.
    pub fn crl(
        &self,
        revoked: &[(Serial, Revocation)],
        now: UnixTime,
        next_update_secs: i64,
    ) -> Result<Vec<u8>, CaError> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, r)| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(serial)?),
                    revocation_time: datetime(r.at)?,
                    reason_code: revocation_reason(r.reason),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: datetime(now)?,
            next_update: datetime(now + next_update_secs.max(1))?,
            crl_number: SerialNumber::from_slice(&now.max(1).to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.intermediate_ski.clone()),
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// The bytes of a hex serial.
fn serial_bytes(serial: &Serial) -> Result<Vec<u8>, CaError> {
    let s = serial.as_str();
    if !s.len().is_multiple_of(2) {
        return Err(CaError::Material(format!("bad serial {s}")));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CaError::Material(format!("bad serial {s}")))
        })
        .collect()
}

/// RFC 5280 §5.3.1 reason codes (7 is unused).
fn revocation_reason(code: u8) -> Option<RevocationReason> {
    Some(match code {
        0 => RevocationReason::Unspecified,
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => return None,
    })
}

/// Whether `code` is a reason an ACME client may give (RFC 8555 §7.6, RFC 5280 §5.3.1).
pub fn is_revocation_reason(code: u8) -> bool {
    revocation_reason(code).is_some()
}
