//! What resource requests and token holders call: verify a request (Bearer or DPoP),
//! introspection (RFC 7662), revocation (RFC 7009), userinfo (OIDC Core §5.3).

use super::*;
use crate::model::oauth::ResourceChallenge;

impl AuthServer {
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
        let fail = |scheme: &str, code: &'static str, detail: String, nonce: Option<String>| OAuthError::Resource {
            code,
            challenge: if scheme == "DPoP" {
                ResourceChallenge::Dpop { error: code }
            } else {
                ResourceChallenge::Bearer { error: code }
            },
            detail,
            status: 401,
            nonce,
        };
        let Some(header) = authorization else {
            return Err(OAuthError::Resource {
                code: "invalid_token",
                detail: "an access token is required".into(),
                status: 401,
                challenge: ResourceChallenge::Any,
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

    /// Verifies an access token for idca's own resources (RFC 6750): signature by a
    /// published key, `typ` at+jwt, issuer, audience, expiry, and a live grant.
    pub async fn verify_access_token(&self, token: &str, now: UnixTime) -> Result<AccessTokenClaims, OAuthError> {
        let claims: AccessTokenClaims = self.verify_token(token, AT_JWT, now).await?;
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
                .current()
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
    pub async fn verify_own_token(
        &self,
        token: &str,
        typ: &str,
        now: UnixTime,
    ) -> Result<serde_json::Value, OAuthError> {
        self.verify_token(token, typ, now).await
    }

    /// Verifies a token signed by one of the keys; one naming a key not loaded yet
    /// (another instance rotated) reloads the keys first, at most once a second.
    async fn verify_token<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        now: UnixTime,
    ) -> Result<T, OAuthError> {
        let keys = self.keys.current();
        match keys.verify(token, typ) {
            Err(e) if keys.names_unknown_key(token) && self.keys.may_reload(now) => {
                self.reload_keys().await?;
                self.keys.current().verify(token, typ).map_err(|_| e)
            }
            r => r,
        }
    }

    /// Loads the signing keys from the store again (after a rotation elsewhere).
    pub async fn reload_keys(&self) -> Result<(), OAuthError> {
        let stored = self.store.oauth_keys().await?;
        self.keys.replace(Keys::load(&stored, self.json_depth)?);
        Ok(())
    }
}
