//! ACME errors (RFC 8555 §6.7). `http::error` renders them as RFC 7807 problem documents;
//! the internal cause of a `ServerInternal` is logged there and never sent.

use crate::model::Problem;
use crate::model::oauth::ResourceChallenge;
use crate::store::StoreError;

/// The `urn:ietf:params:acme:error:` namespace.
pub const ACME_ERROR_NS: &str = "urn:ietf:params:acme:error:";

/// An ACME error; each variant is one RFC 8555 §6.7 error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// `accountDoesNotExist` (§7.3.1): no account for this key.
    #[error("{0}")]
    AccountDoesNotExist(String),
    /// `alreadyReplaced` (RFC 9773 §5): another order already replaces this certificate.
    #[error("{0}")]
    AlreadyReplaced(String),
    /// `alreadyRevoked` (§7.6): the certificate is already revoked.
    #[error("{0}")]
    AlreadyRevoked(String),
    /// `badCSR` (§7.4): the CSR is unacceptable.
    #[error("{0}")]
    BadCsr(String),
    /// `badNonce` (§6.5): the nonce is missing, unknown or used.
    #[error("{0}")]
    BadNonce(String),
    /// `badRevocationReason` (§7.6): the reason code is not allowed.
    #[error("{0}")]
    BadRevocationReason(String),
    /// `badPublicKey` (§6.7): the JWS key is not supported.
    #[error("{0}")]
    BadPublicKey(String),
    /// `badSignatureAlgorithm` (§6.2): the JWS algorithm is not supported.
    #[error("{0}")]
    BadSignatureAlgorithm(String),
    /// `malformed` with status 409 (§7.3.5): the new key belongs to another account, whose
    /// URL goes in `Location`.
    #[error("{detail}")]
    Conflict { detail: String, location: String },
    /// `externalAccountRequired` (§7.3.4): this server requires external account binding.
    #[error("{0}")]
    ExternalAccountRequired(String),
    /// `invalidContact` (§7.3): a contact URL is not valid.
    #[error("{0}")]
    InvalidContact(String),
    /// `malformed`: the request is malformed (status 400).
    #[error("{0}")]
    Malformed(String),
    /// `malformed` with status 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// `malformed` with status 415 (§6.2): the body is not `application/jose+json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// `malformed` with status 413: the body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// `invalidProfile` (draft-ietf-acme-profiles): the profile is not offered.
    #[error("{0}")]
    InvalidProfile(String),
    /// `orderNotReady` (§7.4): finalize on an order that is not `ready`.
    #[error("{0}")]
    OrderNotReady(String),
    /// `rateLimited` (§6.6): too many requests; retry after the given seconds.
    #[error("{detail}")]
    RateLimited { detail: String, retry_after: u64 },
    /// `rejectedIdentifier` (§7.4): the server will not issue for this identifier.
    #[error("{0}")]
    RejectedIdentifier(String),
    /// `serverInternal`: our failure; the cause is logged, not sent.
    #[error("internal server error")]
    ServerInternal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `unauthorized` with status 401 and `WWW-Authenticate: Bearer` (RFC 6750 §3): the
    /// ACME API is a protected resource and the request carries no valid access token.
    #[error("{detail}")]
    Unauthenticated { detail: String, challenge: ResourceChallenge, dpop_nonce: Option<String> },
    /// Some identifiers of an order are refused (§6.7.1): one subproblem each, with its
    /// `identifier`; the top-level type is theirs when they share one, else `compound`.
    #[error("{detail}")]
    Identifiers { detail: String, subproblems: Vec<Subproblem> },
    /// `unauthorized` with status 401 (§7.3.6): the request is signed by a deactivated
    /// (or revoked) account.
    #[error("{0}")]
    AccountDeactivated(String),
    /// `malformed` with status 405 and `Allow: POST` (§6.3): a plain GET (or another
    /// method) on a resource that takes POST-as-GET.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// `unauthorized` (§6.7): the client lacks authorization for this request.
    #[error("{0}")]
    Unauthorized(String),
    /// `unsupportedContact` (§7.3): a contact URL scheme is not supported.
    #[error("{0}")]
    UnsupportedContact(String),
    /// `unsupportedIdentifier` (§7.4): an identifier type the server does not support.
    #[error("{0}")]
    UnsupportedIdentifier(String),
    /// `userActionRequired` (§7.3.3): the terms of service must be agreed to.
    #[error("{0}")]
    UserActionRequired(String),
    /// `serverInternal` with HTTP 503 and `Retry-After`: the store cannot be reached for
    /// now (the database is down or restarting); nothing was changed.
    #[error("{detail}")]
    Unavailable { detail: String, retry_after: u64 },
}

