//! Clients: registration data, redirect URI matching, authentication (RFC 6749 §2).

use super::OAuthError;
use super::client_auth::{ClientKeys, MacSecret};
use super::login::verify_password_off_worker;
use crate::config::ClientConfig;
use crate::model::oauth::{RegisteredClient, SecretHash};

/// A registered client.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// How the client proves itself (RFC 6749 §2.3, RFC 7523 §2.2).
    pub auth: ClientAuth,
    /// Registered through RFC 7591 (limited scopes, consent required).
    pub dynamic: bool,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    /// RP-initiated logout's return addresses (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    /// Authorization requests only through PAR (RFC 9126 §6).
    pub require_pushed_authorization_requests: bool,
}

/// How a client authenticates (one method per client, as registered).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    /// A public client: its id alone (`none`).
    None,
    /// A secret, sent with HTTP Basic or in the form (`client_secret_basic`,
    /// `client_secret_post`).
    Secret(SecretCheck),
    /// A JWT signed with one of these keys (`private_key_jwt`).
    PrivateKeyJwt(ClientKeys),
    /// A JWT MACed with this secret (`client_secret_jwt`).
    ClientSecretJwt(MacSecret),
}

impl ClientAuth {
    /// The method's name in metadata (RFC 7591 §2).
    pub fn method(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Secret(_) => "client_secret_basic",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
            Self::ClientSecretJwt(_) => "client_secret_jwt",
        }
    }
}

impl From<&ClientConfig> for ClientAuth {
    /// One of `secret_hash`, `jwks`, `jwks_uri`, `jwt_secret` (config checks that at
    /// most one is set), or none: a public client.
    fn from(c: &ClientConfig) -> Self {
        if !c.secret_hash.is_empty() {
            Self::Secret(SecretCheck::Argon2(c.secret_hash.clone()))
        } else if let Some(jwks) = &c.jwks {
            Self::PrivateKeyJwt(ClientKeys::Set(crate::jose::jwk_set(jwks)))
        } else if !c.jwks_uri.is_empty() {
            Self::PrivateKeyJwt(ClientKeys::Uri(c.jwks_uri.clone()))
        } else if !c.jwt_secret.is_empty() {
            Self::ClientSecretJwt(MacSecret(c.jwt_secret.as_bytes().to_vec()))
        } else {
            Self::None
        }
    }
}

impl From<&ClientConfig> for Client {
    fn from(c: &ClientConfig) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            auth: ClientAuth::from(c),
            dynamic: false,
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            grant_types: c.grant_types.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        }
    }
}

impl Client {
    /// A dynamically registered client; `jwt_secret`: its derived `client_secret_jwt`
    /// secret (see `AuthServer::derived_jwt_secret`).
    pub(super) fn registered(c: &RegisteredClient, jwt_secret: impl FnOnce() -> String) -> Self {
        let auth = match c.token_endpoint_auth_method.as_str() {
            "private_key_jwt" => match (&c.jwks, &c.jwks_uri) {
                (Some(jwks), _) => ClientAuth::PrivateKeyJwt(ClientKeys::Set(crate::jose::jwk_set(jwks))),
                (None, Some(uri)) => ClientAuth::PrivateKeyJwt(ClientKeys::Uri(uri.clone())),
                (None, None) => ClientAuth::PrivateKeyJwt(ClientKeys::Set(Vec::new())),
            },
            "client_secret_jwt" => ClientAuth::ClientSecretJwt(MacSecret(jwt_secret().into_bytes())),
            _ => match &c.secret_hash {
                Some(hash) => ClientAuth::Secret(SecretCheck::Sha256(hash.clone())),
                None => ClientAuth::None,
            },
        };
        Self {
            client_id: c.client_id.clone(),
            name: c.client_name.clone(),
            auth,
            dynamic: true,
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            grant_types: c.grant_types.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            require_pushed_authorization_requests: c.require_pushed_authorization_requests,
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
    /// `client_assertion` with the JWT bearer type (RFC 7523 §2.2): `private_key_jwt` or
    /// `client_secret_jwt`; `client_id` is the assertion's `sub` (or the form's, which
    /// must agree).
    Assertion { client_id: String, assertion: String },
    /// `client_id` only: a public client.
    None { client_id: String },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { client_id, .. } => write!(f, "Basic({client_id}, [elided])"),
            Self::Post { client_id, .. } => write!(f, "Post({client_id}, [elided])"),
            Self::Assertion { client_id, .. } => write!(f, "Assertion({client_id}, [elided])"),
            Self::None { client_id } => write!(f, "None({client_id})"),
        }
    }
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth == ClientAuth::None
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }

    /// Matches a redirect URI exactly (RFC 9700 §2.1), except the port of a loopback
    /// `http` URI (RFC 8252 §7.3).
    pub fn matches_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri || loopback_equal(r, uri))
    }

    /// Authenticates the client behind `creds` by a secret (compared in constant time)
    /// or, for a public client, by its id alone; assertions are
    /// `AuthServer::check_client_assertion`'s. A client uses the method it registered.
    pub async fn authenticate(&self, creds: &ClientCredentials) -> Result<(), OAuthError> {
        let fail = || OAuthError::InvalidClient("client authentication failed".into());
        match (creds, &self.auth) {
            (
                ClientCredentials::Basic { secret, .. } | ClientCredentials::Post { secret, .. },
                ClientAuth::Secret(check),
            ) => {
                if check.verify(secret).await {
                    Ok(())
                } else {
                    Err(fail())
                }
            }
            (ClientCredentials::None { .. }, ClientAuth::None) => Ok(()),
            (_, ClientAuth::None) => Err(OAuthError::InvalidClient("a public client has no secret".into())),
            (_, auth) => {
                Err(OAuthError::InvalidClient(format!("this client must authenticate with {}", auth.method())))
            }
        }
    }
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::Assertion { client_id, .. }
            | Self::None { client_id } => client_id,
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
            auth: ClientAuth::None,
            dynamic: false,
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            scopes: vec![],
            grant_types: vec![],
            post_logout_redirect_uris: vec![],
            require_pushed_authorization_requests: false,
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
