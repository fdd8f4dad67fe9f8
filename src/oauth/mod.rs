//! The OAuth 2.0 / OpenID Connect authorization server.
//!
//! This module decides; it does not speak HTTP. `http::oauth` turns requests into the
//! typed inputs here and renders the outcomes: redirects, pages, JSON. Grants, codes,
//! refresh tokens and sessions go through the [`Store`]; secrets are stored hashed.

mod claims;
mod clients;
mod device_grant;
mod error;
mod login;
mod pkce;
mod registration;
mod tokens;
mod wire_clients;

pub use clients::{Client, ClientCredentials};
pub use device_grant::{DEVICE_GRANT, DeviceForm, DeviceOutcome, DeviceResponse};
pub use error::OAuthError;
pub use login::{LoginLimiter, User, hash_password, verify_password};
pub use registration::{ClientMetadata, RegistrationResponse};
pub use tokens::{AT_JWT, AccessTokenClaims, IdTokenClaims, Keys};
pub use wire_clients::{DeviceInfo, DeviceTokenResponse, wire_user_id};

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::config::{DpopConfig, OAuthConfig};
use crate::dpop::{DpopError, DpopNonces, DpopVerifier, Expected};
use crate::model::oauth::{
    AuthorizationCode, CodeRedemption, Grant, OAuthKey, PendingAuthorization, RefreshToken, SecretHash, Session,
};
use crate::model::random_token;
use crate::store::{Store, StoreError};

/// Scopes idca understands.
pub const SCOPES: [&str; 5] = ["openid", "profile", "email", "offline_access", "acme"];
/// Grant types idca implements.
pub const GRANT_TYPES: [&str; 4] =
    ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"];

/// Query parameters of the authorization endpoint (RFC 6749 §4.1.1, RFC 7636 §4.3,
/// OIDC Core §3.1.2.1).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    /// OIDC Core §3.1.2.1: space-separated `none`, `login`, `consent`, `select_account`.
    pub prompt: Option<String>,
    /// OIDC Core §3.1.2.1: the most seconds since the user last logged in.
    pub max_age: Option<String>,
    /// OIDC Core §5.5, a JSON object.
    pub claims: Option<String>,
    /// RFC 9449 §10: the thumbprint of the key the token request will prove.
    pub dpop_jkt: Option<String>,
}

/// The login form (fields of the page `http::oauth` renders).
#[derive(Clone, Deserialize)]
pub struct LoginForm {
    pub request: String,
    pub csrf: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm").field("username", &self.username).field("password", &"[elided]").finish()
    }
}

/// The token request form (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Default, Clone, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    /// The token to introspect or revoke (RFC 7662, RFC 7009).
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub device_code: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// The OIDC `claims` parameter of a device authorization request.
    pub claims: Option<String>,
}

impl std::fmt::Debug for TokenForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenForm").field("grant_type", &self.grant_type).field("client_id", &self.client_id).finish()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse([elided])")
    }
}

/// The login page to show.
#[derive(Debug, Clone)]
pub struct LoginPage {
    pub request: String,
    pub csrf: String,
    pub client_name: String,
    pub scope: Vec<String>,
    pub username: String,
    pub error: Option<String>,
    /// Set while the user/address is locked out: the page answers 429 with
    /// `Retry-After` (RFC 6585 §4).
    pub retry_after: Option<i64>,
}

/// The consent page to show (dynamically registered clients).
#[derive(Debug, Clone)]
pub struct ConsentPage {
    pub request: String,
    pub csrf: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    /// Dynamically registered, not configured by the administrator.
    pub third_party: bool,
}

fn consent_page(request: String, p: &PendingAuthorization, client: &Client) -> ConsentPage {
    ConsentPage {
        request,
        csrf: p.csrf.clone(),
        client_name: client.name.clone(),
        redirect_uri: p.redirect_uri.clone(),
        scope: p.scope.clone(),
        third_party: client.dynamic,
    }
}

/// The `prompt` parameter (OIDC Core §3.1.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Prompt {
    /// Show no page: answer at once, or with an error.
    none: bool,
    /// Log in again even with a live session (`login`, and `select_account`, which with
    /// one account per browser session means the same).
    login: bool,
    /// Ask for consent even where it is not otherwise asked.
    consent: bool,
}

impl Prompt {
    fn parse(s: Option<&str>) -> Result<Self, OAuthError> {
        let mut p = Self::default();
        for v in s.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" | "select_account" => p.login = true,
                "consent" => p.consent = true,
                _ => return Err(OAuthError::InvalidRequest("prompt holds an unsupported value".into())),
            }
        }
        if p.none && (p.login || p.consent) {
            return Err(OAuthError::InvalidRequest("prompt=none cannot be combined with other values".into()));
        }
        Ok(p)
    }
}

/// The consent form.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsentForm {
    pub request: String,
    pub csrf: String,
    /// `allow` or `deny`.
    pub action: String,
}

/// What the authorization endpoint (or the login form) leads to.
#[derive(Debug, Clone)]
pub enum AuthorizeOutcome {
    /// An error that must not be redirected (unknown client, bad redirect URI, RFC 6749
    /// §4.1.2.1): shown to the user.
    ErrorPage { status: u16, message: String },
    /// Back to the client, with a code or an error; optionally a new session cookie.
    Redirect { url: String, session: Option<(String, i64)> },
    /// The user must log in.
    Login(LoginPage),
    /// The user must consent (third-party client); maybe with a new session cookie.
    Consent { page: ConsentPage, session: Option<(String, i64)> },
}

