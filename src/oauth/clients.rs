//! Clients: registration data, redirect URI matching, authentication (RFC 6749 §2).

use super::OAuthError;
use super::login::verify_password_off_worker;
use crate::config::ClientConfig;
use crate::model::oauth::{RegisteredClient, SecretHash};

/// A registered client.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// How the secret is checked; `None` for a public client.
    pub secret: Option<SecretCheck>,
    /// Registered through RFC 7591 (limited scopes, consent required).
    pub dynamic: bool,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    /// RP-initiated logout's return addresses (exact match).
    pub post_logout_redirect_uris: Vec<String>,
}

impl From<&ClientConfig> for Client {
    fn from(c: &ClientConfig) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            secret: (!c.secret_hash.is_empty()).then(|| SecretCheck::Argon2(c.secret_hash.clone())),
            dynamic: false,
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            grant_types: c.grant_types.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        }
    }
}

impl From<&RegisteredClient> for Client {
    fn from(c: &RegisteredClient) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.client_name.clone(),
            secret: c.secret_hash.clone().map(SecretCheck::Sha256),
            dynamic: true,
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            grant_types: c.grant_types.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        }
    }
}

/// A client secret as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretCheck {
    /// An argon2 PHC string (secrets chosen by people, in config).
    Argon2(String),
    /// SHA-256 of a 256-bit secret idca generated (dynamic registration).
    Sha256(SecretHash),
}

impl SecretCheck {
    async fn verify(&self, secret: &str) -> bool {
        match self {
            Self::Argon2(phc) => verify_password_off_worker(secret, phc).await,
            Self::Sha256(hash) => crate::jose::ct_eq(SecretHash::of(secret).0.as_bytes(), hash.0.as_bytes()),
        }
    }
}

/// How a request identified its client (RFC 6749 §2.3.1).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `Authorization: Basic` (client_secret_basic).
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the form (client_secret_post).
    Post { client_id: String, secret: String },
    /// `client_id` only: a public client.
    None { client_id: String },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { client_id, .. } => write!(f, "Basic({client_id}, [elided])"),
            Self::Post { client_id, .. } => write!(f, "Post({client_id}, [elided])"),
            Self::None { client_id } => write!(f, "None({client_id})"),
        }
    }
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }

    /// Matches a redirect URI exactly (RFC 9700 §2.1), except the port of a loopback
    /// `http` URI (RFC 8252 §7.3).
    pub fn matches_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri || loopback_equal(r, uri))
    }

    /// Authenticates the client behind `creds` (secrets compared in constant time); a
    /// public client authenticates with its id alone.
    pub async fn authenticate(&self, creds: &ClientCredentials) -> Result<(), OAuthError> {
        let fail = || OAuthError::InvalidClient("client authentication failed".into());
        match (creds, &self.secret) {
            (ClientCredentials::Basic { secret, .. } | ClientCredentials::Post { secret, .. }, Some(check)) => {
                if check.verify(secret).await { Ok(()) } else { Err(fail()) }
            }
            (ClientCredentials::None { .. }, None) => Ok(()),
            (ClientCredentials::None { .. }, Some(_)) => {
                Err(OAuthError::InvalidClient("this client must authenticate with its secret".into()))
            }
            (_, None) => Err(OAuthError::InvalidClient("a public client has no secret".into())),
        }
    }
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } | Self::None { client_id } => client_id,
        }
    }
}

/// `http://127.0.0.1:PORT/path` equals `http://127.0.0.1/path` (any port), likewise for
/// `[::1]` (RFC 8252 §7.3). Nothing else is relaxed.
fn loopback_equal(registered: &str, given: &str) -> bool {
    fn split(u: &str) -> Option<(&str, &str)> {
        let rest = u.strip_prefix("http://")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, ""),
        };
        let host = if authority.starts_with("[::1]") { "[::1]" } else { authority.split(':').next()? };
        let port = authority.get(host.len()..)?;
        if !(port.is_empty()
            || (port.starts_with(':') && port.len() > 1 && port[1..].bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        matches!(host, "127.0.0.1" | "[::1]").then_some((host, path))
    }
    matches!((split(registered), split(given)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> Client {
        Client {
            client_id: "c".into(),
            name: "c".into(),
            secret: None,
            dynamic: false,
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            scopes: vec![],
            grant_types: vec![],
            post_logout_redirect_uris: vec![],
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = client(&["https://app.example/cb"]);
        assert!(c.matches_redirect_uri("https://app.example/cb"));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/CB",
            "https://app.example.evil/cb",
            "http://app.example/cb",
            "https://app.example:443/cb",
        ] {
            assert!(!c.matches_redirect_uri(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_ports_are_free_but_nothing_else() {
        let c = client(&["http://127.0.0.1/callback", "http://[::1]/cb"]);
        assert!(c.matches_redirect_uri("http://127.0.0.1:53111/callback"));
        assert!(c.matches_redirect_uri("http://[::1]:8080/cb"));
        for bad in [
            "http://127.0.0.1:53111/other",
            "http://127.0.0.2:53111/callback",
            "http://localhost:53111/callback",
            "http://127.0.0.1:x/callback",
            "http://127.0.0.1.evil.example/callback",
        ] {
            assert!(!c.matches_redirect_uri(bad), "{bad}");
        }
    }
}
