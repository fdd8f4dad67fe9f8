//! Challenge checks (RFC 8555 §8). The checks take typed inputs and reach the network
//! through reqwest; they know nothing of the store or of ACME's state machines.

mod backend_keys;
mod dial;
mod dns;
mod dns01;
mod http01;
mod identity;
mod oidc_provider;
mod tls_alpn01;

pub use backend_keys::BackendKeys;
pub use dns::Dns;
pub use http01::Http01Checker;
pub use identity::{DpopChallenge, IdentityTokens, OidcChallenge, OidcClaimMap, check_wire_dpop, check_wire_oidc};
pub use oidc_provider::OidcProvider;
pub use tls_alpn01::{ACME_TLS_ALPN, TlsAlpn01Checker, sni_for};

use async_trait::async_trait;

use crate::jose::Jkt;
use crate::model::{ChallengeType, Identifier, Problem};

/// A key authorization (RFC 8555 §8.1): `token || '.' || base64url(Thumbprint(accountKey))`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyAuthorization(String);

impl KeyAuthorization {
    pub fn new(token: &str, jkt: &Jkt) -> Self {
        Self(format!("{token}.{jkt}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// base64url(SHA-256(key authorization)): the dns-01 TXT value (RFC 8555 §8.4).
    pub fn digest_b64(&self) -> String {
        crate::jose::b64_encode(ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes()))
    }
}

impl std::fmt::Debug for KeyAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyAuthorization([elided])")
    }
}

/// Why a validation failed, by ACME error type (RFC 8555 §6.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `connection`: could not connect, or the connection failed.
    #[error("{0}")]
    Connection(String),
    /// `dns`: the name could not be resolved.
    #[error("{0}")]
    Dns(String),
    /// `tls`: the TLS handshake failed or was not what tls-alpn-01 requires.
    #[error("{0}")]
    Tls(String),
    /// `incorrectResponse`: the response was not what the challenge requires.
    #[error("{0}")]
    IncorrectResponse(String),
    /// `unauthorized`: the response did not prove control.
    #[error("{0}")]
    Unauthorized(String),
    /// `unsupportedIdentifier`: this challenge cannot validate this identifier.
    #[error("{0}")]
    Unsupported(String),
}

impl ValidationError {
    /// The stored problem document.
    pub fn to_problem(&self) -> Problem {
        let kind = match self {
            Self::Connection(_) => "connection",
            Self::Dns(_) => "dns",
            Self::IncorrectResponse(_) => "incorrectResponse",
            Self::Tls(_) => "tls",
            Self::Unauthorized(_) => "unauthorized",
            Self::Unsupported(_) => "unsupportedIdentifier",
        };
        let status = if matches!(self, Self::Unauthorized(_)) { 403 } else { 400 };
        Problem { kind: format!("urn:ietf:params:acme:error:{kind}"), detail: self.to_string(), status }
    }
}

/// Checks one challenge against the world.
#[async_trait]
pub trait ChallengeChecker: Send + Sync {
    async fn check(
        &self,
        kind: ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), ValidationError>;
}

/// The real checker: dispatches on the challenge type.
#[derive(Debug)]
pub struct NetworkChecker {
    http01: Http01Checker,
    tls_alpn01: TlsAlpn01Checker,
    /// The configured DNS server, if any.
    dns_server: Option<Dns>,
    /// The system resolver (for dns-01 when no server is configured), if it loads.
    system_dns: Option<Dns>,
    connect_to: Option<std::net::IpAddr>,
    dial: dial::DialPolicy,
}