/// The authorization server.
pub struct AuthServer {
    store: Arc<dyn Store>,
    config: OAuthConfig,
    issuer: String,
    audience: String,
    clients: Vec<Client>,
    users: Vec<User>,
    keys: Keys,
    limiter: login::AttemptLimiter,
    device_limiter: LoginLimiter,
    client_auth_limiter: login::AttemptLimiter,
    dpop: DpopVerifier,
    dpop_config: DpopConfig,
    devices: crate::config::DevicesConfig,
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

fn client_auth_limiter(limits: &crate::config::LimitsConfig) -> login::AttemptLimiter {
    login::AttemptLimiter::new(
        limits.token_max_failures,
        limits.token_max_failures_per_address,
        limits.token_lockout_secs,
    )
}

impl AuthServer {
    /// Builds the server, creating the first signing key on first start (durably).
    pub async fn new(
        store: Arc<dyn Store>,
        config: OAuthConfig,
        dpop: DpopConfig,
        devices: crate::config::DevicesConfig,
        public_url: &str,
        now: UnixTime,
    ) -> Result<Self, OAuthError> {
        let mut secret = [0u8; 32];
        crate::model::fill_random(&mut secret);
        let secret = store.dpop_nonce_secret(&secret).await?;
        let verifier = DpopVerifier::new(store.clone(), DpopNonces::new(&secret), dpop.max_age_secs);
        let mut stored = store.oauth_keys().await?;
        if !stored.iter().any(|k| k.retired.is_none()) {
            let pkcs8 = crate::jose::SigningKey::generate_pkcs8()?;
            let kid = crate::jose::SigningKey::from_pkcs8(&pkcs8)?.kid().to_owned();
            store.rotate_oauth_key(&OAuthKey { kid, pkcs8, created: now, retired: None }).await?;
            stored = store.oauth_keys().await?;
        }
        let keys = Keys::load(&stored)?;
        let issuer = if config.issuer.is_empty() { public_url.to_owned() } else { config.issuer.clone() };
        Ok(Self {
            clients: config.clients.iter().map(Client::from).collect(),
            users: config.users.iter().map(User::from).collect(),
            limiter: login::AttemptLimiter::new(
                config.login_max_failures,
                crate::config::LimitsConfig::default().login_max_failures_per_address,
                config.login_lockout_secs,
            ),
            device_limiter: LoginLimiter::new(config.device_max_user_code_failures, config.device_code_lifetime_secs),
            client_auth_limiter: client_auth_limiter(&crate::config::LimitsConfig::default()),
            audience: public_url.to_owned(),
            issuer,
            keys,
            store,
            config,
            dpop: verifier,
            dpop_config: dpop,
            devices,
        })
    }

    /// How long a login page may be filled in (its cookie lives as long).
    pub fn login_page_lifetime_secs(&self) -> u64 {
        self.config.login_page_lifetime_secs
    }

    /// The limits on failed client authentications (`[limits]`).
    pub fn with_limits(mut self, limits: &crate::config::LimitsConfig) -> Self {
        self.client_auth_limiter = client_auth_limiter(limits);
        self.limiter = login::AttemptLimiter::new(
            self.config.login_max_failures,
            limits.login_max_failures_per_address,
            self.config.login_lockout_secs,
        );
        self
    }

    /// The `DPoP-Nonce` to send now.
    pub fn dpop_nonce(&self, now: UnixTime) -> String {
        self.dpop.nonce(now)
    }

    /// Checks a DPoP proof at the token endpoint (RFC 9449 §5): errors are
    /// `invalid_dpop_proof`, or `use_dpop_nonce` with the nonce to use.
    async fn token_proof(&self, proofs: &[&str], now: UnixTime) -> Result<Option<String>, OAuthError> {
        let proof = match proofs {
            [] => return Ok(None),
            [one] => *one,
            // §4.3 step 1: exactly one DPoP header.
            _ => return Err(OAuthError::InvalidDpopProof("send exactly one DPoP header".into())),
        };
        let htu = format!("{}{}", self.audience, paths::TOKEN);
        let expected = Expected { htm: "POST", htu: &htu, access_token: None };
        match self.dpop.verify(proof, &expected, self.dpop_config.require_nonce, now).await {
            Ok(p) => Ok(Some(p.jkt.0)),
            Err(DpopError::UseNonce(detail)) => Err(OAuthError::UseDpopNonce { detail, nonce: self.dpop.nonce(now) }),
            Err(DpopError::InvalidProof(m)) => Err(OAuthError::InvalidDpopProof(m)),
            Err(DpopError::Store(e)) => Err(e.into()),
        }
    }

