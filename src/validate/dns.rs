//! Name resolution for validation: TXT lookups for dns-01 (RFC 8555 §8.4) and address
//! lookups for http-01 when a resolver is configured (Pebble's `-dnsserver`).
//!
//! Answers are never cached: a client that fixes its TXT record and retries must be
//! seen at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::ValidationError;

/// A resolver: the configured DNS server (UDP and TCP), or the system's.
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<TokioResolver>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// `server` is `ip:port`, or `None` for the system configuration (`/etc/resolv.conf`).
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Self, String> {
        let mut builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| format!("system DNS configuration: {e}"))?,
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.cache_size = 0;
        *builder.options_mut() = opts;
        let resolver = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Self { resolver: Arc::new(resolver) })
    }

    /// The TXT strings at `name`, each record's character-strings concatenated.
    pub async fn txt(&self, name: &str) -> Result<Vec<Vec<u8>>, ValidationError> {
        let fqdn = format!("{name}.");
        let lookup = match self.resolver.txt_lookup(fqdn.as_str()).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
            Err(e) => return Err(dns_error(name, "TXT", &e)),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
                _ => None,
            })
            .collect())
    }

    /// The addresses of `name`.
    pub async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, ValidationError> {
        let fqdn = format!("{name}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                Err(ValidationError::Dns(format!("no A or AAAA record for {name}")))
            }
            Err(e) => Err(dns_error(name, "A/AAAA", &e)),
        }
    }
}

fn dns_error(name: &str, kind: &str, e: &NetError) -> ValidationError {
    ValidationError::Dns(format!("{kind} lookup of {name} failed: {e}"))
}

/// Lets reqwest (http-01) resolve names through [`Dns`].
impl reqwest::dns::Resolve for Dns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let ips = dns.ips(&name).await.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0))) as reqwest::dns::Addrs)
        })
    }
}
