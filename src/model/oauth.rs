//! OAuth 2.0 / OpenID Connect records as idca keeps them. Secrets (codes, refresh
//! tokens, client secrets) are stored only as SHA-256 hashes.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// SHA-256 of a secret, base64url: the key under which a code or token is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHash(pub String);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(crate::jose::b64_encode(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())))
    }
}

/// A grant: what one authorization (a code, a device approval, client credentials)
/// produced. Its refresh tokens form one family; revoking the grant revokes them all and
/// the access tokens that name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub client_id: String,
    /// The user, or the client itself for client credentials.
    pub sub: String,
    pub scope: Vec<String>,
    pub auth_time: Option<UnixTime>,
    pub created: UnixTime,
    pub revoked: bool,
}

/// An authorization code (RFC 6749 §4.1.2), stored under its hash, bound to the client,
/// the redirect URI, the PKCE challenge and the OIDC nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationCode {
    pub client_id: String,
    pub redirect_uri: String,
    /// The authorization request named `redirect_uri` (rather than taking the client's
    /// only one): the token request must then repeat it (RFC 6749 §4.1.3).
    #[serde(default)]
    pub redirect_uri_sent: bool,
    /// S256 challenge (RFC 7636 §4.2); `None` only for confidential clients when PKCE is
    /// not required.
    pub code_challenge: Option<String>,
    pub scope: Vec<String>,
    pub nonce: Option<String>,
    /// Claims with values requested for the id_token (OIDC Core §5.5).
    #[serde(default)]
    pub id_token_claims: std::collections::BTreeMap<String, serde_json::Value>,
    /// `dpop_jkt` of the authorization request (RFC 9449 §10): the key the token request
    /// must prove.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    pub sub: String,
    pub auth_time: UnixTime,
    pub expires: UnixTime,
    /// Set when redeemed: the grant it produced (a second redemption revokes it).
    pub redeemed: Option<String>,
}

/// A refresh token (RFC 6749 §6), stored under its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub grant: String,
    pub client_id: String,
    /// Unused tokens expire after this much inactivity.
    pub expires: UnixTime,
    /// Set once rotated: presenting it again is reuse, and revokes the grant.
    pub used: bool,
    /// The DPoP key a public client's refresh token is bound to (RFC 9449 §5).
    #[serde(default)]
    pub jkt: Option<String>,
}

/// A pending authorization request, kept while the user logs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// Claims with values requested for the id_token (OIDC Core §5.5).
    #[serde(default)]
    pub id_token_claims: std::collections::BTreeMap<String, serde_json::Value>,
    /// `dpop_jkt` (RFC 9449 §10).
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    /// The CSRF token the login form must echo.
    pub csrf: String,
    /// The request named `redirect_uri` (see `AuthorizationCode`).
    #[serde(default)]
    pub redirect_uri_sent: bool,
    /// The user must consent on a page first (a dynamically registered client, or
    /// `prompt=consent`, OIDC Core §3.1.2.1).
    #[serde(default)]
    pub consent: bool,
    /// `prompt=consent`: asked even when an earlier approval covers the request.
    #[serde(default)]
    pub consent_prompted: bool,
    /// `response_mode=form_post`: the response is POSTed to the client.
    #[serde(default)]
    pub form_post: bool,
    pub expires: UnixTime,
}

/// A browser session after login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub sub: String,
    pub auth_time: UnixTime,
    pub expires: UnixTime,
}

/// An access-token and id_token signing key (PKCS#8, ES256). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthKey {
    pub kid: String,
    #[serde(with = "super::pki::b64")]
    pub pkcs8: Vec<u8>,
    pub created: UnixTime,
    /// When it stopped signing; retired keys stay in the JWKS to verify older tokens.
    pub retired: Option<UnixTime>,
}

impl std::fmt::Debug for OAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthKey").field("kid", &self.kid).field("retired", &self.retired).finish()
    }
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq)]
pub enum CodeRedemption {
    /// First use: the code, now marked with the grant it produced.
    Redeemed(Box<AuthorizationCode>),
    /// The code was used before: its grant has been revoked (RFC 6749 §4.1.2).
    Replayed { grant: String },
}

