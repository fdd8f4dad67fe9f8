//! The HTTP surface: the only module that names actix-web.
//!
//! Handlers extract, make one core call, and reply. Headers every ACME response carries
//! (`Replay-Nonce`, `Cache-Control: no-store`, `Link: rel="index"`) come from middleware;
//! errors are rendered in one place (`error`).

mod acme;
mod clients;
mod credentials;
mod error;
mod extract;
pub mod mgmt;
mod oauth;
mod pages;
pub mod server;
pub mod tls;

pub use error::HttpError;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::clock::Clock;
use crate::config::LimitsConfig;
use crate::metrics::Metrics;

/// What handlers share.
pub struct AppState {
    pub acme: Arc<crate::acme::Acme>,
    pub authz: Arc<crate::oauth::AuthServer>,
    /// What requests and the cores record (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The base URL clients use (no trailing slash).
    pub public_url: String,
    /// Whose forwarding headers name the client (`server.trusted_proxies`).
    pub trusted_proxies: Vec<crate::config::Cidr>,
    /// Session cookies carry `Secure` (the listener is HTTPS).
    pub secure_cookies: bool,
    pub clock: Arc<dyn Clock>,
    pub limits: LimitsConfig,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, limits: &LimitsConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/metrics", web::get().to(metrics));
    oauth::configure(cfg, limits);
    clients::configure(cfg);
    acme::configure(cfg);
}

/// Liveness: the process serves requests and can read its store. A store past its
/// quota is still live (reads, revocations and purges work), so that is said in the
/// body of a 200, not by taking the instance out of a balancer.
async fn healthz(st: web::Data<AppState>) -> actix_web::HttpResponse {
    match st.acme.health().await {
        Ok(None) => actix_web::HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Ok(Some(over)) => {
            actix_web::HttpResponse::Ok().content_type("text/plain").body(format!("ok\nover quota: {over}\n"))
        }
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            actix_web::HttpResponse::ServiceUnavailable().content_type("text/plain").body("unavailable\n")
        }
    }
}

/// Prometheus metrics (text format 0.0.4).
async fn metrics(st: web::Data<AppState>) -> actix_web::HttpResponse {
    let mut body = st.metrics.render();
    let (live, quota) = st.acme.store_usage();
    Metrics::render_store(&mut body, live, quota);
    actix_web::HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}

/// One structured log line per request: the client's address, method, path (never the
/// query, which may carry codes or tokens), status, duration.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let client = credentials::client_ip(req.request(), state.as_ref().map_or(&[], |s| s.trusted_proxies.as_slice()));
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = route_pattern(res.request().match_info());
        state.metrics.request(method_label(&method), &route, res.status().as_u16(), start.elapsed());
    }
    tracing::info!(
        target: "idca::request",
        client = %client,
        method = %method,
        path = %path,
        status = res.status().as_u16(),
        micros = start.elapsed().as_micros() as u64,
    );
    Ok(res)
}

/// The method, for metrics: the standard ones by name, any other (HTTP allows any
/// token) as `other`, so that invented methods cannot grow the metrics.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The route a routed request matched, for metrics: its path with each matched segment
/// written as `{name}` (`/acme/order/{id}`), read from what routing captured instead of
/// matching the path against every route again (`match_pattern` does, with a regular
/// expression per route: 1 % of the server's CPU). A path no route took in full is
/// `unmatched`, so unknown paths cannot grow the metrics.
fn route_pattern(info: &actix_web::dev::Path<actix_web::dev::Url>) -> String {
    if !info.unprocessed().is_empty() || info.as_str().is_empty() {
        return "unmatched".to_owned();
    }
    // Each captured segment is a slice of the path, in order: its place is where it
    // starts in the path, never the first match of its text.
    let path = info.as_str();
    let base = path.as_ptr() as usize;
    let mut pattern = String::with_capacity(path.len());
    let mut done = 0;
    for (name, value) in info.iter() {
        let at = (value.as_ptr() as usize).wrapping_sub(base);
        if value.is_empty() || at < done || at + value.len() > path.len() {
            return "unmatched".to_owned();
        }
        pattern.push_str(path.get(done..at).unwrap_or_default());
        pattern.push('{');
        pattern.push_str(name);
        pattern.push('}');
        done = at + value.len();
    }
    pattern.push_str(path.get(done..).unwrap_or_default());
    pattern
}

