//! Devices and client identity (Wire's profile): `POST /clients`,
//! `HEAD|GET /clients/{cid}/nonce`, `POST /clients/{cid}/access-token`, also under a
//! wire-server API version prefix `/v{N}` (N from 0 to 99), as Wire's clients call them.
//! Thin: the user's access token is checked by `authz`, everything else is one `authz`
//! call.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, HttpError, credentials};
use crate::oauth::AccessTokenClaims;

type State = web::Data<AppState>;

/// Unversioned, then under wire-server's API version prefixes (`/v5/clients/…`): the
/// same endpoints, the same checks. Each set in a scope, so that other requests pass it
/// with one prefix test.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    for prefix in ["/clients", "/v{api_version:[0-9]{1,2}}/clients"] {
        cfg.service(
            web::scope(prefix)
                .route("", web::post().to(register))
                .service(
                    web::resource("/{cid}/nonce").route(web::head().to(nonce_head)).route(web::get().to(nonce_get)),
                )
                .route("/{cid}/access-token", web::post().to(access_token)),
        );
    }
}

/// The device id in the path.
fn cid(req: &HttpRequest) -> &str {
    req.match_info().get("cid").unwrap_or_default()
}

/// The user behind the request's `Authorization: Bearer` token.
async fn user(st: &AppState, req: &HttpRequest) -> Result<AccessTokenClaims, HttpError> {
    let authorization = credentials::authorization(req)?;
    let url = format!("{}{}", st.public_url, req.path());
    Ok(st.authz.verify_resource_request(authorization, &[], req.method().as_str(), &url, st.clock.now()).await?)
}

#[derive(serde::Deserialize, Default)]
struct NewDevice {
    #[serde(default)]
    label: String,
}

/// Registers a device for the logged-in user: `201` with its id and client id.
async fn register(st: State, req: HttpRequest, body: Option<web::Json<NewDevice>>) -> Result<HttpResponse, HttpError> {
    let who = user(&st, &req).await?;
    let label = body.map(|b| b.into_inner().label).unwrap_or_default();
    let device = st.authz.register_device(&who, &label, st.clock.now()).await?;
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(device))
}

async fn nonce(
    st: &AppState,
    req: &HttpRequest,
    cid: &str,
    mut res: actix_web::HttpResponseBuilder,
) -> Result<HttpResponse, HttpError> {
    let who = user(st, req).await?;
    let nonce = st.authz.device_nonce(&who, cid, st.clock.now()).await?;
    Ok(res.insert_header(("Replay-Nonce", nonce)).insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

/// `HEAD`: 200 with `Replay-Nonce` (wire-server `head-nonce`).
async fn nonce_head(st: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    nonce(&st, &req, cid(&req), HttpResponse::Ok()).await
}

/// `GET`: 204 with `Replay-Nonce` (wire-server `get-nonce`).
async fn nonce_get(st: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    nonce(&st, &req, cid(&req), HttpResponse::NoContent()).await
}

/// The client-identity access token (its proof's `htu` is the unversioned URL, the
/// wire-dpop-01 challenge's target, whichever path was called).
async fn access_token(st: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let who = user(&st, &req).await?;
    let proofs = credentials::dpop_proofs(&req)?;
    let token = st.authz.device_access_token(&who, cid(&req), &proofs, st.clock.now()).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(token))
}
