//! The OAuth 2.0 / OpenID Connect authorization server.
//!
//! This module decides; it does not speak HTTP. `http::oauth` turns requests into the
//! typed inputs here and renders the outcomes: redirects, pages, JSON. Grants, codes,
//! refresh tokens and sessions go through the [`Store`]; secrets are stored hashed.

mod account;
mod authorize;
mod claims;
mod client_auth;
mod clients;
mod device_grant;
mod discovery;
mod error;
mod login;
mod logout;
mod par;
mod pkce;
mod registration;
mod resource;
mod token;
mod tokens;
mod wire;
mod wire_clients;

pub use account::{AccountForm, AccountOutcome, AccountPage, GrantView, SessionView};
pub use client_auth::ASSERTION_TYPE;
pub use clients::{Client, ClientAuth, ClientCredentials};
pub use device_grant::{DEVICE_GRANT, DeviceForm, DeviceOutcome, DeviceResponse};
pub use error::OAuthError;
pub use login::{User, hash_password, verify_password};
pub use logout::{LogoutOutcome, LogoutParams};
pub use par::{PushedForm, PushedResponse};
pub use registration::{ClientMetadata, RegistrationResponse};
pub use tokens::{AT_JWT, AccessTokenClaims, IdTokenClaims, KeyRing, Keys};
pub use wire::*;
pub use wire_clients::{DeviceInfo, DeviceTokenResponse, wire_user_id};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::config::{Config, DevicesConfig, DpopConfig, OAuthConfig};
use crate::dpop::{DpopError, DpopNonces, DpopVerifier, Expected};
use crate::jose::JsonDepth;
use crate::model::oauth::{
    AuthorizationCode, CodeRedemption, Grant, OAuthKey, PendingAuthorization, RefreshToken, SecretHash, Session,
};
use crate::model::random_token;
use crate::store::{Attempt, Store, StoreError};

/// The authorization server.
pub struct AuthServer {
    store: Arc<dyn Store>,
    config: OAuthConfig,
    issuer: String,
    audience: String,
    clients: Vec<Client>,
    users: Vec<User>,
    keys: KeyRing,
    limiter: login::AttemptLimiter,
    device_limiter: login::AttemptLimiter,
    client_auth_limiter: login::AttemptLimiter,
    dpop: DpopVerifier,
    dpop_config: DpopConfig,
    devices: DevicesConfig,
    json_depth: JsonDepth,
    /// Keys fetched from clients' `jwks_uri`s.
    jwks_cache: client_auth::JwksCache,
    /// Derives dynamic clients' `client_secret_jwt` secrets (shared by all instances).
    jwt_secret_key: Vec<u8>,
    rates: Rates,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer").field("issuer", &self.issuer).finish()
    }
}

/// Percent-encodes everything but RFC 3986 §2.3 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Appends `params` to `base` as query parameters (percent-encoded, RFC 3986 §2.1).
fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let enc = percent_encode;
    let mut url = base.to_owned();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(&enc(k));
        url.push('=');
        url.push_str(&enc(v));
        sep = '&';
    }
    url
}

pub(crate) fn scopes(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    v.sort();
    v.dedup();
    v
}

/// What the authorization server is configured with: `[oauth]`, `[dpop]`, `[devices]`
/// and the `[limits]` it applies.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub oauth: OAuthConfig,
    pub dpop: DpopConfig,
    pub devices: DevicesConfig,
    /// Failed logins from one address, over all users, before a lockout
    /// (`limits.login_max_failures_per_address`).
    pub login_max_failures_per_address: u32,
    /// Failed client authentications per client and address, and per address
    /// (`limits.token_max_failures`, `token_max_failures_per_address`), and the lockout
    /// they lead to (`limits.token_lockout_secs`).
    pub token_max_failures: u32,
    pub token_max_failures_per_address: u32,
    pub token_lockout_secs: u64,
    /// What may be asked for how often (`limits.*_per_minute_*`).
    pub rates: Rates,
    /// How deeply presented tokens' and proofs' JSON may nest (`limits.json_max_depth`).
    pub json_depth: JsonDepth,
}

impl From<&Config> for OAuthSettings {
    fn from(config: &Config) -> Self {
        let l = &config.limits;
        Self {
            oauth: config.oauth.clone(),
            dpop: config.dpop.clone(),
            devices: config.devices.clone(),
            login_max_failures_per_address: l.login_max_failures_per_address,
            token_max_failures: l.token_max_failures,
            token_max_failures_per_address: l.token_max_failures_per_address,
            token_lockout_secs: l.token_lockout_secs,
            rates: Rates {
                registrations_per_address: l.registrations_per_minute_per_address,
                device_authorizations_per_address: l.device_authorizations_per_minute_per_address,
                device_authorizations_per_client: l.device_authorizations_per_minute_per_client,
                login_pages_per_address: l.login_pages_per_minute_per_address,
                device_registrations_per_user: l.device_registrations_per_minute_per_user,
                backend_nonces_per_user: l.backend_nonces_per_minute_per_user,
            },
            json_depth: JsonDepth::new(l.json_max_depth),
        }
    }
}

