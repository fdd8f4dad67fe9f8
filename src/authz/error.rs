//! OAuth errors (RFC 6749 §4.1.2.1, §5.2; RFC 8628 §3.5; RFC 6750 §3.1).

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
    Resource { code: &'static str, detail: String, status: u16, challenge: String, nonce: Option<String> },
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
    /// `temporarily_unavailable` with HTTP 429 and `Retry-After`: too many failed
    /// attempts from this client or address (`limits.token_max_failures`).
    #[error("{detail}")]
    TooManyAttempts { detail: String, retry_after: i64 },
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
            Self::TooManyAttempts { .. } => "temporarily_unavailable",
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
            _ => 400,
        }
    }

    pub(crate) fn server(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::ServerError(Box::new(e))
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Full(detail) => Self::TooManyAttempts { detail, retry_after: 60 },
            e => Self::server(e),
        }
    }
}

impl From<crate::jose::JoseError> for OAuthError {
    fn from(e: crate::jose::JoseError) -> Self {
        Self::server(e)
    }
}
