//! What the OAuth endpoints read and answer: forms, responses, page models.

use super::*;

/// Scopes idca understands.
pub const SCOPES: [&str; 5] = ["openid", "profile", "email", "offline_access", "acme"];

/// Grant types idca implements.
pub const GRANT_TYPES: [&str; 4] = [
    GrantType::AuthorizationCode.as_str(),
    GrantType::RefreshToken.as_str(),
    GrantType::ClientCredentials.as_str(),
    GrantType::DeviceCode.as_str(),
];

/// The token form's `grant_type` (RFC 6749 §4.1.3, §6, §4.4; RFC 8628 §3.4), parsed once
/// so the token endpoint dispatches on a type, not on strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    DeviceCode,
}

impl GrantType {
    /// `None` for a grant type idca does not implement.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::AuthorizationCode, Self::RefreshToken, Self::ClientCredentials, Self::DeviceCode]
            .into_iter()
            .find(|g| g.as_str() == s)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::DeviceCode => DEVICE_GRANT,
        }
    }
}

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
    /// OAuth 2.0 Multiple Response Type Encoding Practices §2.1: `query` (the default) or
    /// `form_post` (OAuth 2.0 Form Post Response Mode).
    pub response_mode: Option<String>,
    /// RFC 9126 §4: stands for the parameters pushed to the PAR endpoint.
    pub request_uri: Option<String>,
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
    /// RFC 7523 §2.2: a JWT authenticating the client, and its type.
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
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
    /// Back to the client, with a code or an error (as the query of `url`); optionally a
    /// new session cookie. With `form_post`, the parameters are POSTed to the redirect URI
    /// by a page that submits itself (OAuth 2.0 Form Post Response Mode §2).
    Redirect { url: String, session: Option<(String, i64)>, form_post: bool },
    /// The user must log in.
    Login(LoginPage),
    /// The user must consent (third-party client); maybe with a new session cookie.
    Consent { page: ConsentPage, session: Option<(String, i64)> },
}
