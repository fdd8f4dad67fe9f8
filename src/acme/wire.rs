//! ACME JSON shapes (RFC 8555 §7.1), camelCase on the wire.

use serde::{Deserialize, Serialize};

use crate::model::{Identifier, Problem};

/// The directory object (§7.1.1).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    pub revoke_cert: String,
    pub key_change: String,
    /// RFC 9773 §4.
    pub renewal_info: String,
    pub meta: Meta,
}

/// Directory metadata (§7.1.1).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terms_of_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caa_identities: Vec<String>,
    /// draft-ietf-acme-profiles: name → description.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub profiles: std::collections::BTreeMap<String, String>,
    pub external_account_required: bool,
}

/// An account object (§7.1.2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub status: crate::model::AccountStatus,
    pub contact: Vec<String>,
    pub terms_of_service_agreed: bool,
    pub orders: String,
    pub key: serde_json::Value,
    pub created_at: String,
}

/// An order object (§7.1.3).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub status: OrderStatus,
    pub expires: String,
    pub identifiers: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    pub authorizations: Vec<String>,
    pub finalize: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// draft-ietf-acme-profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// RFC 9773 §5: the CertID of the certificate this order replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Order states (§7.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Invalid,
    Pending,
    Processing,
    Ready,
    Valid,
}

/// An authorization object (§7.1.4).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    pub identifier: Identifier,
    pub status: crate::model::AuthzStatus,
    pub expires: String,
    pub challenges: Vec<Challenge>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wildcard: bool,
}

/// A challenge object (§7.1.5, §8).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub url: String,
    pub status: crate::model::ChallengeStatus,
    pub token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// Wire's challenges: what answers them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The orders list (§7.1.2.1).
#[derive(Debug, Clone, Serialize)]
pub struct OrdersList {
    pub orders: Vec<String>,
}

/// newAccount payload (§7.3). Unknown fields are ignored, as the RFC asks.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccountPayload {
    pub contact: Option<Vec<String>>,
    pub terms_of_service_agreed: Option<bool>,
    pub only_return_existing: Option<bool>,
    pub external_account_binding: Option<serde_json::Value>,
}

/// Account update payload (§7.3.2, §7.3.6).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUpdatePayload {
    pub contact: Option<Vec<String>>,
    pub status: Option<String>,
}

/// newOrder payload (§7.4).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrderPayload {
    pub identifiers: Vec<IdentifierPayload>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// RFC 9773 §5: the CertID of the certificate this order replaces.
    pub replaces: Option<String>,
    /// draft-ietf-acme-profiles.
    pub profile: Option<String>,
}

/// An identifier as the client sent it, before checks.
#[derive(Debug, Deserialize)]
pub struct IdentifierPayload {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// Authorization update payload (§7.5.2).
#[derive(Debug, Deserialize)]
pub struct AuthzUpdatePayload {
    pub status: Option<String>,
}

/// finalize payload (§7.4).
#[derive(Debug, Deserialize)]
pub struct FinalizePayload {
    pub csr: String,
}

/// revokeCert payload (§7.6).
#[derive(Debug, Deserialize)]
pub struct RevokePayload {
    pub certificate: String,
    pub reason: Option<i64>,
}

/// keyChange inner payload (§7.3.5).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyChangePayload {
    pub account: String,
    pub old_key: serde_json::Value,
}

/// renewalInfo response (RFC 9773 §4.2).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    pub suggested_window: SuggestedWindow,
}

/// A renewal window (RFC 9773 §4.2).
#[derive(Debug, Clone, Serialize)]
pub struct SuggestedWindow {
    pub start: String,
    pub end: String,
}

/// A certificate's status, in the shape of Pebble's management API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateStatus {
    pub status: &'static str,
    pub serial: String,
    pub certificate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}
