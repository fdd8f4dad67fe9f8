//! The management listener: what Pebble serves on its port 15000 for test harnesses.
//! Read-only: root and intermediate PEMs and certificate status. Unlike Pebble, idca
//! never serves private keys here: its CA persists and may be trusted.

use actix_web::{HttpResponse, web};

use super::{AppState, HttpError};

type State = web::Data<AppState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/roots/{n}", web::get().to(root))
        .route("/intermediates/{n}", web::get().to(intermediate))
        .route("/cert-status-by-serial/{serial}", web::get().to(cert_status))
        .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok\n") }));
}

fn pem(body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("application/pem-certificate-chain").body(body.to_owned())
}

/// `/roots/0`: idca has one chain, so only index 0 exists.
async fn root(st: State, n: web::Path<u32>) -> HttpResponse {
    if *n == 0 { pem(st.acme.root_pem()) } else { HttpResponse::NotFound().finish() }
}

async fn intermediate(st: State, n: web::Path<u32>) -> HttpResponse {
    if *n == 0 { pem(st.acme.intermediate_pem()) } else { HttpResponse::NotFound().finish() }
}

async fn cert_status(st: State, serial: web::Path<String>) -> Result<HttpResponse, HttpError> {
    Ok(HttpResponse::Ok().json(st.acme.certificate_status(&serial).await?))
}
