//! Request extractors.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;

use super::{AppState, HttpError, credentials};
use crate::acme::{AcmeError, SignedRequest};
use crate::model::oauth::ResourceChallenge;
use crate::oauth::OAuthError;

/// A JWS POST (RFC 8555 §6.2): `Content-Type: application/jose+json` (else 415), a body
/// no larger than `limits.jose_body_bytes` (else 413), and the absolute URL it was sent
/// to, for the JWS `url` check.
#[derive(Debug)]
pub(super) struct JosePost(pub SignedRequest);

fn is_jose(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/jose+json"))
}

impl FromRequest for JosePost {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let jose = is_jose(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let Some(state) = state else {
                return Err(AcmeError::internal(std::io::Error::other("application state missing")).into());
            };
            if !jose {
                return Err(AcmeError::UnsupportedMediaType("Content-Type must be application/jose+json".into()).into());
            }
            let limit = state.limits.jose_body_bytes;
            let too_large = || AcmeError::PayloadTooLarge(format!("request body is larger than {limit} bytes"));
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large().into());
            }
            let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| AcmeError::Malformed(format!("cannot read the request body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large().into());
                }
                body.extend_from_slice(&chunk);
            }
            let url = state.acme.links().url(&path_and_query);
            Ok(JosePost(SignedRequest { body, url }))
        })
    }
}

/// Whom the request's access token speaks for: `None` without an `Authorization`
/// header; an error (never a silent `None`) when there is one that does not verify.
#[derive(Debug)]
pub(super) struct Principal(pub Option<crate::model::oauth::Subject>);

impl FromRequest for Principal {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let authorization = credentials::authorization(req).map(|a| a.map(str::to_owned));
        let proofs = credentials::dpop_proofs(req).map(|p| p.into_iter().map(str::to_owned).collect::<Vec<_>>());
        let method = req.method().as_str().to_owned();
        let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        Box::pin(async move {
            let unauthenticated = |detail: String, challenge: ResourceChallenge, dpop_nonce: Option<String>| {
                HttpError::from(AcmeError::Unauthenticated { detail, challenge, dpop_nonce })
            };
            let bad_header = || {
                unauthenticated("malformed header".into(), ResourceChallenge::Bearer { error: "invalid_request" }, None)
            };
            let Some(authorization) = authorization.map_err(|_| bad_header())? else { return Ok(Principal(None)) };
            let proofs = proofs.map_err(|_| bad_header())?;
            let Some(state) = state else {
                return Err(AcmeError::internal(std::io::Error::other("application state missing")).into());
            };
            let url = state.acme.links().url(&path_and_query);
            let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let claims = state
                .authz
                .verify_resource_request(Some(&authorization), &proofs, &method, &url, state.clock.now())
                .await
                .map_err(|e| match e {
                    OAuthError::Resource { detail, challenge, nonce, .. } => unauthenticated(detail, challenge, nonce),
                    other => HttpError::from(other),
                })?;
            Ok(Principal(Some(crate::model::oauth::Subject {
                scope: claims.scope.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                sub: claims.sub,
                client_id: claims.client_id,
            })))
        })
    }
}
