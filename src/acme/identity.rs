//! Client-identity orders (Wire's profile, as step-ca serves them): `wireapp-device`
//! and `wireapp-user` identifiers whose values are JSON strings, answered by
//! `wire-dpop-01` and `wire-oidc-01` synchronously.

use serde::Deserialize;

use super::AcmeError;
use crate::model::{Identifier, IdentifierKind};

/// What a Wire identifier says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WireIdentity {
    /// `wireapp://{user}!{device}@{domain}` (devices only).
    pub client_id: Option<String>,
    /// The device id, lower-case hex (devices only).
    pub device_id: Option<String>,
    /// `wireapp://%40{handle}@{domain}`.
    pub handle: String,
    pub name: String,
    pub domain: String,
}

#[derive(Deserialize)]
struct Value {
    #[serde(rename = "client-id")]
    client_id: Option<String>,
    handle: Option<String>,
    name: Option<String>,
    domain: Option<String>,
}

/// Parses and checks a `wireapp-*` identifier value (a JSON string): every field
/// present and non-empty; the handle `wireapp://%40…@{domain}`; for a device, the
/// client id `wireapp://{user}!{hex device}@{domain}`.
pub(super) fn wire_identity(kind: IdentifierKind, value: &str) -> Result<WireIdentity, AcmeError> {
    let bad = |m: &str| AcmeError::Malformed(format!("{}: {m}", kind_name(kind)));
    let v: Value = serde_json::from_str(value).map_err(|_| bad("the value must be a JSON object in a string"))?;
    let field = |f: Option<String>, name: &str| {
        f.filter(|s| !s.is_empty()).ok_or_else(|| bad(&format!("`{name}` is required")))
    };
    let handle = field(v.handle, "handle")?;
    let name = field(v.name, "name")?;
    let domain = field(v.domain, "domain")?;
    if !(handle.starts_with("wireapp://%40") && handle.ends_with(&format!("@{domain}"))) {
        return Err(bad("`handle` must be wireapp://%40{handle}@{domain}"));
    }
    let (client_id, device_id) = match kind {
        IdentifierKind::WireappDevice => {
            let client_id = field(v.client_id, "client-id")?;
            let rest = client_id.strip_prefix("wireapp://").ok_or_else(|| bad("client-id must be a wireapp:// URI"))?;
            let (userinfo, host) = rest.split_once('@').ok_or_else(|| bad("client-id needs @domain"))?;
            let (user, device) = userinfo.split_once('!').ok_or_else(|| bad("client-id must be {user}!{device}"))?;
            let hex = !device.is_empty()
                && device.len() <= 16
                && device.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if user.is_empty() || !hex || host != domain {
                return Err(bad("client-id must be wireapp://{user}!{lower-case hex device}@{domain}"));
            }
            (Some(client_id.clone()), Some(device.to_owned()))
        }
        _ => (None, None),
    };
    Ok(WireIdentity { client_id, device_id, handle, name, domain })
}

fn kind_name(kind: IdentifierKind) -> &'static str {
    match kind {
        IdentifierKind::WireappDevice => "wireapp-device",
        IdentifierKind::WireappUser => "wireapp-user",
        _ => "identifier",
    }
}

/// An identity order carries exactly one `wireapp-device` and one `wireapp-user`, nothing
/// else, agreeing on handle, name and domain (as step-ca requires).
pub(super) fn check_identity_order(
    identifiers: &[Identifier],
) -> Result<Option<(WireIdentity, WireIdentity)>, AcmeError> {
    let wire = |k: IdentifierKind| matches!(k, IdentifierKind::WireappDevice | IdentifierKind::WireappUser);
    if !identifiers.iter().any(|i| wire(i.kind)) {
        return Ok(None);
    }
    let devices: Vec<&Identifier> = identifiers.iter().filter(|i| i.kind == IdentifierKind::WireappDevice).collect();
    let users: Vec<&Identifier> = identifiers.iter().filter(|i| i.kind == IdentifierKind::WireappUser).collect();
    let ([device], [user]) = (devices.as_slice(), users.as_slice()) else {
        return Err(AcmeError::Malformed("an identity order has one wireapp-device and one wireapp-user".into()));
    };
    if identifiers.len() != 2 {
        return Err(AcmeError::RejectedIdentifier("identity orders cannot include other identifiers".into()));
    }
    let d = wire_identity(device.kind, &device.value)?;
    let u = wire_identity(user.kind, &user.value)?;
    if (&d.handle, &d.name, &d.domain) != (&u.handle, &u.name, &u.domain) {
        return Err(AcmeError::Malformed("the device and the user must agree on handle, name and domain".into()));
    }
    Ok(Some((d, u)))
}

/// The URI SANs of an identity certificate as the CSR may write them: the client id
/// (its `!` may be percent-encoded) and the handle.
pub(super) fn normalise_uri(uri: &str) -> String {
    uri.replace("%21", "!")
}
