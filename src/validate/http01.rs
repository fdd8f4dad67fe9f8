//! http-01 (RFC 8555 §8.3): GET `http://{name}:{port}/.well-known/acme-challenge/{token}`
//! and compare the body with the key authorization. Bounded: connect and total timeouts,
//! a response size cap, a redirect limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::dial::DialPolicy;
use super::{KeyAuthorization, ValidationError};
use crate::config::ValidationConfig;
use crate::model::{Identifier, IdentifierKind};

/// The http-01 checker.
#[derive(Debug)]
pub struct Http01Checker {
    client: reqwest::Client,
    port: u16,
    max_body: usize,
    dial: DialPolicy,
}

/// Why a connection was not made (found again in reqwest's error chain by `describe`).
#[derive(Debug)]
struct Refused(ValidationError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {}

/// Resolves through the configured DNS server or the system, keeping only the
/// addresses the dial policy allows.
struct PolicyResolver {
    dns: Option<super::Dns>,
    dial: DialPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (dns, dial) = (self.dns.clone(), self.dial);
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<IpAddr> = match &dns {
                Some(dns) => {
                    dns.ips(&name).await.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                }
                None => tokio::net::lookup_host((name.as_str(), 0)).await?.map(|a| a.ip()).collect(),
            };
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| dial.check(*ip).map_err(|e| refusal = Some(e)).is_ok())
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(e)) => Err(Box::new(Refused(e)) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// Resolves every name to one address (the `connect_to` test knob).
struct FixedResolver(IpAddr);

impl reqwest::dns::Resolve for FixedResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addr = SocketAddr::new(self.0, 0);
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as reqwest::dns::Addrs) })
    }
}

impl Http01Checker {
    /// Builds the client from `[acme.validation]`.
    pub fn new(config: &ValidationConfig, connect_to: Option<IpAddr>, dns: Option<super::Dns>) -> Result<Self, String> {
        let dial = DialPolicy { private: config.dial_private_addresses };
        let max_redirects = config.max_redirects;
        // Redirects to an address literal skip the resolver: the policy checks them here.
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(Refused(ValidationError::Connection("too many redirects".into())));
            }
            let literal = attempt
                .url()
                .host_str()
                .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok());
            match literal.map(|ip| dial.check(ip)) {
                Some(Err(e)) => attempt.error(Refused(e)),
                _ => attempt.follow(),
            }
        });
        let mut builder = reqwest::Client::builder()
            .redirect(redirects)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .no_proxy()
            // A redirect to https is followed without checking the certificate, as
            // Boulder and Pebble do: http-01 proves control through the body.
            .danger_accept_invalid_certs(true)
            .user_agent(concat!("idca/", env!("CARGO_PKG_VERSION"), " (ACME validation)"));
        builder = match connect_to {
            Some(ip) => builder.dns_resolver(Arc::new(FixedResolver(ip))),
            None => builder.dns_resolver(Arc::new(PolicyResolver { dns, dial })),
        };
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { client, port: config.http_port, max_body: config.max_body_bytes, dial })
    }

    /// Performs the check.
    pub async fn check(
        &self,
        identifier: &Identifier,
        token: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), ValidationError> {
        let host = match identifier.kind {
            IdentifierKind::Dns if identifier.value.starts_with("*.") => {
                return Err(ValidationError::Unsupported("http-01 cannot validate a wildcard name".into()));
            }
            IdentifierKind::Dns => identifier.value.clone(),
            IdentifierKind::Ip => match identifier.value.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                Ok(IpAddr::V4(v4)) => v4.to_string(),
                Err(_) => return Err(ValidationError::Unsupported("bad IP identifier".into())),
            },
            IdentifierKind::WireappDevice | IdentifierKind::WireappUser => {
                return Err(ValidationError::Unsupported("http-01 validates names and addresses only".into()));
            }
        };
        let url = format!("http://{host}:{}/.well-known/acme-challenge/{token}", self.port);
        // A host the URL parser reads as an address (an IP identifier, or a name that
        // looks like one, which newOrder refuses) skips the resolver: check it here.
        if let Some(ip) = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok()))
        {
            self.dial.check(ip)?;
        }
        let mut resp = self.client.get(&url).send().await.map_err(|e| describe(&e, &url))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(ValidationError::Unauthorized(format!("{url} answered HTTP {}", resp.status().as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, &url))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(ValidationError::Unauthorized(format!(
                    "{url}: response larger than {} bytes",
                    self.max_body
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // §8.3: "The server SHOULD ignore whitespace characters at the end of the body."
        let end = body.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        let got = body.get(..end).unwrap_or_default();
        if !crate::jose::ct_eq(got, key_authorization.as_str().as_bytes()) {
            return Err(ValidationError::Unauthorized(format!(
                "the key authorization at {url} does not match this challenge"
            )));
        }
        Ok(())
    }
}

fn describe(e: &reqwest::Error, url: &str) -> ValidationError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(Refused(why)) = s.downcast_ref::<Refused>() {
            return ValidationError::Connection(format!("{url}: {why}"));
        }
        source = s.source();
    }
    if e.is_timeout() {
        ValidationError::Connection(format!("{url}: timed out"))
    } else if e.is_redirect() {
        ValidationError::Connection(format!("{url}: too many redirects"))
    } else if e.is_connect() {
        // reqwest folds resolution failures into connect errors; tell them apart by text.
        let text = format!("{e:?}");
        if text.contains("dns error") || text.contains("failed to lookup") {
            ValidationError::Dns(format!("{url}: cannot resolve the name"))
        } else {
            ValidationError::Connection(format!("{url}: cannot connect"))
        }
    } else {
        ValidationError::Connection(format!("{url}: {e}"))
    }
}