impl AuthServer {
    /// Builds the server, creating the first signing key on first start (durably).
    /// `public_url`: the issuer (unless `oauth.issuer` names another) and the audience
    /// of access tokens.
    pub async fn new(
        store: Arc<dyn Store>,
        settings: OAuthSettings,
        public_url: &str,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        let OAuthSettings { oauth: config, dpop, devices, json_depth, .. } = settings.clone();
        let mut secret = [0u8; 32];
        crate::model::fill_random(&mut secret);
        let secret = store.shared_secret(crate::store::DPOP_NONCE_SECRET, &secret).await?;
        let verifier = DpopVerifier::new(
            store.clone(),
            DpopNonces::new(&secret),
            Duration::from_secs(dpop.max_age_secs),
            json_depth,
        );
        let mut fresh = [0u8; 32];
        crate::model::fill_random(&mut fresh);
        let jwt_secret_key = store.shared_secret(CLIENT_JWT_SECRET, &fresh).await?;
        let mut stored = store.oauth_keys().await?;
        if !stored.iter().any(|k| k.retired.is_none()) {
            let pkcs8 = crate::jose::SigningKey::generate_pkcs8()?;
            let kid = crate::jose::SigningKey::from_pkcs8(&pkcs8)?.kid().to_owned();
            store.rotate_oauth_key(&OAuthKey { kid, pkcs8, created: now, retired: None }).await?;
            stored = store.oauth_keys().await?;
        }
        let keys = KeyRing::new(Keys::load(&stored, json_depth)?);
        let issuer = if config.issuer.is_empty() { public_url.to_owned() } else { config.issuer.clone() };
        Ok(Self {
            clients: config.clients.iter().map(Client::from).collect(),
            users: config.users.iter().map(User::from).collect(),
            limiter: login::AttemptLimiter::new(
                "login",
                config.login_max_failures,
                Some(settings.login_max_failures_per_address),
                config.login_lockout_secs,
            ),
            device_limiter: login::AttemptLimiter::new(
                "user-code",
                config.device_max_user_code_failures,
                None,
                config.device_code_lifetime_secs,
            ),
            client_auth_limiter: login::AttemptLimiter::new(
                "client",
                settings.token_max_failures,
                Some(settings.token_max_failures_per_address),
                settings.token_lockout_secs,
            ),
            audience: public_url.to_owned(),
            issuer,
            keys,
            store,
            config,
            dpop: verifier,
            dpop_config: dpop,
            devices,
            json_depth,
            jwks_cache: client_auth::JwksCache::default(),
            jwt_secret_key,
            rates: settings.rates,
        })
    }

    /// How long a login page may be filled in (its cookie lives as long).
    pub fn login_page_lifetime_secs(&self) -> u64 {
        self.config.login_page_lifetime_secs
    }