    /// A request to one of idca's protected resources (RFC 6750, RFC 9449 §7): the
    /// `Authorization` header (`Bearer` or `DPoP`), the `DPoP` header values, the method
    /// and the URL. A DPoP-bound token sent as `Bearer` is refused (§7.2); a `DPoP`
    /// token needs a proof with `ath`, by the key in its `cnf.jkt`.
    pub async fn verify_resource_request(
        &self,
        authorization: Option<&str>,
        proofs: &[&str],
        htm: &str,
        htu: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, OAuthError> {
        let algs = crate::dpop::ALGS.join(" ");
        let challenge = |scheme: &str, code: &str| {
            if scheme == "DPoP" {
                format!("DPoP realm=\"idca\", error=\"{code}\", algs=\"{algs}\"")
            } else {
                format!("Bearer realm=\"idca\", error=\"{code}\"")
            }
        };
        let fail = |scheme: &str, code: &'static str, detail: String, nonce: Option<String>| OAuthError::Resource {
            code,
            challenge: challenge(scheme, code),
            detail,
            status: 401,
            nonce,
        };
        let Some(header) = authorization else {
            return Err(OAuthError::Resource {
                code: "invalid_token",
                detail: "an access token is required".into(),
                status: 401,
                challenge: format!("Bearer realm=\"idca\", DPoP realm=\"idca\", algs=\"{algs}\""),
                nonce: None,
            });
        };
        let (scheme, token) = match header.split_once(' ') {
            Some((s, t)) if s.eq_ignore_ascii_case("bearer") => ("Bearer", t.trim()),
            Some((s, t)) if s.eq_ignore_ascii_case("dpop") => ("DPoP", t.trim()),
            _ => return Err(fail("Bearer", "invalid_token", "use Authorization: Bearer or DPoP".into(), None)),
        };
        let claims = match self.verify_access_token(token, now).await {
            Ok(c) => c,
            Err(e) => return Err(fail(scheme, "invalid_token", e.to_string(), None)),
        };
        match (scheme, &claims.cnf) {
            ("Bearer", None) if proofs.is_empty() => Ok(claims),
            ("Bearer", Some(_)) => Err(fail(
                "DPoP",
                "invalid_token",
                "a DPoP-bound token must be sent with Authorization: DPoP".into(),
                None,
            )),
            ("Bearer", None) => {
                Err(fail("Bearer", "invalid_request", "a DPoP proof comes with Authorization: DPoP".into(), None))
            }
            (_, None) => {
                Err(fail("DPoP", "invalid_token", "this token is not DPoP-bound; send it as Bearer".into(), None))
            }
            (_, Some(cnf)) => {
                let [proof] = proofs else {
                    return Err(fail("DPoP", "invalid_dpop_proof", "send exactly one DPoP header".into(), None));
                };
                let expected = Expected { htm, htu, access_token: Some(token) };
                match self.dpop.verify(proof, &expected, self.dpop_config.require_nonce, now).await {
                    Ok(p) if p.jkt.0 == cnf.jkt => Ok(claims),
                    Ok(_) => {
                        Err(fail("DPoP", "invalid_dpop_proof", "the proof key is not the token's key".into(), None))
                    }
                    Err(DpopError::UseNonce(d)) => Err(fail("DPoP", "use_dpop_nonce", d, Some(self.dpop.nonce(now)))),
                    Err(DpopError::InvalidProof(d)) => Err(fail("DPoP", "invalid_dpop_proof", d, None)),
                    Err(DpopError::Store(e)) => Err(e.into()),
                }
            }
        }
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
            Ok(c) => Ok(Some(Client::from(&c.value))),
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
        if let Err(wait) = self.client_auth_limiter.begin(id, from, now) {
            return Err(OAuthError::TooManyAttempts {
                detail: format!("too many failed client authentications; try again in {wait} s"),
                retry_after: wait,
            });
        }
        let result = match self.client(id).await {
            Ok(Some(client)) => client.authenticate(creds).await.map(|()| client),
            Ok(None) => Err(OAuthError::InvalidClient("unknown client".into())),
            Err(e) => Err(e),
        };
        let how = match &result {
            Ok(_) => login::Attempt::Succeeded,
            Err(OAuthError::InvalidClient(_)) => login::Attempt::Failed,
            Err(_) => login::Attempt::Abandoned,
        };
        self.client_auth_limiter.end(id, from, now, how);
        result
    }

