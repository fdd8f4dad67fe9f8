//! OAuth errors (RFC 6749 §4.1.2.1, §5.2; RFC 8628 §3.5; RFC 6750 §3.1).

use crate::model::oauth::ResourceChallenge;

/// An OAuth error; each variant is one RFC error code. `http::error` renders it as the
/// RFC 6749 JSON error (or a redirect, or a page, depending on the endpoint).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// `authorization_pending` (RFC 8628 §3.5): the user has not decided yet.
    #[error("{0}")]
    AuthorizationPending(String),
    /// `expired_token` (RFC 8628 §3.5): the device code expired.
    #[error("{0}")]
    ExpiredToken(String),
    /// `slow_down` (RFC 8628 §3.5): polling too fast; the interval grew by 5 seconds.
    #[error("{0}")]
    SlowDown(String),
    /// `access_denied`: the user or the server refused.
    #[error("{0}")]
    AccessDenied(String),
    /// `invalid_client` (401): client authentication failed (§5.2).
    #[error("{0}")]
    InvalidClient(String),
    /// `invalid_client_metadata` (RFC 7591 §3.2.2).
    #[error("{0}")]
    InvalidClientMetadata(String),
    /// `invalid_redirect_uri` (RFC 7591 §3.2.2).
    #[error("{0}")]
    InvalidRedirectUri(String),
    /// `invalid_dpop_proof` (RFC 9449 §5).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// `use_dpop_nonce` (RFC 9449 §8): sent with `DPoP-Nonce`.
    #[error("{detail}")]
    UseDpopNonce { detail: String, nonce: String },
    /// An error at a protected resource (RFC 6750 §3, RFC 9449 §7.1): 401 or 403 with a
    /// `WWW-Authenticate` challenge (and `DPoP-Nonce` when asked to use one).
    #[error("{detail}")]
    Resource { code: &'static str, detail: String, status: u16, challenge: ResourceChallenge, nonce: Option<String> },
    /// `invalid_grant`: the code, refresh token or credentials are invalid, expired,
    /// revoked, or were issued to another client (§5.2).
    #[error("{0}")]
    InvalidGrant(String),
    /// `invalid_request`: a parameter is missing, repeated or malformed (§5.2).
    #[error("{0}")]
    InvalidRequest(String),
    /// `invalid_scope` (§5.2).
    #[error("{0}")]
    InvalidScope(String),
    /// `invalid_token` (RFC 6750 §3.1, 401): a bearer token is invalid.
    #[error("{0}")]
    InvalidToken(String),
    /// `insufficient_scope` (RFC 6750 §3.1, 403).
    #[error("{0}")]
    InsufficientScope(String),
    /// `server_error`: our failure; the cause is logged, not sent.
    #[error("internal server error")]
    ServerError(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `unauthorized_client`: this client may not use this grant (§5.2).
    #[error("{0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type` (§5.2).
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// `unsupported_response_type` (§4.1.2.1).
    #[error("{0}")]
    UnsupportedResponseType(String),
    /// `unmet_authentication_requirements` (OpenID Connect Core Error Code
    /// unmet_authentication_requirements 1.0): an essential `acr` idca cannot satisfy.
    #[error("{0}")]
    UnmetAuthenticationRequirements(String),
    /// `login_required`, `consent_required`, `interaction_required` (OIDC Core
    /// §3.1.2.6): `prompt=none` and the request needs a page.
    #[error("{detail}")]
    PromptNone { code: &'static str, detail: String },
    /// `temporarily_unavailable` with HTTP 429 and `Retry-After`: too many failed
    /// attempts from this client or address (`limits.token_max_failures`).
    #[error("{detail}")]
    TooManyAttempts { detail: String, retry_after: i64 },
    /// `temporarily_unavailable` (RFC 6749 §4.1.2.1) with HTTP 503 and `Retry-After`: the
    /// store cannot be reached for now; nothing was changed.
    #[error("{0}")]
    TemporarilyUnavailable(String),
}

impl OAuthError {
    /// The RFC error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AccessDenied(_) => "access_denied",
            Self::AuthorizationPending(_) => "authorization_pending",
            Self::ExpiredToken(_) => "expired_token",
            Self::SlowDown(_) => "slow_down",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidDpopProof(_) => "invalid_dpop_proof",
            Self::UseDpopNonce { .. } => "use_dpop_nonce",
            Self::Resource { code, .. } => code,
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::ServerError(_) => "server_error",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::UnsupportedResponseType(_) => "unsupported_response_type",
            Self::UnmetAuthenticationRequirements(_) => "unmet_authentication_requirements",
            Self::PromptNone { code, .. } => code,
            Self::TooManyAttempts { .. } | Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
        }
    }

    /// The HTTP status of the JSON error.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient(_) | Self::InvalidToken(_) => 401,
            Self::Resource { status, .. } => *status,
            Self::InsufficientScope(_) => 403,
            Self::TooManyAttempts { .. } => 429,
            Self::ServerError(_) => 500,
            Self::TemporarilyUnavailable(_) => 503,
            Self::AuthorizationPending(_)
            | Self::ExpiredToken(_)
            | Self::SlowDown(_)
            | Self::AccessDenied(_)
            | Self::InvalidClientMetadata(_)
            | Self::InvalidRedirectUri(_)
            | Self::InvalidDpopProof(_)
            | Self::UseDpopNonce { .. }
            | Self::InvalidGrant(_)
            | Self::InvalidRequest(_)
            | Self::InvalidScope(_)
            | Self::UnauthorizedClient(_)
            | Self::UnsupportedGrantType(_)
            | Self::UnsupportedResponseType(_)
            | Self::UnmetAuthenticationRequirements(_)
            | Self::PromptNone { .. } => 400,
        }
    }

    /// The `error_description` (RFC 6749 §4.1.2.1, §5.2): only %x20-21 / %x23-5B /
    /// %x5D-7E may appear, so a message quoting client input keeps its printable ASCII
    /// and every other character (`"`, `\`, controls, non-ASCII) becomes `?`; at most
    /// 200 characters.
    pub fn description(&self) -> String {
        self.to_string()
            .chars()
            .take(200)
            .map(|c| match c {
                ' '..='~' if c != '"' && c != '\\' => c,
                _ => '?',
            })
            .collect()
    }

    pub(crate) fn server(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::ServerError(Box::new(e))
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Full(detail) => Self::TooManyAttempts { detail, retry_after: 60 },
            e @ crate::store::StoreError::OverQuota { .. } => Self::TemporarilyUnavailable(e.to_string()),
            // A NUL in a parameter (RFC 6749 §5.2 invalid_request: a malformed request).
            crate::store::StoreError::Unstorable(_) => Self::InvalidRequest("a parameter holds a NUL character".into()),
            e @ (crate::store::StoreError::Unavailable(_) | crate::store::StoreError::Retry(_)) => {
                tracing::warn!(error = %e, "the store is unavailable");
                Self::TemporarilyUnavailable("the server's database is unavailable; retry shortly".into())
            }
            e => Self::server(e),
        }
    }
}

impl From<crate::jose::JoseError> for OAuthError {
    fn from(e: crate::jose::JoseError) -> Self {
        Self::server(e)
    }
}

#[cfg(test)]
mod tests {
    use super::OAuthError;

    #[test]
    fn descriptions_hold_only_the_allowed_characters() {
        let e = OAuthError::InvalidScope("scope `a\"b\\c\u{e9}\r\n\u{7f}` is not allowed".into());
        let d = e.description();
        assert_eq!(d, "scope `a?b?c????` is not allowed");
        assert!(d.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)));
        assert_eq!(OAuthError::InvalidRequest("x".repeat(500)).description().len(), 200);
    }
}
