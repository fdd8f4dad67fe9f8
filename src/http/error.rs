//! The one place errors become HTTP responses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::acme::AcmeError;
use crate::model::oauth::ResourceChallenge;
use crate::oauth::OAuthError;

/// The `WWW-Authenticate` value of a protected resource's refusal (RFC 6750 §3, RFC 9449
/// §7.1: a DPoP challenge names the proof algorithms accepted).
fn www_authenticate(challenge: ResourceChallenge) -> String {
    let algs = crate::dpop::ALGS.join(" ");
    match challenge {
        ResourceChallenge::Any => format!("Bearer realm=\"idca\", DPoP realm=\"idca\", algs=\"{algs}\""),
        ResourceChallenge::Bearer { error } => format!("Bearer realm=\"idca\", error=\"{error}\""),
        ResourceChallenge::Dpop { error } => format!("DPoP realm=\"idca\", error=\"{error}\", algs=\"{algs}\""),
        ResourceChallenge::Scope(scope) => format!("Bearer realm=\"idca\", scope=\"{scope}\""),
    }
}

/// An error on its way to the client.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Rendered as an RFC 7807 problem document (RFC 8555 §6.7).
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// Rendered as an RFC 6749 §5.2 JSON error.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

/// Outside ACME, a credential header that cannot be read is an OAuth error (RFC 6750
/// §3.1, RFC 9449 §7.1).
impl From<super::credentials::CredentialError> for HttpError {
    fn from(e: super::credentials::CredentialError) -> Self {
        Self::OAuth(e.into())
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Acme(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Self::OAuth(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Acme(e) => {
                if let AcmeError::ServerInternal(source) = e {
                    tracing::error!(error = %source, "internal error");
                }
                let mut body = json!({
                    "type": e.problem_type(),
                    "detail": e.to_string(),
                    "status": e.status(),
                });
                if matches!(e, AcmeError::BadSignatureAlgorithm(_)) {
                    body["algorithms"] = json!(crate::jose::Algorithm::ALL);
                }
                // RFC 8555 §6.7.1.
                if let AcmeError::Identifiers { subproblems, .. } = e {
                    body["subproblems"] = subproblems
                        .iter()
                        .map(|s| {
                            json!({
                                "type": format!("{}{}", crate::acme::ACME_ERROR_NS, s.short_type),
                                "detail": s.detail,
                                "identifier": {"type": s.identifier.0, "value": s.identifier.1},
                            })
                        })
                        .collect();
                }
                let mut res = HttpResponse::build(self.status_code());
                match e {
                    AcmeError::Conflict { location, .. } => {
                        res.insert_header((actix_web::http::header::LOCATION, location.as_str()));
                    }
                    AcmeError::Unauthenticated { challenge, dpop_nonce, .. } => {
                        res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, www_authenticate(*challenge)));
                        if let Some(n) = dpop_nonce {
                            res.insert_header(("DPoP-Nonce", n.as_str()));
                        }
                    }
                    AcmeError::MethodNotAllowed(_) => {
                        res.insert_header((actix_web::http::header::ALLOW, "POST"));
                    }
                    AcmeError::RateLimited { retry_after, .. } | AcmeError::Unavailable { retry_after, .. } => {
                        res.insert_header((actix_web::http::header::RETRY_AFTER, retry_after.to_string()));
                    }
                    _ => {}
                }
                res.content_type("application/problem+json").body(body.to_string())
            }
            Self::OAuth(e) => {
                if let OAuthError::ServerError(source) = e {
                    tracing::error!(error = %source, "internal error");
                }
                let mut res = HttpResponse::build(self.status_code());
                match e {
                    // RFC 6749 §5.2: a failed Basic authentication gets a challenge.
                    OAuthError::InvalidClient(_) => {
                        res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Basic realm=\"idca\""));
                    }
                    // RFC 9449 §8: the nonce to retry with.
                    OAuthError::UseDpopNonce { nonce, .. } => {
                        res.insert_header(("DPoP-Nonce", nonce.as_str()));
                    }
                    // RFC 6750 §3, RFC 9449 §7.1.
                    OAuthError::Resource { challenge, nonce, .. } => {
                        res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, www_authenticate(*challenge)));
                        if let Some(n) = nonce {
                            res.insert_header(("DPoP-Nonce", n.as_str()));
                        }
                    }
                    OAuthError::TooManyAttempts { retry_after, .. } => {
                        res.insert_header((actix_web::http::header::RETRY_AFTER, retry_after.to_string()));
                    }
                    OAuthError::TemporarilyUnavailable(_) => {
                        res.insert_header((actix_web::http::header::RETRY_AFTER, "5"));
                    }
                    OAuthError::InvalidToken(_) | OAuthError::InsufficientScope(_) => {
                        res.insert_header((
                            actix_web::http::header::WWW_AUTHENTICATE,
                            format!("Bearer realm=\"idca\", error=\"{}\"", e.code()),
                        ));
                    }
                    _ => {}
                }
                res.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                    .json(json!({"error": e.code(), "error_description": e.description()}))
            }
        }
    }
}
