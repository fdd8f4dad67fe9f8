//! The management listener: what Pebble serves on its port 15000 for test harnesses.
//! Root and intermediate PEMs of every chain, certificate status, and (a test knob, off
//! by default) Pebble's renewal-information override. Unlike Pebble, idca
//! never serves private keys here: its CA persists and may be trusted.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, HttpError};

type State = web::Data<AppState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/roots/{n}", web::get().to(root))
        .route("/intermediates/{n}", web::get().to(intermediate))
        .route("/cert-status-by-serial/{serial}", web::get().to(cert_status))
        .route("/set-renewal-info/", web::post().to(set_renewal_info))
        .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok\n") }));
}

/// `/roots/{n}`: the root chain `n` ends at (0: idca's root, 1..: alternate roots),
/// with a `Link: rel="alternate"` to each other root, as Pebble.
async fn root(st: State, req: HttpRequest, n: web::Path<usize>) -> HttpResponse {
    chain_member(&req, st.acme.chain_count(), *n, "/roots/", st.acme.chain_root_pem(*n))
}

/// `/intermediates/{n}`: the issuing intermediate's certificate in chain `n`.
async fn intermediate(st: State, req: HttpRequest, n: web::Path<usize>) -> HttpResponse {
    chain_member(&req, st.acme.chain_count(), *n, "/intermediates/", st.acme.chain_intermediate_pem(*n))
}

fn chain_member(req: &HttpRequest, count: usize, n: usize, prefix: &str, pem: Option<String>) -> HttpResponse {
    let Some(pem) = pem else { return HttpResponse::NotFound().finish() };
    let info = req.connection_info();
    let mut res = HttpResponse::Ok();
    res.content_type("application/pem-certificate-chain");
    for other in (0..count).filter(|m| *m != n) {
        let link = format!("<{}://{}{prefix}{other}>;rel=\"alternate\"", info.scheme(), info.host());
        res.append_header((header::LINK, link));
    }
    res.body(pem)
}

/// Pebble's `POST /set-renewal-info/` (`acme.testing.set_renewal_info`).
async fn set_renewal_info(st: State, body: web::Bytes) -> Result<HttpResponse, HttpError> {
    st.acme.set_renewal_info(&body).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn cert_status(st: State, serial: web::Path<String>) -> Result<HttpResponse, HttpError> {
    Ok(HttpResponse::Ok().json(st.acme.certificate_status(&serial).await?))
}