/// What a protected resource's `WWW-Authenticate` asks for (RFC 6750 §3, RFC 9449
/// §7.1); the HTTP layer writes the header text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceChallenge {
    /// No credentials were sent: either scheme will do.
    Any,
    /// A `Bearer` request failed with this `error` code.
    Bearer { error: &'static str },
    /// A `DPoP` request failed with this `error` code.
    Dpop { error: &'static str },
    /// A token with this scope is required.
    Scope(&'static str),
}

/// Whom a verified access token speaks for, as a resource (the ACME API) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub sub: String,
    pub client_id: String,
    pub scope: Vec<String>,
}

impl Subject {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

/// A device authorization (RFC 8628), stored under the hash of its `device_code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorization {
    pub client_id: String,
    pub scope: Vec<String>,
    /// The normalised user code: 8 characters of [`USER_CODE_ALPHABET`].
    pub user_code: String,
    pub status: DeviceStatus,
    pub expires: UnixTime,
    /// Seconds the client must wait between polls; raised by 5 on each `slow_down`.
    pub interval: i64,
    pub last_poll: Option<UnixTime>,
    /// The CSRF token of the confirmation page.
    pub csrf: String,
    /// Claims with values requested for the id_token (OIDC Core §5.5 `claims`, on the
    /// device authorization request as on an authorization request).
    #[serde(default)]
    pub id_token_claims: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Where a device authorization stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum DeviceStatus {
    Pending,
    Approved {
        sub: String,
        auth_time: UnixTime,
    },
    Denied,
    /// Exchanged for tokens (once).
    Redeemed,
}

/// RFC 8628 §6.1: base-20, no vowels (no words), no digits.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Normalises what a user typed: case, dashes and spaces ignored (RFC 8628 §6.1).
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String = input.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == 8 && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(code)
}

/// A fresh user code, normalised (8 characters, about 34.5 bits).
pub fn new_user_code() -> String {
    let mut bytes = [0u8; 8];
    crate::model::fill_random(&mut bytes);
    // 256 is not a multiple of 20: reject the top values to stay uniform.
    let mut out = String::with_capacity(8);
    let mut i = 0;
    while out.len() < 8 {
        let b = match bytes.get(i) {
            Some(b) => *b,
            None => {
                crate::model::fill_random(&mut bytes);
                i = 0;
                continue;
            }
        };
        i += 1;
        if b < 240 {
            out.push(USER_CODE_ALPHABET[(b % 20) as usize] as char);
        }
    }
    out
}

/// `XXXX-XXXX`, for display.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_base20_and_normalise() {
        for _ in 0..200 {
            let c = new_user_code();
            assert_eq!(normalize_user_code(&c), Some(c.clone()));
            assert_eq!(normalize_user_code(&display_user_code(&c).to_lowercase()), Some(c));
        }
        assert_eq!(normalize_user_code("wdjb-mjht"), Some("WDJBMJHT".into()));
        assert_eq!(normalize_user_code("WDJB MJHT"), Some("WDJBMJHT".into()));
        assert_eq!(normalize_user_code("WDJB-MJHA"), None, "A is not in the alphabet");
        assert_eq!(normalize_user_code("WDJB-MJH"), None);
    }
}

/// A pushed authorization request (RFC 9126 §2): its parameters, kept under the hash
/// of its `request_uri` until used once or expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedAuthorization {
    /// The client that pushed it (and the only one that may use it, §4).
    pub client_id: String,
    /// The authorization request's parameters, as pushed.
    pub params: std::collections::BTreeMap<String, String>,
    pub expires: UnixTime,
}

/// A client registered through RFC 7591 (stored; static clients live in config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_name: String,
    /// SHA-256 of the server-generated secret (high entropy, so no slow hash needed);
    /// `None` for a public client (`token_endpoint_auth_method: none`).
    pub secret_hash: Option<SecretHash>,
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// SHA-256 of the registration access token (RFC 7592 §3).
    pub registration_token_hash: SecretHash,
    pub created: UnixTime,
    /// RP-initiated logout's return addresses (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `private_key_jwt`: the client's keys inline (a JWK Set) or where to fetch them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Authorization requests only through PAR (RFC 9126 §6).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

/// A user's device (a Wire "client"), registered with `POST /clients`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Lower-case hex of a random u64, no padding (Wire's device id).
    pub id: String,
    /// The owner's user name.
    pub user: String,
    /// `wireapp://{user id}!{device id}@{domain}`.
    pub client_id: String,
    pub label: String,
    pub created: UnixTime,
}