    /// The authorization endpoint (RFC 6749 §4.1.1), in order:
    /// 1. an unknown client or a redirect URI that is not registered for it is shown as
    ///    an error page, never redirected (§4.1.2.1, RFC 9700 §4.1);
    /// 2. `response_type` must be `code`;
    /// 3. `scope` must be non-empty and allowed for the client;
    /// 4. PKCE (RFC 7636): S256 only; required from public clients, and from all when
    ///    `oauth.require_pkce`;
    /// 5. `prompt` and `max_age` (OIDC Core §3.1.2.1): `prompt=login`, `max_age=0` or a
    ///    session older than `max_age` need a fresh login; `prompt=consent` and
    ///    dynamically registered clients need consent; `prompt=none` shows no page and
    ///    answers `login_required` or `consent_required` instead;
    /// 6. with a usable session (and no consent to ask) a code is issued at once, else
    ///    the request is kept and the login (or consent) page shown.
    pub async fn authorize(
        &self,
        p: &AuthorizeParams,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        // 1.
        let page = |m: &str| Ok(AuthorizeOutcome::ErrorPage { status: 400, message: m.to_owned() });
        let client = match &p.client_id {
            Some(id) => self.client(id).await?,
            None => None,
        };
        let Some(client) = client else {
            return page("Unknown client. Check the client_id the application sent.");
        };
        let redirect_uri = match (&p.redirect_uri, client.redirect_uris.as_slice()) {
            (Some(uri), _) if client.matches_redirect_uri(uri) => uri.clone(),
            (None, [only]) => only.clone(),
            _ => return page("The redirect URI is not registered for this client."),
        };
        // Records written before the RFC 3986 check: never a redirect to what would not
        // make a valid `Location`.
        if crate::config::check_redirect_uri(&redirect_uri).is_err() {
            return page(
                "The redirect URI registered for this client is not valid. Ask its developer to register it again.",
            );
        }
        let state = p.state.clone();
        let error_redirect = |e: OAuthError| {
            let description = e.description();
            let mut params = vec![("error", e.code()), ("error_description", description.as_str())];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            params.push(("iss", &self.issuer));
            Ok(AuthorizeOutcome::Redirect { url: with_query(&redirect_uri, &params), session: None })
        };
        // 2.
        if p.response_type.as_deref() != Some("code") {
            return error_redirect(OAuthError::UnsupportedResponseType("response_type must be code".into()));
        }
        // 3.
        let scope = scopes(p.scope.as_deref().unwrap_or(""));
        if scope.is_empty() {
            return error_redirect(OAuthError::InvalidScope("scope is required".into()));
        }
        if let Some(s) = scope.iter().find(|s| !client.scopes.contains(s)) {
            return error_redirect(OAuthError::InvalidScope(format!("scope `{s}` is not allowed for this client")));
        }
        // 4.
        let code_challenge = match &p.code_challenge {
            Some(c) => {
                if let Err(e) = pkce::check_challenge(c, p.code_challenge_method.as_deref()) {
                    return error_redirect(e);
                }
                Some(c.clone())
            }
            None if client.is_public() || self.config.require_pkce => {
                return error_redirect(OAuthError::InvalidRequest(
                    "PKCE is required: send code_challenge (S256)".into(),
                ));
            }
            None => None,
        };
        let id_token_claims = match p.claims.as_deref().map(claims::requested_claims).transpose() {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => return error_redirect(e),
        };
        if p.dpop_jkt.as_deref().is_some_and(|j| j.len() != 43 || crate::jose::b64_decode(j).is_err()) {
            return error_redirect(OAuthError::InvalidRequest(
                "dpop_jkt must be a base64url SHA-256 thumbprint".into(),
            ));
        }
        // 5.
        let prompt = match Prompt::parse(p.prompt.as_deref()) {
            Ok(prompt) => prompt,
            Err(e) => return error_redirect(e),
        };
        let max_age = match p.max_age.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(m)) if m >= 0 => Some(m),
            Some(_) => {
                return error_redirect(OAuthError::InvalidRequest("max_age must be a non-negative integer".into()));
            }
        };
        let session = match session {
            Some(id) => match self.store.session(&SecretHash::of(id)).await {
                Ok(s) if s.expires > now => Some(s),
                Ok(_) | Err(StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let session = session.filter(|s| !prompt.login && max_age.is_none_or(|m| m > 0 && now - s.auth_time <= m));
        let consent = client.dynamic || prompt.consent;
        if prompt.none {
            let (code, detail) = match &session {
                None => ("login_required", "the user must log in"),
                Some(_) if consent => ("consent_required", "the user must consent to this client"),
                Some(_) => ("", ""),
            };
            if !code.is_empty() {
                return error_redirect(OAuthError::PromptNone { code, detail: detail.into() });
            }
        }
        let pending = PendingAuthorization {
            client_id: client.client_id.clone(),
            redirect_uri,
            scope,
            state,
            nonce: p.nonce.clone(),
            code_challenge,
            id_token_claims,
            dpop_jkt: p.dpop_jkt.clone(),
            csrf: random_token(),
            redirect_uri_sent: p.redirect_uri.is_some(),
            consent,
            expires: now + self.config.login_page_lifetime_secs as i64,
        };
        // 6.
        if let Some(s) = session {
            if consent {
                let request = random_token();
                self.store.put_pending_authorization(&request, &pending).await?;
                return Ok(AuthorizeOutcome::Consent { page: consent_page(request, &pending, &client), session: None });
            }
            let url = self.issue_code(&pending, &s.sub, s.auth_time, now).await?;
            return Ok(AuthorizeOutcome::Redirect { url, session: None });
        }
        let request = random_token();
        self.store.put_pending_authorization(&request, &pending).await?;
        Ok(AuthorizeOutcome::Login(LoginPage {
            request,
            csrf: pending.csrf,
            client_name: client.name.clone(),
            scope: pending.scope,
            username: String::new(),
            error: None,
            retry_after: None,
        }))
    }

    /// Issues a code for a completed authorization and returns the redirect URL with
    /// `code`, `state` and `iss` (RFC 9207).
    async fn issue_code(
        &self,
        p: &PendingAuthorization,
        sub: &str,
        auth_time: UnixTime,
        now: UnixTime,
    ) -> Result<String, OAuthError> {
        let code = format!("{}{}", random_token(), random_token());
        let record = AuthorizationCode {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            redirect_uri_sent: p.redirect_uri_sent,
            code_challenge: p.code_challenge.clone(),
            scope: p.scope.clone(),
            nonce: p.nonce.clone(),
            id_token_claims: p.id_token_claims.clone(),
            dpop_jkt: p.dpop_jkt.clone(),
            sub: sub.to_owned(),
            auth_time,
            expires: now + self.config.code_lifetime_secs as i64,
            redeemed: None,
        };
        self.store.put_code(&SecretHash::of(&code), &record).await?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &p.state {
            params.push(("state", s));
        }
        params.push(("iss", &self.issuer));
        Ok(with_query(&p.redirect_uri, &params))
    }

    /// The login form (a POST from the page): the request must be live and the CSRF
    /// token must match, both in the form and in the cookie the login page set in this
    /// browser (`browser`), so that another site cannot log a victim's browser in to the
    /// attacker's account (login CSRF, RFC 9700 §4.7); a locked-out user/address pair is
    /// refused without checking the password; success opens a session and issues the
    /// code.
    pub async fn login(
        &self,
        form: &LoginForm,
        browser: Option<&str>,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        let expired = || AuthorizeOutcome::ErrorPage {
            status: 400,
            message: "This login request is unknown or has expired. Start again from the application.".into(),
        };
        let pending = match self.store.pending_authorization(&form.request).await {
            Ok(p) if p.expires > now => p,
            Ok(_) | Err(StoreError::NotFound) => return Ok(expired()),
            Err(e) => return Err(e.into()),
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), pending.csrf.as_bytes()) {
            return Ok(AuthorizeOutcome::ErrorPage {
                status: 403,
                message: "The form was not sent by this page.".into(),
            });
        }
        if !browser.is_some_and(|b| crate::jose::ct_eq(b.as_bytes(), pending.csrf.as_bytes())) {
            return Ok(AuthorizeOutcome::ErrorPage {
                status: 403,
                message: "This login form was not opened in this browser, or its cookie was blocked. Start again \
                          from the application."
                    .into(),
            });
        }
        let client_name = self.client(&pending.client_id).await?.map(|c| c.name).unwrap_or_default();
        let again = |error: String, retry_after: Option<i64>| {
            let client_name = client_name.clone();
            AuthorizeOutcome::Login(LoginPage {
                request: form.request.clone(),
                csrf: pending.csrf.clone(),
                client_name,
                scope: pending.scope.clone(),
                username: form.username.clone(),
                error: Some(error),
                retry_after,
            })
        };
        if let Err(wait) = self.limiter.begin(&form.username, ip, now) {
            return Ok(again(format!("Too many failed attempts. Try again in {wait} seconds."), Some(wait)));
        }
        let Some(user) = login::check_credentials(&self.users, &form.username, &form.password).await else {
            self.limiter.end(&form.username, ip, now, login::Attempt::Failed);
            tracing::info!(username = %form.username, "login failed");
            return Ok(again("Wrong user name or password.".into(), None));
        };
        self.limiter.end(&form.username, ip, now, login::Attempt::Succeeded);
        let session_id = format!("{}{}", random_token(), random_token());
        let lifetime = self.config.session_lifetime_secs as i64;
        let session = Session { sub: user.username.clone(), auth_time: now, expires: now + lifetime };
        let client = self.client(&pending.client_id).await?;
        if let Some(client) = client.filter(|c| c.dynamic || pending.consent) {
            // A third-party client: the user consents on the next page, which the same
            // pending request (and its CSRF token) carries.
            self.store.put_session(&SecretHash::of(&session_id), &session).await?;
            return Ok(AuthorizeOutcome::Consent {
                page: consent_page(form.request.clone(), &pending, &client),
                session: Some((session_id, lifetime)),
            });
        }
        // Single use: a second submission of the same form finds nothing.
        let pending = match self.store.take_pending_authorization(&form.request).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return Ok(expired()),
            Err(e) => return Err(e.into()),
        };
        self.store.put_session(&SecretHash::of(&session_id), &session).await?;
        let url = self.issue_code(&pending, &user.username, now, now).await?;
        Ok(AuthorizeOutcome::Redirect { url, session: Some((session_id, lifetime)) })
    }