impl AcmeError {
    /// The error type, without the namespace.
    pub fn short_type(&self) -> &'static str {
        match self {
            Self::Identifiers { subproblems, .. } => match subproblems.split_first() {
                Some((first, rest)) if rest.iter().all(|s| s.short_type == first.short_type) => first.short_type,
                _ => "compound",
            },
            Self::AccountDoesNotExist(_) => "accountDoesNotExist",
            Self::AlreadyReplaced(_) => "alreadyReplaced",
            Self::AlreadyRevoked(_) => "alreadyRevoked",
            Self::BadRevocationReason(_) => "badRevocationReason",
            Self::Conflict { .. } | Self::MethodNotAllowed(_) => "malformed",
            Self::ExternalAccountRequired(_) => "externalAccountRequired",
            Self::InvalidProfile(_) => "invalidProfile",
            Self::RateLimited { .. } => "rateLimited",
            Self::BadCsr(_) => "badCSR",
            Self::BadNonce(_) => "badNonce",
            Self::BadPublicKey(_) => "badPublicKey",
            Self::BadSignatureAlgorithm(_) => "badSignatureAlgorithm",
            Self::InvalidContact(_) => "invalidContact",
            Self::Malformed(_) | Self::NotFound(_) | Self::UnsupportedMediaType(_) | Self::PayloadTooLarge(_) => {
                "malformed"
            }
            Self::OrderNotReady(_) => "orderNotReady",
            Self::RejectedIdentifier(_) => "rejectedIdentifier",
            Self::ServerInternal(_) | Self::Unavailable { .. } => "serverInternal",
            Self::Unauthorized(_) | Self::Unauthenticated { .. } | Self::AccountDeactivated(_) => "unauthorized",
            Self::UnsupportedContact(_) => "unsupportedContact",
            Self::UnsupportedIdentifier(_) => "unsupportedIdentifier",
            Self::UserActionRequired(_) => "userActionRequired",
        }
    }

    /// The full problem type URN.
    pub fn problem_type(&self) -> String {
        format!("{ACME_ERROR_NS}{}", self.short_type())
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::UnsupportedMediaType(_) => 415,
            Self::PayloadTooLarge(_) => 413,
            Self::Conflict { .. } | Self::AlreadyReplaced(_) => 409,
            Self::RateLimited { .. } => 429,
            Self::Unauthenticated { .. } | Self::AccountDeactivated(_) => 401,
            Self::MethodNotAllowed(_) => 405,
            Self::OrderNotReady(_) | Self::Unauthorized(_) | Self::UserActionRequired(_) => 403,
            Self::ServerInternal(_) => 500,
            Self::Unavailable { .. } => 503,
            Self::AccountDoesNotExist(_)
            | Self::AlreadyRevoked(_)
            | Self::BadCsr(_)
            | Self::BadNonce(_)
            | Self::BadRevocationReason(_)
            | Self::BadPublicKey(_)
            | Self::BadSignatureAlgorithm(_)
            | Self::ExternalAccountRequired(_)
            | Self::InvalidContact(_)
            | Self::Malformed(_)
            | Self::InvalidProfile(_)
            | Self::RejectedIdentifier(_)
            | Self::Identifiers { .. }
            | Self::UnsupportedContact(_)
            | Self::UnsupportedIdentifier(_) => 400,
        }
    }

    /// The stored form, for challenge and order errors.
    pub fn to_problem(&self) -> Problem {
        Problem { kind: self.problem_type(), detail: self.to_string(), status: self.status() }
    }

    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::ServerInternal(Box::new(e))
    }
}