    /// The `DPoP-Nonce` to send now.
    pub fn dpop_nonce(&self, now: UnixTime) -> String {
        self.dpop.nonce(now)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A client: static ones from config first, then dynamically registered ones.
    async fn client(&self, id: &str) -> Result<Option<Client>, OAuthError> {
        if let Some(c) = self.clients.iter().find(|c| c.client_id == id) {
            return Ok(Some(c.clone()));
        }
        match self.store.registered_client(id).await {
            Ok(c) => Ok(Some(Client::registered(&c.value, || self.derived_jwt_secret(id)))),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The client named by `creds`, authenticated.
    /// Client authentication (RFC 6749 §2.3), refused for a while after too many
    /// failures from this client id and address, or from this address.
    async fn authenticated_client(
        &self,
        creds: &ClientCredentials,
        from: IpAddr,
        now: UnixTime,
    ) -> Result<Client, OAuthError> {
        let id = creds.client_id();
        if let Err(wait) = self.client_auth_limiter.begin(self.store.as_ref(), id, from, now).await? {
            return Err(OAuthError::TooManyAttempts {
                detail: format!("too many failed client authentications; try again in {wait} s"),
                retry_after: wait,
            });
        }
        let result = match self.client(id).await {
            Ok(Some(client)) => match creds {
                ClientCredentials::Assertion { assertion, .. } => {
                    self.check_client_assertion(&client, assertion, now).await.map(|()| client)
                }
                _ => client.authenticate(creds).await.map(|()| client),
            },
            Ok(None) => Err(OAuthError::InvalidClient("unknown client".into())),
            Err(e) => Err(e),
        };
        let how = match &result {
            Ok(_) => Attempt::Succeeded,
            Err(OAuthError::InvalidClient(_)) => Attempt::Failed,
            Err(_) => Attempt::Abandoned,
        };
        self.client_auth_limiter.end(self.store.as_ref(), id, from, now, how).await;
        result
    }
}

/// The store's name for the key dynamic clients' `client_secret_jwt` secrets derive from.
const CLIENT_JWT_SECRET: &str = "client-jwt-secret";

impl AuthServer {
    /// One of `rate`'s per-minute allowance for `who` (an address group, a client id or a
    /// user), counted through the store so that every instance shares it; past it 429
    /// `temporarily_unavailable` with the seconds to wait.
    async fn take_rate(&self, rate: Rate, who: &str) -> Result<(), OAuthError> {
        let (per_minute, prefix, what, option) = rate.spec(&self.rates);
        if per_minute == 0 {
            return Ok(());
        }
        match self.store.take_rate(&format!("{prefix}:{who}"), per_minute, crate::clock::wall_ms()).await? {
            Ok(()) => Ok(()),
            Err(wait) => {
                let retry_after = i64::try_from(wait).unwrap_or(i64::MAX).max(1);
                Err(OAuthError::TooManyAttempts {
                    detail: format!("at most {per_minute} {what} per minute ({option}); try again in {retry_after} s"),
                    retry_after,
                })
            }
        }
    }
}

/// The per-minute allowances of `[limits]` the authorization server applies; 0: none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub registrations_per_address: u32,
    pub device_authorizations_per_address: u32,
    pub device_authorizations_per_client: u32,
    pub login_pages_per_address: u32,
    pub device_registrations_per_user: u32,
    pub backend_nonces_per_user: u32,
}

/// What a [`Rates`] allowance counts.
#[derive(Debug, Clone, Copy)]
enum Rate {
    /// RFC 7591 registrations, by address group.
    Registration,
    /// RFC 8628 §3.1 requests, by address group and by client.
    DeviceAuthorizationFrom,
    DeviceAuthorizationBy,
    /// Login (or consent) pages shown, each a stored request, by address group.
    LoginPage,
    /// `POST /clients`, by user.
    DeviceRegistration,
    /// `/clients/{cid}/nonce`, by user.
    BackendNonce,
}

impl Rate {
    /// The allowance, the store key's prefix, what is counted and the option to raise.
    fn spec(self, r: &Rates) -> (u32, &'static str, &'static str, &'static str) {
        match self {
            Self::Registration => (
                r.registrations_per_address,
                "register",
                "client registrations from one address",
                "limits.registrations_per_minute_per_address",
            ),
            Self::DeviceAuthorizationFrom => (
                r.device_authorizations_per_address,
                "device",
                "device authorization requests from one address",
                "limits.device_authorizations_per_minute_per_address",
            ),
            Self::DeviceAuthorizationBy => (
                r.device_authorizations_per_client,
                "device-client",
                "device authorization requests per client",
                "limits.device_authorizations_per_minute_per_client",
            ),
            Self::LoginPage => (
                r.login_pages_per_address,
                "login-page",
                "login pages from one address",
                "limits.login_pages_per_minute_per_address",
            ),
            Self::DeviceRegistration => (
                r.device_registrations_per_user,
                "device-registration",
                "device registrations per user",
                "limits.device_registrations_per_minute_per_user",
            ),
            Self::BackendNonce => (
                r.backend_nonces_per_user,
                "backend-nonce",
                "backend nonces per user",
                "limits.backend_nonces_per_minute_per_user",
            ),
        }
    }
}

/// The OAuth endpoints' paths.
pub mod paths {
    pub const AUTHORIZE: &str = "/oauth/authorize";
    pub const LOGIN: &str = "/oauth/login";
    pub const CONSENT: &str = "/oauth/consent";
    pub const TOKEN: &str = "/oauth/token";
    pub const JWKS: &str = "/oauth/jwks";
    pub const USERINFO: &str = "/oauth/userinfo";
    pub const INTROSPECT: &str = "/oauth/introspect";
    pub const REVOKE: &str = "/oauth/revoke";
    pub const DEVICE: &str = "/oauth/device";
    pub const REGISTER: &str = "/oauth/register";
    pub const DEVICE_VERIFY: &str = "/oauth/device/verify";
    pub const DEVICE_DONE: &str = "/oauth/device/done";
    pub const LOGOUT: &str = "/oauth/logout";
    pub const PAR: &str = "/oauth/par";
    pub const ACCOUNT: &str = "/oauth/account";
    pub const ACCOUNT_REVOKE: &str = "/oauth/account/revoke";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_parse_to_what_they_name() {
        for name in GRANT_TYPES {
            assert_eq!(GrantType::parse(name).map(GrantType::as_str), Some(name));
        }
        for bad in ["", "password", "implicit", "AUTHORIZATION_CODE", "authorization_code "] {
            assert_eq!(GrantType::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_building_encodes() {
        assert_eq!(
            with_query("https://a/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a/cb?code=x%20y&state=s%26t"
        );
        assert_eq!(with_query("https://a/cb?k=v", &[("code", "c")]), "https://a/cb?k=v&code=c");
    }
}
