//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.<name>` holding
//! base64url(SHA-256(key authorization)). For a wildcard the base name is used.

use super::dns::Dns;
use super::{KeyAuthorization, ValidationError};
use crate::model::{Identifier, IdentifierKind};

/// Checks the TXT records; any one record equal to the digest passes (compared in
/// constant time).
pub(super) async fn check(
    dns: &Dns,
    identifier: &Identifier,
    key_authorization: &KeyAuthorization,
) -> Result<(), ValidationError> {
    if identifier.kind != IdentifierKind::Dns {
        return Err(ValidationError::Unsupported("dns-01 validates DNS names only".into()));
    }
    let base = identifier.value.trim_start_matches("*.");
    let name = format!("_acme-challenge.{base}");
    let records = dns.txt(&name).await?;
    if records.is_empty() {
        return Err(ValidationError::Unauthorized(format!("no TXT record found at {name}")));
    }
    let want = key_authorization.digest_b64();
    if records.iter().any(|r| crate::jose::ct_eq(r, want.as_bytes())) {
        Ok(())
    } else {
        Err(ValidationError::Unauthorized(format!(
            "incorrect TXT record at {name} ({} found, none matches this challenge)",
            records.len()
        )))
    }
}
