//! The token endpoint (RFC 6749 §3.2): one grant per function, DPoP-bound answers.

use super::*;
use crate::clock;

impl AuthServer {
    /// Checks a DPoP proof at the token endpoint (RFC 9449 §5): errors are
    /// `invalid_dpop_proof`, or `use_dpop_nonce` with the nonce to use.
    pub(super) async fn token_proof(&self, proofs: &[&str], now: UnixTime) -> Result<Option<String>, OAuthError> {
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
        let grant = GrantType::parse(grant_type)
            .ok_or_else(|| OAuthError::UnsupportedGrantType("this grant_type is not supported".into()))?;
        if !client.allows_grant(grant.as_str()) {
            return Err(OAuthError::UnauthorizedClient(format!("this client may not use {grant_type}")));
        }
        match grant {
            GrantType::AuthorizationCode => self.code_grant(&client, form, jkt, now).await,
            GrantType::RefreshToken => self.refresh_grant(&client, form, jkt, now).await,
            GrantType::DeviceCode => self.device_grant(&client, form, jkt, now).await,
            GrantType::ClientCredentials => self.client_credentials_grant(&client, form, jkt, now).await,
        }
    }

    /// authorization_code (RFC 6749 §4.1.3): the code must exist, be unexpired, belong
    /// to this client and redirect URI, and pass PKCE (a verifier without a challenge is
    /// a downgrade and fails, RFC 9700 §2.1.1); it is then redeemed exactly once, and a
    /// second redemption revokes what the first produced.
    pub(super) async fn code_grant(
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
    pub(super) fn new_refresh(
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
                expires: clock::after(now, self.config.refresh_token_idle_secs),
                used: false,
                jkt: jkt.filter(|_| client.is_public()).map(str::to_owned),
            };
            (token, hash, record)
        })
    }

    /// refresh_token (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): the token must be
    /// this client's, unexpired, unused and of a live grant; it is exchanged for a new
    /// one by compare-and-swap; presenting a used token revokes the whole grant.
    pub(super) async fn refresh_grant(
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
    pub(super) async fn client_credentials_grant(
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
    pub(super) fn respond(
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
        let access_token = self.keys.current().sign(AT_JWT, &claims)?;
        let id_token = match (grant.scope.iter().any(|s| s == "openid"), grant.auth_time) {
            (true, Some(auth_time)) => {
                let user = self.users.iter().find(|u| u.username == grant.sub);
                let id = IdTokenClaims {
                    iss: self.issuer.clone(),
                    sub: grant.sub.clone(),
                    aud: grant.client_id.clone(),
                    exp: clock::after(now, self.config.id_token_lifetime_secs),
                    iat: now,
                    auth_time,
                    nonce: nonce.map(str::to_owned),
                    at_hash: tokens::at_hash(&access_token),
                    name: user.filter(|_| grant.scope.iter().any(|s| s == "profile")).map(|u| u.name.clone()),
                    email: user.filter(|_| grant.scope.iter().any(|s| s == "email")).map(|u| u.email.clone()),
                    preferred_username: user
                        .filter(|_| grant.scope.iter().any(|s| s == "profile"))
                        .map(|u| u.username.clone()),
                    handle: user
                        .filter(|u| !u.handle.is_empty() && !u.domain.is_empty())
                        .map(|u| format!("wireapp://%40{}@{}", u.handle, u.domain)),
                    amr: claims::AMR.iter().map(|m| (*m).to_owned()).collect(),
                    keyauth: claims::echoed(requested, "keyauth"),
                    acme_aud: claims::echoed(requested, "acme_aud"),
                };
                Some(self.keys.current().sign("JWT", &id)?)
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
}
