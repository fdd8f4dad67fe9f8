//! `[[oauth.clients]]` and `[[oauth.users]]`.

use serde::Deserialize;

/// `[[oauth.clients]]`: a client registered in configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// Shown on the login page.
    pub name: String,
    /// argon2 hash of the client secret (`idca hash-password`); empty for a public client.
    #[serde(default)]
    pub secret_hash: String,
    /// Exact redirect URIs (for `http://127.0.0.1` / `http://[::1]` any port matches,
    /// RFC 8252 §7.3).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Scopes the client may ask for.
    pub scopes: Vec<String>,
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    pub grant_types: Vec<String>,
    /// Where RP-initiated logout may send the browser back (exact match, OpenID Connect
    /// RP-Initiated Logout 1.0 §3.1).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): the client's public keys as a
    /// JWK Set (`{ keys = [ { kty = "EC", ... } ] }`).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// `private_key_jwt` with keys fetched from this URL (cached five minutes, fetched
    /// again when an assertion names a `kid` not held).
    #[serde(default)]
    pub jwks_uri: String,
    /// `client_secret_jwt`: the shared secret the client MACs its assertions with
    /// (HS256/384/512; at least 32 bytes). It is kept in this file as it is, since the
    /// server must hold it to check a MAC.
    #[serde(default)]
    pub jwt_secret: String,
    /// Authorization requests must come through the PAR endpoint (RFC 9126 §6).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

/// `[[oauth.users]]`: a user who can log in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    /// argon2 hash of the password (`idca hash-password`).
    pub password_hash: String,
    /// Display name (also Wire's `name`).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    /// Wire identity: the user's handle (without `@`), team and domain. A device's client
    /// id is `wireapp://{user id}!{device id}@{domain}`.
    #[serde(default)]
    pub handle: String,
    #[serde(default)]
    pub team: String,
    #[serde(default)]
    pub domain: String,
}
