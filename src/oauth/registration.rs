//! Dynamic client registration (RFC 7591) and management (RFC 7592).

use serde::{Deserialize, Serialize};

use super::{AuthServer, GrantType, OAuthError, scopes};
use crate::clock::UnixTime;
use crate::model::oauth::{RegisteredClient, SecretHash};
use crate::model::random_token;
use crate::store::StoreError;

/// Client metadata (RFC 7591 §2), as sent and as returned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 7592 §2.2: a PUT names the client it updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OpenID Connect RP-Initiated Logout 1.0 §3.1: where logout may return.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `private_key_jwt`: the client's public keys, inline or by URL (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// RFC 9126 §6: authorization requests only through PAR.
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
}

/// The registration response (RFC 7591 §3.2.1, RFC 7592 §3).
#[derive(Clone, Serialize)]
pub struct RegistrationResponse {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: UnixTime,
    /// 0: the secret does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    pub registration_client_uri: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub scope: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub require_pushed_authorization_requests: bool,
}

impl std::fmt::Debug for RegistrationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationResponse").field("client_id", &self.client_id).finish()
    }
}

/// The client authentication methods (RFC 7591 §2, OIDC Core §9).
pub(super) const AUTH_METHODS: [&str; 5] =
    ["client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt", "none"];

impl AuthServer {
    /// Checks metadata (RFC 7591 §2, §3.2.2) and returns what the client gets:
    /// 1. redirect URIs (and post-logout redirect URIs): https, loopback http or a
    ///    reverse-domain private-use scheme, no fragment (`invalid_redirect_uri`);
    ///    required for authorization_code;
    /// 2. grant types among authorization_code, refresh_token, device_code;
    ///    client_credentials is not for dynamic clients;
    /// 3. scopes within `oauth.dynamic_client_scopes` (`invalid_client_metadata`).
    fn check_metadata(&self, m: &ClientMetadata) -> Result<(String, Vec<String>, Vec<String>), OAuthError> {
        let bad = |msg: String| OAuthError::InvalidClientMetadata(msg);
        // 1.
        for uri in &m.redirect_uris {
            crate::config::check_redirect_uri(uri)
                .map_err(|why| OAuthError::InvalidRedirectUri(format!("redirect_uris: {why}")))?;
        }
        for uri in &m.post_logout_redirect_uris {
            crate::config::check_redirect_uri(uri)
                .map_err(|why| OAuthError::InvalidRedirectUri(format!("post_logout_redirect_uris: {why}")))?;
        }
        let method = m.token_endpoint_auth_method.clone().unwrap_or_else(|| "client_secret_basic".into());
        if !AUTH_METHODS.contains(&method.as_str()) {
            return Err(bad(format!("token_endpoint_auth_method must be one of {}", AUTH_METHODS.join(", "))));
        }
        check_client_keys(&method, m)?;
        // 2.
        let grants = m.grant_types.clone().unwrap_or_else(|| vec!["authorization_code".into()]);
        for g in &grants {
            let allowed = [GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::DeviceCode];
            if !GrantType::parse(g).is_some_and(|g| allowed.contains(&g)) {
                return Err(bad(
                    "grant_types: registered clients may use authorization_code, refresh_token and the device grant"
                        .into(),
                ));
            }
        }
        if grants.iter().any(|g| g == "authorization_code") && m.redirect_uris.is_empty() {
            return Err(OAuthError::InvalidRedirectUri("authorization_code needs at least one redirect URI".into()));
        }
        if m.response_types.as_ref().is_some_and(|r| r.iter().any(|t| t != "code")) {
            return Err(bad("only the `code` response type is supported".into()));
        }
        // 3.
        let allowed = &self.config.dynamic_client_scopes;
        let scope = match &m.scope {
            Some(s) => scopes(s),
            None => allowed.clone(),
        };
        if let Some(s) = scope.iter().find(|s| !allowed.contains(s)) {
            return Err(bad(format!("scope `{s}` is not available to dynamically registered clients")));
        }
        Ok((method, grants, scope))
    }

