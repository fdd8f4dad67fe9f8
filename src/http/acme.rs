//! ACME routes (RFC 8555 §7), thin: extract, one core call, reply.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::extract::{JosePost, Principal};
use super::{AppState, HttpError, acme_headers};
use crate::acme::{AcmeError, Reply, paths};
use crate::model::{AccountId, AuthzId, ChallengeId, OrderId, Serial};

type State = web::Data<AppState>;
type Res = Result<HttpResponse, HttpError>;

/// The ACME resources under `/acme`, by their path inside it.
fn under_acme(path: &str) -> &str {
    path.strip_prefix("/acme").unwrap_or(path)
}

/// A resource taken only by POST (and POST-as-GET, RFC 8555 §6.3): any other method gets
/// [`post_only`]'s 405.
fn post_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(under_acme(path)).route(web::post().to(handler)).default_service(web::to(post_only))
}

/// The routes, grouped so that a request is matched with few comparisons: the paths
/// under `/acme` in one scope (one prefix test for everything else), the fixed ones
/// first, each path one resource (its regular expression tried once, not per method).
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let under = web::scope("/acme")
        .route(under_acme(paths::NEW_NONCE), web::head().to(new_nonce_head))
        .route(under_acme(paths::NEW_NONCE), web::get().to(new_nonce_get))
        .service(post_resource(paths::NEW_ACCOUNT, new_account))
        .service(post_resource(paths::NEW_ORDER, new_order))
        .service(post_resource(paths::REVOKE_CERT, revoke_cert))
        .service(post_resource(paths::KEY_CHANGE, key_change))
        .service(post_resource("/acme/order/{id}", order))
        .service(post_resource("/acme/authz/{id}", authorization))
        .service(post_resource("/acme/chall/{authz}/{id}", challenge))
        .service(post_resource("/acme/order/{id}/finalize", finalize))
        .service(post_resource("/acme/cert/{serial}", certificate))
        .service(post_resource("/acme/acct/{id}", account))
        .service(post_resource("/acme/acct/{id}/orders", account_orders))
        .service(post_resource("/acme/cert/{serial}/alternate/{n}", alternate_certificate))
        .route("/renewal-info/{id}", web::get().to(renewal_info));
    // A query or path segment that does not deserialize (a repeated `cursor`, an
    // alternate chain number that is not one) is the client's mistake, answered as a
    // problem document (RFC 8555 §6.7), not actix's plain-text default.
    let query = web::QueryConfig::default()
        .error_handler(|e, _| HttpError::Acme(AcmeError::Malformed(format!("the query string: {e}"))).into());
    let path = web::PathConfig::default()
        .error_handler(|e, _| HttpError::Acme(AcmeError::NotFound(format!("no such resource: {e}"))).into());
    let acme = web::scope("")
        .app_data(query)
        .app_data(path)
        .wrap(from_fn(acme_headers))
        .route(paths::DIRECTORY, web::get().to(directory))
        // Pebble's directory path, so Pebble users can switch by changing the binary.
        .route("/dir", web::get().to(directory))
        .service(under)
        .route(paths::CRL, web::get().to(crl))
        .route(&format!("{}/{{id}}", paths::CRL), web::get().to(crl_of));
    cfg.service(acme);
}

/// §6.3: these resources are fetched with POST-as-GET; any other method gets 405 with
/// `Allow: POST` and a `malformed` problem.
async fn post_only(req: actix_web::HttpRequest) -> Res {
    Err(HttpError::Acme(AcmeError::MethodNotAllowed(format!(
        "{} is not allowed here: use POST (POST-as-GET to fetch, RFC 8555 §6.3)",
        req.method()
    ))))
}

/// Renders a core reply: status, `Location`, `Link`, `Retry-After`, JSON body.
fn json_reply<T: Serialize>(r: Reply<T>) -> HttpResponse {
    let mut res = reply_builder(&r);
    res.content_type("application/json").body(serde_json::to_string(&r.body).unwrap_or_default())
}

fn reply_builder<T>(r: &Reply<T>) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::build(if r.created { StatusCode::CREATED } else { StatusCode::OK });
    if let Some(loc) = &r.location {
        res.insert_header((header::LOCATION, loc.as_str()));
    }
    for (url, rel) in &r.links {
        if let Ok(v) = HeaderValue::from_str(&format!("<{url}>;rel=\"{rel}\"")) {
            res.append_header((header::LINK, v));
        }
    }
    if let Some(secs) = r.retry_after {
        res.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    res
}