/// One identifier's problem (RFC 8555 §6.7.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Subproblem {
    /// The short type (`rejectedIdentifier`, `unsupportedIdentifier`, ...).
    pub short_type: &'static str,
    pub detail: String,
    /// The identifier's `type` and `value`, as the client sent them.
    pub identifier: (String, String),
}

impl AcmeError {
    /// The error for an order some of whose identifiers are refused, each with why; the
    /// detail names them all, the subproblems one by one.
    pub fn for_identifiers(refused: Vec<((String, String), AcmeError)>) -> Self {
        let detail = match refused.as_slice() {
            [(_, only)] => only.to_string(),
            many => format!(
                "{} identifiers were refused: {}",
                many.len(),
                many.iter().map(|(_, e)| e.to_string()).collect::<Vec<_>>().join("; ")
            ),
        };
        let subproblems = refused
            .into_iter()
            .map(|(identifier, e)| Subproblem { short_type: e.short_type(), detail: e.to_string(), identifier })
            .collect();
        Self::Identifiers { detail, subproblems }
    }
}

/// How long a client is told to wait while the store is unreachable.
pub(crate) const UNAVAILABLE_RETRY_AFTER: u64 = 5;

impl From<StoreError> for AcmeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Retry(_) => {
                tracing::warn!(error = %e, "the store is unavailable");
                Self::Unavailable {
                    detail: "the server's database is unavailable; retry shortly".into(),
                    retry_after: UNAVAILABLE_RETRY_AFTER,
                }
            }
            // Refused before anything was written; the log has said so already.
            e @ StoreError::OverQuota { .. } => {
                Self::Unavailable { detail: e.to_string(), retry_after: crate::store::QUOTA_RETRY_AFTER }
            }
            // A NUL in an id or a field: the client's request (RFC 8555 §6.7 malformed).
            StoreError::Unstorable(_) => Self::Malformed("the request holds a NUL character".into()),
            e => Self::internal(e),
        }
    }
}

impl From<crate::ca::CaError> for AcmeError {
    fn from(e: crate::ca::CaError) -> Self {
        match e {
            crate::ca::CaError::BadCsr(m) => Self::BadCsr(m),
            crate::ca::CaError::NotPermitted(m) => Self::RejectedIdentifier(m),
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_statuses_follow_rfc8555() {
        let e = AcmeError::BadNonce("x".into());
        assert_eq!(e.problem_type(), "urn:ietf:params:acme:error:badNonce");
        assert_eq!(e.status(), 400);
        assert_eq!(AcmeError::NotFound("x".into()).problem_type(), "urn:ietf:params:acme:error:malformed");
        assert_eq!(AcmeError::NotFound("x".into()).status(), 404);
        assert_eq!(AcmeError::OrderNotReady("x".into()).status(), 403);
        let one = AcmeError::for_identifiers(vec![(
            ("dns".into(), "a.blocked.test".into()),
            AcmeError::RejectedIdentifier("blocked".into()),
        )]);
        assert_eq!((one.short_type(), one.to_string().as_str()), ("rejectedIdentifier", "blocked"));
        let two = AcmeError::for_identifiers(vec![
            (("dns".into(), "a.blocked.test".into()), AcmeError::RejectedIdentifier("blocked".into())),
            (("email".into(), "a@b".into()), AcmeError::UnsupportedIdentifier("email".into())),
        ]);
        assert_eq!(two.short_type(), "compound");
        assert_eq!(two.to_string(), "2 identifiers were refused: blocked; email");
        let internal = AcmeError::from(StoreError::Backend("disk on fire".into()));
        assert_eq!(internal.to_string(), "internal server error");
    }
}