impl NetworkChecker {
    /// Builds the checkers from `[acme.validation]`.
    pub fn new(config: &crate::config::ValidationConfig) -> Result<Self, String> {
        let timeout = std::time::Duration::from_millis(config.timeout_ms);
        let dns_server = if config.dns_resolver.is_empty() {
            None
        } else {
            let addr =
                config.dns_resolver.parse().map_err(|_| "acme.validation.dns_resolver is not ip:port".to_owned())?;
            Some(Dns::new(Some(addr), timeout)?)
        };
        let system_dns = match &dns_server {
            Some(_) => None,
            None => Dns::new(None, timeout)
                .map_err(
                    |e| tracing::warn!(error = %e, "no system DNS resolver: dns-01 needs acme.validation.dns_resolver"),
                )
                .ok(),
        };
        let connect_to = if config.connect_to.is_empty() {
            None
        } else {
            Some(config.connect_to.parse().map_err(|_| "acme.validation.connect_to is not an IP".to_owned())?)
        };
        Ok(Self {
            // http-01 resolves through the configured DNS server when there is one (as
            // Pebble does with -dnsserver); `connect_to` overrides both.
            http01: Http01Checker::new(config, connect_to, dns_server.clone())?,
            tls_alpn01: TlsAlpn01Checker::new(config.tls_port, timeout)?,
            dial: dial::DialPolicy { private: config.dial_private_addresses },
            dns_server,
            system_dns,
            connect_to,
        })
    }

    fn dns(&self) -> Result<&Dns, ValidationError> {
        self.dns_server
            .as_ref()
            .or(self.system_dns.as_ref())
            .ok_or_else(|| ValidationError::Dns("no DNS resolver available (set acme.validation.dns_resolver)".into()))
    }

    /// The address to dial for an identifier: an IP identifier's own address; for a
    /// name, `connect_to` (always allowed, see `dial`) or the first address it resolves
    /// to (through the configured DNS server, else the system), if the dial policy
    /// allows it.
    async fn address(&self, identifier: &Identifier) -> Result<std::net::IpAddr, ValidationError> {
        let name = identifier.value.as_str();
        if let (crate::model::IdentifierKind::Dns, Some(ip)) = (identifier.kind, self.connect_to) {
            return Ok(ip);
        }
        let ip = match (identifier.kind, &self.dns_server) {
            (crate::model::IdentifierKind::WireappDevice | crate::model::IdentifierKind::WireappUser, _) => {
                Err(ValidationError::Unsupported("not a network identifier".into()))
            }
            (crate::model::IdentifierKind::Ip, _) => {
                name.parse().map_err(|_| ValidationError::Unsupported("bad IP identifier".into()))
            }
            (crate::model::IdentifierKind::Dns, Some(dns)) => dns
                .ips(name)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ValidationError::Dns(format!("no address for {name}"))),
            (crate::model::IdentifierKind::Dns, None) => tokio::net::lookup_host((name, 0))
                .await
                .map_err(|_| ValidationError::Dns(format!("cannot resolve {name}")))?
                .map(|a| a.ip())
                .next()
                .ok_or_else(|| ValidationError::Dns(format!("no address for {name}"))),
        }?;
        self.dial.check(ip)?;
        Ok(ip)
    }
}

#[async_trait]
impl ChallengeChecker for NetworkChecker {
    async fn check(
        &self,
        kind: ChallengeType,
        identifier: &Identifier,
        token: &str,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), ValidationError> {
        match kind {
            ChallengeType::Http01 => self.http01.check(identifier, token, key_authorization).await,
            ChallengeType::Dns01 => dns01::check(self.dns()?, identifier, key_authorization).await,
            ChallengeType::TlsAlpn01 => {
                let ip = self.address(identifier).await?;
                self.tls_alpn01.check(ip, identifier, key_authorization).await
            }
            // Answered synchronously with tokens (acme::identity), never queued.
            ChallengeType::WireDpop01 | ChallengeType::WireOidc01 => {
                Err(ValidationError::Unsupported("identity challenges are validated when answered".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8555 §8.1 defines the construction; the digest is the §8.4 TXT value.
    #[test]
    fn key_authorization_format() {
        let ka = KeyAuthorization::new("tok", &Jkt("thumb".into()));
        assert_eq!(ka.as_str(), "tok.thumb");
        assert_eq!(format!("{ka:?}"), "KeyAuthorization([elided])");
        assert_eq!(ka.digest_b64().len(), 43);
    }
}