    fn registration_response(
        &self,
        c: &RegisteredClient,
        secret: Option<String>,
        token: Option<String>,
    ) -> RegistrationResponse {
        RegistrationResponse {
            client_id: c.client_id.clone(),
            client_secret_expires_at: secret.as_ref().map(|_| 0),
            client_secret: secret,
            client_id_issued_at: c.created,
            registration_access_token: token,
            registration_client_uri: format!("{}{}/{}", self.audience, super::paths::REGISTER, c.client_id),
            client_name: c.client_name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
            grant_types: c.grant_types.clone(),
            response_types: vec!["code".into()],
            scope: c.scope_string(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            jwks: c.jwks.clone(),
            jwks_uri: c.jwks_uri.clone(),
            require_pushed_authorization_requests: c.require_pushed_authorization_requests,
        }
    }

    /// Registers a client (RFC 7591 §3); durable before the `201`.
    /// At most `limits.registrations_per_minute_per_address` from one address (its /48
    /// for IPv6), counted in the store (GCRA), so that a loop cannot fill it.
    pub async fn register(
        &self,
        m: &ClientMetadata,
        from: std::net::IpAddr,
        now: UnixTime,
    ) -> Result<RegistrationResponse, OAuthError> {
        if !self.config.dynamic_registration {
            return Err(OAuthError::AccessDenied("dynamic client registration is off".into()));
        }
        let (method, grant_types, scopes) = self.check_metadata(m)?;
        self.take_rate(super::Rate::Registration, &crate::model::address_group(from)).await?;
        let client_id = format!("dyn-{}", random_token());
        // client_secret_jwt: a secret the server can recompute (it must check MACs);
        // private_key_jwt and none: no secret.
        let secret = match method.as_str() {
            "none" | "private_key_jwt" => None,
            "client_secret_jwt" => Some(self.derived_jwt_secret(&client_id)),
            _ => Some(format!("{}{}", random_token(), random_token())),
        };
        let token = format!("{}{}", random_token(), random_token());
        let client = RegisteredClient {
            client_id,
            client_name: m.client_name.clone().unwrap_or_else(|| "Unnamed application".into()),
            secret_hash: secret.as_deref().map(SecretHash::of),
            token_endpoint_auth_method: method,
            redirect_uris: m.redirect_uris.clone(),
            grant_types,
            scopes,
            registration_token_hash: SecretHash::of(&token),
            created: now,
            post_logout_redirect_uris: m.post_logout_redirect_uris.clone(),
            jwks: m.jwks.clone(),
            jwks_uri: m.jwks_uri.clone(),
            require_pushed_authorization_requests: m.require_pushed_authorization_requests,
        };
        self.store.create_client(&client).await?;
        Ok(self.registration_response(&client, secret, Some(token)))
    }

    /// The client behind a registration access token (RFC 7592 §3): the token must be
    /// this client's, compared in constant time; anything else is `invalid_token`.
    async fn managed_client(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<crate::store::Versioned<RegisteredClient>, OAuthError> {
        let bad = || OAuthError::InvalidToken("invalid registration access token".into());
        let c = match self.store.registered_client(client_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Err(bad()),
            Err(e) => return Err(e.into()),
        };
        if crate::jose::ct_eq(SecretHash::of(token).0.as_bytes(), c.value.registration_token_hash.0.as_bytes()) {
            Ok(c)
        } else {
            Err(bad())
        }
    }

    /// RFC 7592 §2.1: read the registration.
    pub async fn read_registration(&self, client_id: &str, token: &str) -> Result<RegistrationResponse, OAuthError> {
        let c = self.managed_client(client_id, token).await?;
        Ok(self.registration_response(&c.value, None, None))
    }

    /// RFC 7592 §2.2: replace the metadata (the secret and the token stay).
    pub async fn update_registration(
        &self,
        client_id: &str,
        token: &str,
        m: &ClientMetadata,
    ) -> Result<RegistrationResponse, OAuthError> {
        let mut c = self.managed_client(client_id, token).await?;
        if m.client_id.as_deref().is_some_and(|id| id != client_id) {
            return Err(OAuthError::InvalidRequest("client_id does not match the registration".into()));
        }
        let (method, grant_types, scopes) = self.check_metadata(m)?;
        let secret_methods = ["client_secret_basic", "client_secret_post"];
        let old = c.value.token_endpoint_auth_method.as_str();
        if method != old && !(secret_methods.contains(&old) && secret_methods.contains(&method.as_str())) {
            return Err(OAuthError::InvalidClientMetadata(format!(
                "token_endpoint_auth_method cannot change from {old} to {method}"
            )));
        }
        c.value.token_endpoint_auth_method = method;
        c.value.grant_types = grant_types;
        c.value.scopes = scopes;
        c.value.redirect_uris = m.redirect_uris.clone();
        c.value.post_logout_redirect_uris = m.post_logout_redirect_uris.clone();
        c.value.jwks = m.jwks.clone();
        c.value.jwks_uri = m.jwks_uri.clone();
        c.value.require_pushed_authorization_requests = m.require_pushed_authorization_requests;
        if let Some(name) = &m.client_name {
            c.value.client_name = name.clone();
        }
        self.store.update_client(&c.value, c.version).await.map_err(|e| match e {
            StoreError::Conflict => OAuthError::InvalidRequest("the registration changed concurrently; retry".into()),
            other => other.into(),
        })?;
        Ok(self.registration_response(&c.value, None, None))
    }

    /// RFC 7592 §2.3: delete the client; its tokens stop working.
    pub async fn delete_registration(&self, client_id: &str, token: &str) -> Result<(), OAuthError> {
        self.managed_client(client_id, token).await?;
        match self.store.delete_client(client_id).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `private_key_jwt` needs keys: `jwks` (with a key idca can verify with) or an https
/// `jwks_uri`, not both (RFC 7591 §2); other methods take neither.
fn check_client_keys(method: &str, m: &ClientMetadata) -> Result<(), OAuthError> {
    let bad = |msg: &str| OAuthError::InvalidClientMetadata(msg.into());
    match (method, &m.jwks, &m.jwks_uri) {
        ("private_key_jwt", Some(_), Some(_)) => Err(bad("jwks and jwks_uri must not both be given")),
        ("private_key_jwt", Some(jwks), None) if crate::jose::jwk_set(jwks).is_empty() => {
            Err(bad("jwks holds no signing key idca supports (EC P-256/384/521, Ed25519, RSA)"))
        }
        ("private_key_jwt", None, Some(uri)) if !uri.starts_with("https://") || uri.len() > 2048 => {
            Err(bad("jwks_uri must be an https URL"))
        }
        ("private_key_jwt", None, None) => Err(bad("private_key_jwt needs jwks or jwks_uri")),
        ("private_key_jwt", _, _) => Ok(()),
        (_, None, None) => Ok(()),
        _ => Err(bad("jwks and jwks_uri are only for private_key_jwt")),
    }
}

impl RegisteredClient {
    fn scope_string(&self) -> String {
        self.scopes.join(" ")
    }
}
