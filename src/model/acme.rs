//! ACME objects (RFC 8555 §7.1) as idca keeps them.

use serde::{Deserialize, Serialize};

use super::ids::{AccountId, AuthzId, ChallengeId, OrderId, Serial};
use crate::clock::UnixTime;
use crate::jose::{Jkt, Jwk};

/// An account (RFC 8555 §7.1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub status: AccountStatus,
    pub key: Jwk,
    pub jkt: Jkt,
    pub contact: Vec<String>,
    pub terms_of_service_agreed: bool,
    pub created: UnixTime,
    /// The external account binding key id used at creation (RFC 8555 §7.3.4).
    #[serde(default)]
    pub eab_kid: Option<String>,
    /// The OAuth subject the account is bound to, when created with an access token.
    #[serde(default)]
    pub subject: Option<String>,
}

impl Account {
    /// A new valid account for `key` (its id time-ordered, its thumbprint computed),
    /// without contacts, EAB binding or OAuth subject, the terms agreed.
    pub fn new(key: Jwk, created: UnixTime) -> Self {
        Self {
            id: AccountId::random(),
            status: AccountStatus::Valid,
            jkt: key.thumbprint(),
            key,
            contact: vec![],
            terms_of_service_agreed: true,
            created,
            eab_kid: None,
            subject: None,
        }
    }
}

/// RFC 8555 §7.1.6, account states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Deactivated,
    Revoked,
    Valid,
}

/// An identifier an order asks a certificate for (RFC 8555 §9.7.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: IdentifierKind,
    pub value: String,
}

/// Identifier types: `dns` (RFC 8555), `ip` (RFC 8738), and Wire's client identity
/// (`wireapp-user`, `wireapp-device`, whose values are JSON strings as in step-ca).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IdentifierKind {
    #[serde(rename = "dns")]
    Dns,
    #[serde(rename = "ip")]
    Ip,
    #[serde(rename = "wireapp-device")]
    WireappDevice,
    #[serde(rename = "wireapp-user")]
    WireappUser,
}

impl IdentifierKind {
    /// The `type` of the identifier object (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Ip => "ip",
            Self::WireappDevice => "wireapp-device",
            Self::WireappUser => "wireapp-user",
        }
    }
}

/// An order (RFC 8555 §7.1.3). Its `pending`/`ready`/`invalid` status is derived from
/// its authorizations (see `acme::order`); only the finalization phase is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub account: AccountId,
    pub identifiers: Vec<Identifier>,
    pub authorizations: Vec<AuthzId>,
    pub expires: UnixTime,
    pub not_before: Option<UnixTime>,
    pub not_after: Option<UnixTime>,
    pub phase: OrderPhase,
    pub created: UnixTime,
    /// The certificate this order replaces (RFC 9773 §5).
    #[serde(default)]
    pub replaces: Option<Serial>,
    /// Its CertID as the client sent it in `replaces` (RFC 9773 §5), shown in the
    /// order object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_cert_id: Option<String>,
    /// The certificate profile (draft-ietf-acme-profiles); `None` on orders stored
    /// before profiles existed, which use the default.
    #[serde(default)]
    pub profile: Option<String>,
}

/// What finalization has done to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum OrderPhase {
    /// Not finalized: status follows the authorizations.
    Open,
    /// Finalized: the certificate was issued.
    Valid { certificate: Serial },
    /// Finalization failed for good.
    Invalid { error: Problem },
}

/// An authorization (RFC 8555 §7.1.4) with its challenges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: AuthzId,
    pub account: AccountId,
    pub identifier: Identifier,
    pub status: AuthzStatus,
    pub expires: UnixTime,
    pub wildcard: bool,
    pub challenges: Vec<Challenge>,
}

/// RFC 8555 §7.1.6, authorization states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthzStatus {
    Deactivated,
    Expired,
    Invalid,
    Pending,
    Revoked,
    Valid,
}

/// A challenge (RFC 8555 §7.1.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: ChallengeId,
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    pub token: String,
    pub status: ChallengeStatus,
    pub validated: Option<UnixTime>,
    pub error: Option<Problem>,
    /// Wire's challenges name what answers them: the access-token URL, or the issuer.
    #[serde(default)]
    pub target: Option<String>,
}

/// Challenge types idca can validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChallengeType {
    /// RFC 8555 §8.4.
    #[serde(rename = "dns-01")]
    Dns01,
    /// RFC 8555 §8.3.
    #[serde(rename = "http-01")]
    Http01,
    /// RFC 8737.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// Wire's device challenge: a client-identity access token.
    #[serde(rename = "wire-dpop-01")]
    WireDpop01,
    /// Wire's user challenge: an OIDC id_token.
    #[serde(rename = "wire-oidc-01")]
    WireOidc01,
}

impl ChallengeType {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns01 => "dns-01",
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::WireDpop01 => "wire-dpop-01",
            Self::WireOidc01 => "wire-oidc-01",
        }
    }
}

/// RFC 8555 §7.1.6, challenge states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeStatus {
    Invalid,
    Pending,
    Processing,
    Valid,
}

/// A stored problem (RFC 7807) explaining why a challenge or order failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The full `urn:ietf:params:acme:error:*` type.
    #[serde(rename = "type")]
    pub kind: String,
    pub detail: String,
    pub status: u16,
}
