//! Building and starting the actix listeners: the API (ACME, OAuth, client identity)
//! and Pebble's management API.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use super::AppState;
use crate::config::Config;

/// How the listeners run (`[server]`, `[limits]`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `None`: plain HTTP.
    pub tls: Option<rustls::ServerConfig>,
    /// Worker threads; 0: one per core (`server.workers`).
    pub workers: usize,
    /// Stop on SIGINT/SIGTERM.
    pub handle_signals: bool,
    /// A client has this long to send a request's head (`limits.request_header_timeout_ms`).
    pub request_header_timeout: Duration,
    /// In-flight requests get this long to finish at stop (`server.shutdown_timeout_secs`).
    pub shutdown_timeout: Duration,
}

impl ServeOptions {
    pub fn new(config: &Config, tls: Option<rustls::ServerConfig>, handle_signals: bool) -> Self {
        Self {
            tls,
            workers: config.server.workers,
            handle_signals,
            request_header_timeout: Duration::from_millis(config.limits.request_header_timeout_ms),
            shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_secs),
        }
    }
}

/// A started listener: its handle, and the task that runs it until it stops.
pub type Serving = (ServerHandle, tokio::task::JoinHandle<std::io::Result<()>>);

/// Serves the API on `listener`, on the current Tokio runtime.
pub fn serve_api(
    listener: TcpListener,
    state: web::Data<AppState>,
    options: &ServeOptions,
) -> std::io::Result<Serving> {
    let mut server = HttpServer::new(move || {
        let limits = state.limits.clone();
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(super::bound_body_time))
            .wrap(from_fn(super::flush_once))
            .wrap(from_fn(super::log_request))
            .configure(|c| super::configure(c, &limits))
    })
    .client_request_timeout(options.request_header_timeout)
    .shutdown_timeout(options.shutdown_timeout.as_secs());
    if options.workers > 0 {
        server = server.workers(options.workers);
    }
    if !options.handle_signals {
        server = server.disable_signals();
    }
    let server = match &options.tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls.clone()),
        None => server.listen(listener),
    }?
    .run();
    let handle = server.handle();
    Ok((handle, tokio::spawn(server)))
}

/// Serves Pebble's management API on `listener` (one worker, no signals: the API
/// listener's stop stops it).
pub fn serve_management(
    listener: TcpListener,
    state: web::Data<AppState>,
    options: &ServeOptions,
) -> std::io::Result<Serving> {
    let server = HttpServer::new(move || {
        App::new().app_data(state.clone()).wrap(from_fn(super::log_request)).configure(super::mgmt::configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(options.shutdown_timeout.as_secs());
    let server = match &options.tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls.clone()),
        None => server.listen(listener),
    }?
    .run();
    let handle = server.handle();
    Ok((handle, tokio::spawn(server)))
}
