//! Discovery (RFC 8414, OIDC Discovery) and the JWKS.

use super::*;

impl AuthServer {
    /// The JWKS.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.current().jwks()
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
            "end_session_endpoint": url(paths::LOGOUT),
            "device_authorization_endpoint": url(paths::DEVICE),
            "registration_endpoint": self.config.dynamic_registration.then(|| url(paths::REGISTER)),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
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