async fn directory(st: State) -> HttpResponse {
    HttpResponse::Ok().json(st.acme.directory())
}

/// newNonce (§7.2): HEAD answers 200, GET 204; the nonce comes from the middleware.
async fn new_nonce_head() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn new_nonce_get() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn new_account(st: State, req: actix_web::HttpRequest, post: JosePost, who: Principal) -> Res {
    let from = super::credentials::client_ip(&req, &st.trusted_proxies);
    Ok(json_reply(st.acme.new_account(post.0, who.0.as_ref(), from, st.clock.now()).await?))
}

async fn account(st: State, post: JosePost, id: web::Path<String>) -> Res {
    Ok(json_reply(st.acme.account(post.0, &AccountId(id.into_inner())).await?))
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
}

async fn account_orders(st: State, post: JosePost, id: web::Path<String>, q: web::Query<Page>) -> Res {
    let id = AccountId(id.into_inner());
    Ok(json_reply(st.acme.account_orders(post.0, &id, q.cursor.as_deref()).await?))
}

async fn new_order(st: State, post: JosePost, who: Principal) -> Res {
    Ok(json_reply(st.acme.new_order(post.0, who.0.as_ref(), st.clock.now()).await?))
}

async fn order(st: State, post: JosePost, id: web::Path<String>) -> Res {
    Ok(json_reply(st.acme.order(post.0, &OrderId(id.into_inner()), st.clock.now()).await?))
}

async fn finalize(st: State, post: JosePost, id: web::Path<String>) -> Res {
    Ok(json_reply(st.acme.finalize(post.0, &OrderId(id.into_inner()), st.clock.now()).await?))
}

async fn authorization(st: State, post: JosePost, id: web::Path<String>) -> Res {
    Ok(json_reply(st.acme.authorization(post.0, &AuthzId(id.into_inner()), st.clock.now()).await?))
}

async fn challenge(st: State, post: JosePost, ids: web::Path<(String, String)>) -> Res {
    let (authz, id) = ids.into_inner();
    Ok(json_reply(st.acme.challenge(post.0, &AuthzId(authz), &ChallengeId(id), st.clock.now()).await?))
}

/// Certificate download (§7.4.2): `application/pem-certificate-chain`.
async fn certificate(st: State, post: JosePost, serial: web::Path<String>) -> Res {
    Ok(pem_reply(st.acme.certificate(post.0, &Serial(serial.into_inner()), 0).await?))
}

/// An alternate chain of a certificate (§7.4.2), linked from the default one.
async fn alternate_certificate(st: State, post: JosePost, path: web::Path<(String, usize)>) -> Res {
    let (serial, n) = path.into_inner();
    Ok(pem_reply(st.acme.certificate(post.0, &Serial(serial), n).await?))
}

fn pem_reply(r: Reply<String>) -> HttpResponse {
    let mut res = reply_builder(&r);
    res.content_type("application/pem-certificate-chain").body(r.body)
}

/// revokeCert (§7.6): `200` with an empty body.
async fn revoke_cert(st: State, post: JosePost) -> Res {
    let r = st.acme.revoke_cert(post.0, st.clock.now()).await?;
    Ok(reply_builder(&r).finish())
}

async fn key_change(st: State, post: JosePost) -> Res {
    Ok(json_reply(st.acme.key_change(post.0).await?))
}

/// renewalInfo (RFC 9773 §4): an unauthenticated GET.
async fn renewal_info(st: State, id: web::Path<String>) -> Res {
    let r = st.acme.renewal_info(&id, st.clock.now()).await?;
    let mut res = reply_builder(&r);
    Ok(res.content_type("application/json").body(r.body))
}

/// The CRL (RFC 5280 §5), DER, at the URL every leaf names as its distribution point.
async fn crl(st: State) -> Res {
    let der = st.acme.crl(st.clock.now()).await?;
    Ok(HttpResponse::Ok().content_type("application/pkix-crl").body(der))
}

/// The CRL of one CA, current or retired: the distribution point its leaves name.
async fn crl_of(st: State, id: web::Path<String>) -> Res {
    let der = st.acme.crl_of(&id, st.clock.now()).await?;
    Ok(HttpResponse::Ok().content_type("application/pkix-crl").body(der))
}
