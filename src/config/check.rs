//! The checks a loaded configuration must pass before anything starts.

use super::*;

/// The longest certificate validity a profile may give, in seconds: 100 years.
const MAX_VALIDITY_SECS: u64 = 3_155_760_000;

impl Config {
    /// Checks values that the types alone cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_server()?;
        self.check_ca()?;
        self.check_acme()?;
        self.check_oauth()?;
        self.check_devices()?;
        self.check_limits()
    }

    /// `[server]` and `[management]`.
    fn check_server(&self) -> Result<(), ConfigError> {
        if !self.server.public_url.is_empty() {
            let u = &self.server.public_url;
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.ends_with('/') {
                return Err(ConfigError::Invalid(format!(
                    "server.public_url `{u}` must be an http(s) URL without a trailing slash"
                )));
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "server.tls_cert and server.tls_key are set together or not at all".into(),
            ));
        }
        if let Some(Err(why)) = self.server.trusted_proxies.iter().map(|p| p.parse::<Cidr>()).find(Result::is_err) {
            return Err(ConfigError::Invalid(format!("server.trusted_proxies: {why}")));
        }
        if !self.management.listen.is_empty() && self.management.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!("management.listen `{}` is not ip:port", self.management.listen)));
        }
        Ok(())
    }

    /// `[ca]`.
    fn check_ca(&self) -> Result<(), ConfigError> {
        let ca = &self.ca;
        let given = [&ca.root_cert, &ca.root_key, &ca.intermediate_cert, &ca.intermediate_key]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if given != 0 && given != 4 {
            return Err(ConfigError::Invalid(
                "ca.root_cert, ca.root_key, ca.intermediate_cert and ca.intermediate_key are set together or not at all".to_owned(),
            ));
        }
        if !(1..=u32::from(MAX_CHAIN_LENGTH)).contains(&self.ca.chain_length)
            || self.ca.alternate_roots > u32::from(MAX_ALTERNATE_ROOTS)
        {
            return Err(ConfigError::Invalid(format!(
                "ca.chain_length is 1-{MAX_CHAIN_LENGTH} and ca.alternate_roots 0-{MAX_ALTERNATE_ROOTS}"
            )));
        }
        Ok(())
    }

    /// `[acme]`.
    fn check_acme(&self) -> Result<(), ConfigError> {
        if !self.acme.profiles.contains_key(&self.acme.default_profile) {
            return Err(ConfigError::Invalid(format!(
                "acme.default_profile `{}` is not one of acme.profiles",
                self.acme.default_profile
            )));
        }
        // At most 100 years: newOrder adds it to `notBefore`, and a certificate's times
        // end with the year 9999 (RFC 5280 §4.1.2.5).
        if let Some((name, _)) =
            self.acme.profiles.iter().find(|(_, p)| !(1..=MAX_VALIDITY_SECS).contains(&p.validity_secs))
        {
            return Err(ConfigError::Invalid(format!(
                "acme.profiles.{name}.validity_secs must be 1 to {MAX_VALIDITY_SECS} (100 years)"
            )));
        }
        if self.acme.testing.nonce_reject_percent > 99 || self.acme.testing.authz_reuse_percent > 100 {
            return Err(ConfigError::Invalid(
                "acme.testing.nonce_reject_percent is 0-99 and authz_reuse_percent 0-100".to_owned(),
            ));
        }
        if self.acme.validation.concurrency == 0 || self.acme.orders_per_page == 0 {
            return Err(ConfigError::Invalid(
                "acme.validation.concurrency and acme.orders_per_page must be at least 1".to_owned(),
            ));
        }
        for (kid, key) in &self.acme.eab.keys {
            if crate::jose::b64_decode(key).map_or(true, |k| k.len() < 16) {
                return Err(ConfigError::Invalid(format!(
                    "acme.eab.keys.{kid}: the key must be base64url, at least 16 bytes"
                )));
            }
        }
        if !self.acme.validation.dns_resolver.is_empty()
            && self.acme.validation.dns_resolver.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "acme.validation.dns_resolver `{}` is not ip:port",
                self.acme.validation.dns_resolver
            )));
        }
        if !self.acme.validation.connect_to.is_empty() && self.acme.validation.connect_to.parse::<IpAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "acme.validation.connect_to `{}` is not an IP address",
                self.acme.validation.connect_to
            )));
        }
        Ok(())
    }

    /// `[devices]`: `wire-oidc-01` id_tokens are always checked for a client and claims.
    fn check_devices(&self) -> Result<(), ConfigError> {
        let d = &self.devices;
        if d.oidc_client_id.is_empty() || d.oidc_name_claim.is_empty() {
            return Err(ConfigError::Invalid(
                "devices.oidc_client_id (the client wire-oidc-01 id_tokens are for; default idca-cli) and \
                 devices.oidc_name_claim (default name) cannot be empty"
                    .into(),
            ));
        }
        let t = &d.dpop_target;
        if !t.is_empty() && (!(t.starts_with("https://") || t.starts_with("http://")) || !t.contains("{device}")) {
            return Err(ConfigError::Invalid(format!(
                "devices.dpop_target `{t}` must be an http(s) URL with {{device}} for the device id"
            )));
        }
        Ok(())
    }

    /// `[oauth]` and `[dpop]`.
    fn check_oauth(&self) -> Result<(), ConfigError> {
        if self.dpop.max_age_secs > 86_400 {
            return Err(ConfigError::Invalid(
                "dpop.max_age_secs must be at most 86400 (a day; each proof's jti is kept that long)".into(),
            ));
        }
        for u in self.oauth.users.iter().filter(|u| !u.password_hash.is_empty()) {
            crate::password::check_password_hash(&u.password_hash)
                .map_err(|why| ConfigError::Invalid(format!("oauth user {}: password_hash: {why}", u.username)))?;
        }
        for c in &self.oauth.clients {
            let invalid = |why: &str| ConfigError::Invalid(format!("oauth client {}: {why}", c.client_id));
            if !c.secret_hash.is_empty() {
                crate::password::check_password_hash(&c.secret_hash)
                    .map_err(|why| invalid(&format!("secret_hash: {why}")))?;
            }
            let methods =
                [!c.secret_hash.is_empty(), c.jwks.is_some(), !c.jwks_uri.is_empty(), !c.jwt_secret.is_empty()];
            if methods.iter().filter(|m| **m).count() > 1 {
                return Err(invalid("give one of secret_hash, jwks, jwks_uri, jwt_secret"));
            }
            if c.jwks.as_ref().is_some_and(|j| crate::jose::jwk_set(j).is_empty()) {
                return Err(invalid("jwks holds no signing key idca supports (EC P-256/384/521, Ed25519, RSA)"));
            }
            let uri = &c.jwks_uri;
            if !(uri.is_empty() || uri.starts_with("https://") || uri.starts_with("http://")) {
                return Err(invalid("jwks_uri must be an http(s) URL"));
            }
            if !c.jwt_secret.is_empty() && c.jwt_secret.len() < 32 {
                return Err(invalid("jwt_secret must be at least 32 bytes (RFC 7518 §3.2)"));
            }
            for uri in &c.redirect_uris {
                check_redirect_uri(uri).map_err(|why| {
                    ConfigError::Invalid(format!("oauth client {}: redirect URI {uri}: {why}", c.client_id))
                })?;
            }
        }
        Ok(())
    }

    /// `[limits]`.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (name, value) in [
            ("jose_body_bytes", l.jose_body_bytes as u64),
            ("form_body_bytes", l.form_body_bytes as u64),
            ("json_body_bytes", l.json_body_bytes as u64),
            ("json_max_depth", l.json_max_depth as u64),
            ("request_header_timeout_ms", l.request_header_timeout_ms),
            ("request_body_timeout_ms", l.request_body_timeout_ms),
            ("token_max_failures", u64::from(l.token_max_failures)),
            ("token_max_failures_per_address", u64::from(l.token_max_failures_per_address)),
            ("login_max_failures_per_address", u64::from(l.login_max_failures_per_address)),
            ("queued_validations", l.queued_validations as u64),
            ("dpop_jti_max", l.dpop_jti_max),
            ("nonce_lifetime_secs", l.nonce_lifetime_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("limits.{name} must be at least 1")));
            }
        }
        if !(64..=1 << 30).contains(&l.nonce_window) {
            return Err(ConfigError::Invalid("limits.nonce_window must be 64 to 1073741824".into()));
        }
        Ok(())
    }
}