    /// The consent form (for dynamically registered clients): a live session, a live
    /// request with a matching CSRF token, taken once; `allow` issues the code, `deny`
    /// returns `access_denied` to the client.
    pub async fn consent(
        &self,
        form: &ConsentForm,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        let page = |status: u16, message: &str| Ok(AuthorizeOutcome::ErrorPage { status, message: message.to_owned() });
        let session = match session {
            Some(id) => match self.store.session(&SecretHash::of(id)).await {
                Ok(s) if s.expires > now => s,
                Ok(_) | Err(StoreError::NotFound) => {
                    return page(401, "Your session has ended. Start again from the application.");
                }
                Err(e) => return Err(e.into()),
            },
            None => return page(401, "Your session has ended. Start again from the application."),
        };
        let pending = match self.store.pending_authorization(&form.request).await {
            Ok(p) if p.expires > now => p,
            Ok(_) | Err(StoreError::NotFound) => {
                return page(400, "This request is unknown or has expired. Start again from the application.");
            }
            Err(e) => return Err(e.into()),
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), pending.csrf.as_bytes()) {
            return page(403, "The form was not sent by this page.");
        }
        let pending = match self.store.take_pending_authorization(&form.request).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return page(400, "This request was already answered."),
            Err(e) => return Err(e.into()),
        };
        match form.action.as_str() {
            "allow" => {
                let url = self.issue_code(&pending, &session.sub, session.auth_time, now).await?;
                Ok(AuthorizeOutcome::Redirect { url, session: None })
            }
            _ => {
                let mut params = vec![("error", "access_denied"), ("error_description", "the user denied the request")];
                if let Some(s) = &pending.state {
                    params.push(("state", s));
                }
                params.push(("iss", &self.issuer));
                Ok(AuthorizeOutcome::Redirect { url: with_query(&pending.redirect_uri, &params), session: None })
            }
        }
    }

    /// The token endpoint (RFC 6749 §3.2): authenticates the client, then runs the grant.
    pub async fn token(
        &self,
        creds: &ClientCredentials,
        from: IpAddr,
        form: &TokenForm,
        dpop: &[&str],
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.authenticated_client(creds, from, now).await?;
        // The proof first: a refresh token is never used up by a request whose proof fails.
        let jkt = self.token_proof(dpop, now).await?;
        let jkt = jkt.as_deref();
        let grant_type =
            form.grant_type.as_deref().ok_or_else(|| OAuthError::InvalidRequest("grant_type is required".into()))?;
        if !GRANT_TYPES.contains(&grant_type) {
            return Err(OAuthError::UnsupportedGrantType("this grant_type is not supported".into()));
        }
        if !client.allows_grant(grant_type) {
            return Err(OAuthError::UnauthorizedClient(format!("this client may not use {grant_type}")));
        }
        match grant_type {
            "authorization_code" => self.code_grant(&client, form, jkt, now).await,
            "refresh_token" => self.refresh_grant(&client, form, jkt, now).await,
            DEVICE_GRANT => self.device_grant(&client, form, jkt, now).await,
            _ => self.client_credentials_grant(&client, form, jkt, now).await,
        }
    }

    /// authorization_code (RFC 6749 §4.1.3): the code must exist, be unexpired, belong
    /// to this client and redirect URI, and pass PKCE (a verifier without a challenge is
    /// a downgrade and fails, RFC 9700 §2.1.1); it is then redeemed exactly once, and a
    /// second redemption revokes what the first produced.
    async fn code_grant(
        &self,
        client: &Client,
        form: &TokenForm,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let code = form.code.as_deref().ok_or_else(|| OAuthError::InvalidRequest("code is required".into()))?;
        let hash = SecretHash::of(code);
        let invalid = |m: &str| OAuthError::InvalidGrant(m.to_owned());
        let record = match self.store.code(&hash).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Err(invalid("unknown authorization code")),
            Err(e) => return Err(e.into()),
        };
        if record.client_id != client.client_id {
            return Err(invalid("the code was issued to another client"));
        }
        match form.redirect_uri.as_deref() {
            Some(u) if u != record.redirect_uri => {
                return Err(invalid("redirect_uri does not match the authorization request"));
            }
            None if record.redirect_uri_sent => {
                return Err(invalid("redirect_uri is required: the authorization request named one"));
            }
            _ => {}
        }
        // RFC 9449 §10: a code requested with dpop_jkt is redeemed only with that key.
        if let Some(bound) = &record.dpop_jkt
            && jkt != Some(bound.as_str())
        {
            return Err(OAuthError::InvalidDpopProof("this code needs a DPoP proof with the dpop_jkt key".into()));
        }
        match (&record.code_challenge, &form.code_verifier) {
            (Some(challenge), Some(verifier)) => pkce::verify(verifier, challenge)?,
            (Some(_), None) => return Err(OAuthError::InvalidRequest("code_verifier is required".into())),
            (None, Some(_)) => return Err(invalid("code_verifier sent but no code_challenge was")),
            (None, None) => {}
        }
        let grant = Grant {
            id: random_token(),
            client_id: client.client_id.clone(),
            sub: record.sub.clone(),
            scope: record.scope.clone(),
            auth_time: Some(record.auth_time),
            created: now,
            revoked: false,
        };
        let refresh = self.new_refresh(client, &grant, jkt, now);
        let redemption = self.store.redeem_code(&hash, &grant, refresh.as_ref().map(|(_, h, r)| (h, r))).await?;
        match redemption {
            CodeRedemption::Replayed { grant } => {
                tracing::warn!(grant = %grant, "authorization code reused: its grant is revoked");
                Err(invalid("the code was already used; the tokens it produced are revoked"))
            }
            CodeRedemption::Redeemed(_) if record.expires <= now => Err(invalid("the code has expired")),
            CodeRedemption::Redeemed(code) => {
                self.respond(&grant, refresh.map(|(t, _, _)| t), code.nonce.as_deref(), &code.id_token_claims, jkt, now)
            }
        }
    }

    /// A refresh token for `grant` if the client may refresh: (token, its hash, record).
    /// A refresh token for `grant` if the client may refresh: (token, its hash, record).
    /// A public client's refresh token is bound to its DPoP key, if it used one (RFC 9449
    /// §5); a confidential client's is not.
    fn new_refresh(
        &self,
        client: &Client,
        grant: &Grant,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Option<(String, SecretHash, RefreshToken)> {
        client.allows_grant("refresh_token").then(|| {
            let token = format!("{}{}", random_token(), random_token());
            let hash = SecretHash::of(&token);
            let record = RefreshToken {
                grant: grant.id.clone(),
                client_id: client.client_id.clone(),
                expires: now + self.config.refresh_token_idle_secs as i64,
                used: false,
                jkt: jkt.filter(|_| client.is_public()).map(str::to_owned),
            };
            (token, hash, record)
        })
    }

    /// refresh_token (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): the token must be
    /// this client's, unexpired, unused and of a live grant; it is exchanged for a new
    /// one by compare-and-swap; presenting a used token revokes the whole grant.
    async fn refresh_grant(
        &self,
        client: &Client,
        form: &TokenForm,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let token = form
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is required".into()))?;
        let invalid = |m: &str| OAuthError::InvalidGrant(m.to_owned());
        let hash = SecretHash::of(token);
        let stored = match self.store.refresh_token(&hash).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Err(invalid("unknown refresh token")),
            Err(e) => return Err(e.into()),
        };
        if stored.value.client_id != client.client_id {
            return Err(invalid("the refresh token was issued to another client"));
        }
        if stored.value.used {
            self.store.revoke_grant(&stored.value.grant).await?;
            tracing::warn!(grant = %stored.value.grant, "refresh token reused: its grant is revoked");
            return Err(invalid("the refresh token was already used; its grant is revoked"));
        }
        if stored.value.expires <= now {
            return Err(invalid("the refresh token has expired"));
        }
        // A key-bound refresh token needs a proof with that key, checked before the token
        // is used up (RFC 9449 §5).
        if let Some(bound) = &stored.value.jkt
            && jkt != Some(bound.as_str())
        {
            return Err(OAuthError::InvalidDpopProof("this refresh token is bound to another DPoP key".into()));
        }
        let mut grant = self.store.grant(&stored.value.grant).await?;
        if grant.revoked {
            return Err(invalid("the grant was revoked"));
        }
        if let Some(s) = &form.scope {
            let narrower = scopes(s);
            if narrower.iter().any(|s| !grant.scope.contains(s)) {
                return Err(OAuthError::InvalidScope("a refresh cannot widen the scope".into()));
            }
            grant.scope = narrower;
        }
        let (new_token, new_hash, new_record) =
            self.new_refresh(client, &grant, jkt, now).ok_or_else(|| invalid("this client may not refresh"))?;
        match self.store.rotate_refresh_token(&hash, stored.version, (&new_hash, &new_record)).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                self.store.revoke_grant(&stored.value.grant).await?;
                return Err(invalid("the refresh token was already used; its grant is revoked"));
            }
            Err(e) => return Err(e.into()),
        }
        self.respond(&grant, Some(new_token), None, &Default::default(), jkt, now)
    }

    /// client_credentials (RFC 6749 §4.4): confidential clients only; the subject is the
    /// client; no refresh token (§4.4.3).
    async fn client_credentials_grant(
        &self,
        client: &Client,
        form: &TokenForm,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::UnauthorizedClient("client_credentials needs a confidential client".into()));
        }
        let scope = match &form.scope {
            Some(s) => scopes(s),
            None => {
                client.scopes.iter().filter(|s| !matches!(s.as_str(), "openid" | "offline_access")).cloned().collect()
            }
        };
        if let Some(s) =
            scope.iter().find(|s| !client.scopes.contains(s) || matches!(s.as_str(), "openid" | "offline_access"))
        {
            return Err(OAuthError::InvalidScope(format!("scope `{s}` is not allowed here")));
        }
        let grant = Grant {
            id: random_token(),
            client_id: client.client_id.clone(),
            sub: client.client_id.clone(),
            scope,
            auth_time: None,
            created: now,
            revoked: false,
        };
        self.store.create_grant(&grant, None).await?;
        self.respond(&grant, None, None, &Default::default(), jkt, now)
    }

    /// Mints the access token (and id_token for `openid`) for a grant.
    fn respond(
        &self,
        grant: &Grant,
        refresh_token: Option<String>,
        nonce: Option<&str>,
        requested: &std::collections::BTreeMap<String, serde_json::Value>,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let lifetime = self.config.access_token_lifetime_secs;
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: grant.sub.clone(),
            aud: self.audience.clone(),
            exp: now + lifetime as i64,
            iat: now,
            jti: random_token(),
            client_id: grant.client_id.clone(),
            scope: grant.scope.join(" "),
            auth_time: grant.auth_time,
            grant: grant.id.clone(),
            cnf: jkt.map(|j| tokens::Confirmation { jkt: j.to_owned() }),
        };
        let access_token = self.keys.sign(AT_JWT, &claims)?;
        let id_token = match (grant.scope.iter().any(|s| s == "openid"), grant.auth_time) {
            (true, Some(auth_time)) => {
                let user = self.users.iter().find(|u| u.username == grant.sub);
                let id = IdTokenClaims {
                    iss: self.issuer.clone(),
                    sub: grant.sub.clone(),
                    aud: grant.client_id.clone(),
                    exp: now + self.config.id_token_lifetime_secs as i64,
                    iat: now,
                    auth_time,
                    nonce: nonce.map(str::to_owned),
                    at_hash: tokens::at_hash(&access_token),
                    name: user.filter(|_| grant.scope.iter().any(|s| s == "profile")).map(|u| u.name.clone()),
                    email: user.filter(|_| grant.scope.iter().any(|s| s == "email")).map(|u| u.email.clone()),
                    handle: user
                        .filter(|u| !u.handle.is_empty() && !u.domain.is_empty())
                        .map(|u| format!("wireapp://%40{}@{}", u.handle, u.domain)),
                    amr: claims::AMR.iter().map(|m| (*m).to_owned()).collect(),
                    keyauth: claims::echoed(requested, "keyauth"),
                    acme_aud: claims::echoed(requested, "acme_aud"),
                };
                Some(self.keys.sign("JWT", &id)?)
            }
            _ => None,
        };
        Ok(TokenResponse {
            access_token,
            token_type: if jkt.is_some() { "DPoP" } else { "Bearer" },
            expires_in: lifetime,
            scope: grant.scope.join(" "),
            refresh_token,
            id_token,
        })
    }

    /// Verifies an access token for idca's own resources (RFC 6750): signature by a
    /// published key, `typ` at+jwt, issuer, audience, expiry, and a live grant.
    pub async fn verify_access_token(&self, token: &str, now: UnixTime) -> Result<AccessTokenClaims, OAuthError> {
        let claims: AccessTokenClaims = self.keys.verify(token, AT_JWT)?;
        let bad = |m: &str| OAuthError::InvalidToken(m.to_owned());
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(bad("the token is not for this server"));
        }
        if claims.exp <= now {
            return Err(bad("the token has expired"));
        }
        match self.store.grant(&claims.grant).await {
            Ok(g) if !g.revoked => {}
            Ok(_) | Err(StoreError::NotFound) => return Err(bad("the token was revoked")),
            Err(e) => return Err(e.into()),
        }
        if self.client(&claims.client_id).await?.is_none() {
            return Err(bad("the token's client no longer exists"));
        }
        Ok(claims)
    }

    /// Introspection (RFC 7662 §2): for an authenticated confidential client, whether a
    /// token (access or refresh) is active, and its metadata. Anything unknown, expired
    /// or revoked is just `{"active": false}` (§2.2).
    pub async fn introspect(
        &self,
        creds: &ClientCredentials,
        from: IpAddr,
        token: &str,
        now: UnixTime,
    ) -> Result<serde_json::Value, OAuthError> {
        let client = self.authenticated_client(creds, from, now).await?;
        if client.is_public() {
            return Err(OAuthError::InvalidClient("introspection needs a confidential client".into()));
        }
        if let Ok(c) = self.verify_access_token(token, now).await {
            let token_type = if c.cnf.is_some() { "DPoP" } else { "Bearer" };
            return Ok(serde_json::json!({
                "active": true, "token_type": token_type, "cnf": c.cnf, "scope": c.scope, "client_id": c.client_id,
                "sub": c.sub, "username": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
            }));
        }
        if let Ok(r) = self.store.refresh_token(&SecretHash::of(token)).await
            && !r.value.used
            && r.value.expires > now
            && let Ok(g) = self.store.grant(&r.value.grant).await
            && !g.revoked
        {
            return Ok(serde_json::json!({
                "active": true, "token_type": "refresh_token", "scope": g.scope.join(" "),
                "client_id": g.client_id, "sub": g.sub, "username": g.sub, "exp": r.value.expires, "iss": self.issuer,
            }));
        }
        Ok(serde_json::json!({ "active": false }))
    }

    /// Revocation (RFC 7009 §2): a client revokes one of its own tokens, which revokes
    /// its whole grant. Unknown tokens, and tokens of other clients, get the same `200`
    /// and change nothing (§2.2).
    pub async fn revoke(
        &self,
        creds: &ClientCredentials,
        from: IpAddr,
        token: &str,
        now: UnixTime,
    ) -> Result<(), OAuthError> {
        let client = self.authenticated_client(creds, from, now).await?;
        let grant = match self.store.refresh_token(&SecretHash::of(token)).await {
            Ok(r) if r.value.client_id == client.client_id => Some(r.value.grant),
            Ok(_) => None,
            Err(StoreError::NotFound) => self
                .keys
                .verify::<AccessTokenClaims>(token, AT_JWT)
                .ok()
                .filter(|c| c.client_id == client.client_id && c.exp > now)
                .map(|c| c.grant),
            Err(e) => return Err(e.into()),
        };
        if let Some(g) = grant {
            match self.store.revoke_grant(&g).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// userinfo (OIDC Core §5.3): the claims the token's scopes allow.
    pub async fn userinfo(
        &self,
        authorization: Option<&str>,
        proofs: &[&str],
        htm: &str,
        now: UnixTime,
    ) -> Result<serde_json::Value, OAuthError> {
        let htu = format!("{}{}", self.audience, paths::USERINFO);
        let claims = self.verify_resource_request(authorization, proofs, htm, &htu, now).await?;
        if !claims.has_scope("openid") {
            return Err(OAuthError::InsufficientScope("userinfo needs the openid scope".into()));
        }
        let mut out = serde_json::json!({ "sub": claims.sub });
        if let Some(u) = self.users.iter().find(|u| u.username == claims.sub) {
            if claims.has_scope("profile") {
                out["name"] = serde_json::json!(u.name);
                out["preferred_username"] = serde_json::json!(u.username);
            }
            if claims.has_scope("email") {
                out["email"] = serde_json::json!(u.email);
            }
        }
        Ok(out)
    }

    /// Verifies a token this server signed (any `typ`) and returns its claims: what the
    /// ACME identity challenges check tokens with.
    pub fn verify_own_token(&self, token: &str, typ: &str) -> Result<serde_json::Value, OAuthError> {
        self.keys.verify(token, typ)
    }

    /// The JWKS.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// Authorization server metadata (RFC 8414), which is also the OpenID provider
    /// configuration (OIDC Discovery §3): one source for both documents.
    pub fn metadata(&self) -> serde_json::Value {
        let url = |p: &str| format!("{}{p}", self.audience);
        serde_json::json!({
            "issuer": self.issuer,
            "authorization_endpoint": url(paths::AUTHORIZE),
            "token_endpoint": url(paths::TOKEN),
            "jwks_uri": url(paths::JWKS),
            "userinfo_endpoint": url(paths::USERINFO),
            "introspection_endpoint": url(paths::INTROSPECT),
            "revocation_endpoint": url(paths::REVOKE),
            "device_authorization_endpoint": url(paths::DEVICE),
            "registration_endpoint": self.config.dynamic_registration.then(|| url(paths::REGISTER)),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": GRANT_TYPES,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "name", "email", "preferred_username", "handle", "keyauth", "acme_aud"],
            "authorization_response_iss_parameter_supported": true,
            "dpop_signing_alg_values_supported": crate::dpop::ALGS,
            "claims_parameter_supported": true,
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_building_encodes() {
        assert_eq!(
            with_query("https://a/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a/cb?code=x%20y&state=s%26t"
        );
        assert_eq!(with_query("https://a/cb?k=v", &[("code", "c")]), "https://a/cb?k=v&code=c");
    }
}
