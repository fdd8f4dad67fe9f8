//! Challenge checks (RFC 8555 §8). The checks take typed inputs and reach the network
//! through reqwest; they know nothing of the store or of ACME's state machines.

mod http01;

pub use http01::Http01Checker;

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
        crate::jose::b64_encode(ring::digest::digest(
            &ring::digest::SHA256,
            self.0.as_bytes(),
        ))
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
            Self::Unauthorized(_) => "unauthorized",
            Self::Unsupported(_) => "unsupportedIdentifier",
        };
        let status = if matches!(self, Self::Unauthorized(_)) {
            403
        } else {
            400
        };
        Problem {
            kind: format!("urn:ietf:params:acme:error:{kind}"),
            detail: self.to_string(),
            status,
        }
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
    pub http01: Http01Checker,
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
            ChallengeType::Http01 => {
                self.http01
                    .check(identifier, token, key_authorization)
                    .await
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
