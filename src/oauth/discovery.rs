//! Discovery (RFC 8414, OIDC Discovery) and the JWKS.

use super::*;

/// What client assertions may be signed with: the JWS algorithms idca verifies for
/// `private_key_jwt` and the HMACs for `client_secret_jwt`.
const ASSERTION_ALGS: [&str; 8] = ["ES256", "ES384", "ES512", "EdDSA", "RS256", "HS256", "HS384", "HS512"];

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
            "pushed_authorization_request_endpoint": url(paths::PAR),
            "require_pushed_authorization_requests": self.config.require_pushed_authorization_requests,
            "device_authorization_endpoint": url(paths::DEVICE),
            "registration_endpoint": self.config.dynamic_registration.then(|| url(paths::REGISTER)),
            "introspection_endpoint_auth_methods_supported": &registration::AUTH_METHODS[..4],
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "revocation_endpoint_auth_methods_supported": registration::AUTH_METHODS,
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": GRANT_TYPES,
            "token_endpoint_auth_methods_supported": registration::AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
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