/// Durable before acknowledged, with one flush per request: outside `/acme/`, a
/// request's store writes leave their flush to its end, and the response goes out once
/// that flush is done (`store::one_flush`). A failed flush turns the response into an
/// OAuth `server_error`: nothing the request made is acknowledged.
///
/// ACME requests keep a flush per write. Nearly every one makes a single write, so
/// deferring saves no flush there, and the deferral's bookkeeping measured 3-6 % of the
/// issuance rate (README, Performance); OAuth and client-identity requests make two to
/// four writes each, and there it pays (fewer `fdatasync`s and thread wake-ups).
///
/// An ACME request also counts as in progress while it is served, so that the group
/// commit can wait for its write (`store::serving_request`, `storage.commit_delay_us`).
/// Others do not: a login spends its time in argon2, and writes waiting for it would
/// only be later (measured: 8 % fewer enrollments per second when they counted).
pub async fn flush_once(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.path().starts_with("/acme/") {
        let _serving = crate::store::serving_request();
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let (res, flushed) = crate::store::one_flush(next.call(req)).await;
    let res = res?;
    match flushed {
        Ok(()) => Ok(res.map_into_left_body()),
        Err(e) => {
            let error = HttpError::OAuth(e.into());
            let (req, _) = res.into_parts();
            Ok(ServiceResponse::new(req, actix_web::ResponseError::error_response(&error)).map_into_right_body())
        }
    }
}

/// A request body must arrive within `limits.request_body_timeout_ms` of the request
/// head: after that its stream fails and the extractor refuses the request, so a slow
/// client cannot hold a worker (the head has its own timeout, `client_request_timeout`).
pub async fn bound_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Most requests (GET, HEAD, newNonce) carry no body: nothing to bound.
    let h = req.headers();
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
    if !has_body {
        return next.call(req).await;
    }
    let limit = req.app_data::<web::Data<AppState>>().map_or(std::time::Duration::from_secs(10), |s| {
        std::time::Duration::from_millis(s.limits.request_body_timeout_ms)
    });
    let deadline = tokio::time::Instant::now() + limit;
    let body = actix_web::HttpMessage::take_payload(&mut req);
    let bounded = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut body)).await {
            Ok(Some(chunk)) => Some((chunk, Some(body))),
            Ok(None) => None,
            Err(_) => {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the request body did not arrive within {} ms", limit.as_millis()),
                );
                Some((Err(actix_web::error::PayloadError::Io(late)), None))
            }
        }
    });
    req.set_payload(actix_web::dev::Payload::from(
        Box::pin(bounded) as std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>>
    ));
    next.call(req).await
}

/// Adds the headers RFC 8555 asks on ACME responses: a fresh `Replay-Nonce` (§6.5),
/// `Cache-Control: no-store` (§7.2), and `Link: <directory>;rel="index"` (§7.1) on every
/// resource but the directory itself.
pub async fn acme_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let is_directory = req.path() == crate::acme::paths::DIRECTORY || req.path() == "/dir";
    let mut res = next.call(req).await?;
    if let Some(state) = state {
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&state.acme.new_nonce()) {
            h.insert(header::HeaderName::from_static("replay-nonce"), v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if !is_directory
            && let Ok(v) = HeaderValue::from_str(&format!("<{}>;rel=\"index\"", state.acme.links().directory()))
        {
            h.append(header::LINK, v);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};

    use crate::store::conformance::account;
    use crate::store::{AcmeStore, SledStore};

    /// An app whose routes each make three writes to a store and answer 201.
    macro_rules! app {
        ($store:expr) => {{
            let store: SledStore = $store;
            let write_three = move || {
                let store = store.clone();
                async move {
                    for seed in 1..=3 {
                        store.create_account(&account(seed)).await.map_err(actix_web::error::ErrorBadRequest)?;
                    }
                    Ok::<_, actix_web::Error>(HttpResponse::Created().finish())
                }
            };
            test::init_service(
                App::new()
                    .wrap(actix_web::middleware::from_fn(super::flush_once))
                    .route("/acme/new-account", web::post().to(write_three.clone()))
                    .route("/token", web::post().to(write_three)),
            )
            .await
        }};
    }

    #[actix_web::test]
    async fn a_requests_writes_are_flushed_once_before_its_response() {
        let store = SledStore::temporary().unwrap();
        let before = store.flush_count();
        let app = app!(store.clone());
        let res = test::call_service(&app, test::TestRequest::post().uri("/token").to_request()).await;
        assert_eq!(res.status(), 201);
        assert_eq!(store.flush_count(), before + 1, "three writes, one flush, done before the response");
    }

    #[actix_web::test]
    async fn an_acme_requests_writes_flush_each_on_its_own() {
        let store = SledStore::temporary().unwrap();
        let before = store.flush_count();
        let app = app!(store.clone());
        let res = test::call_service(&app, test::TestRequest::post().uri("/acme/new-account").to_request()).await;
        assert_eq!(res.status(), 201);
        assert_eq!(store.flush_count(), before + 3, "three writes, three flushes, each before the next write");
    }

    #[actix_web::test]
    async fn a_failed_flush_turns_the_response_into_a_server_error() {
        let app = app!(SledStore::without_flusher());
        let res = test::call_service(&app, test::TestRequest::post().uri("/token").to_request()).await;
        assert_eq!(res.status(), 500);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"], "server_error");

        // Under /acme/ the write itself reports the failed flush, to the handler.
        let res = test::call_service(&app, test::TestRequest::post().uri("/acme/new-account").to_request()).await;
        assert_eq!(res.status(), 400, "the test handler maps a failed write to 400");
    }
}
