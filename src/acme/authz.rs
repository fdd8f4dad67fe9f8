//! Authorizations and challenges (RFC 8555 §7.5): fetching and deactivating an
//! authorization, answering a challenge, Wire's identity challenges.

use super::*;
use crate::clock;

impl Acme {
    /// An authorization (§7.5), fetched with POST-as-GET, or deactivated (§7.5.2).
    pub async fn authorization(
        &self,
        req: SignedRequest,
        id: &AuthzId,
        now: UnixTime,
    ) -> Result<Reply<wire::Authorization>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let mut authz = found(self.store.authorization(id).await, "authorization")?;
        owned_by(&authz.value.account, &v, "authorization")?;
        if !v.is_post_as_get() {
            let p: wire::AuthzUpdatePayload = v.json()?;
            match p.status.as_deref() {
                Some("deactivated") => {
                    let status = authz_status(&authz.value, now);
                    if !matches!(status, AuthzStatus::Pending | AuthzStatus::Valid) {
                        return Err(AcmeError::Malformed(
                            format!("a {status:?} authorization cannot be deactivated").to_lowercase(),
                        ));
                    }
                    authz.value.status = AuthzStatus::Deactivated;
                    found(self.store.update_authorization(&authz.value, authz.version).await, "authorization")?;
                }
                _ => {
                    return Err(AcmeError::Malformed("the only update is {\"status\": \"deactivated\"}".into()));
                }
            }
        }
        let processing = authz.value.challenges.iter().any(|c| c.status == ChallengeStatus::Processing);
        let mut reply = Reply::ok(self.authz_json(&authz.value, now));
        if processing {
            reply.retry_after = Some(self.config.retry_after_secs);
        }
        Ok(reply)
    }

    pub(super) fn authz_json(&self, a: &Authorization, now: UnixTime) -> wire::Authorization {
        let status = authz_status(a, now);
        // Once decided, show only the challenge that decided it (as Pebble and Boulder do).
        let shown: Vec<&Challenge> = if status == AuthzStatus::Valid {
            a.challenges.iter().filter(|c| c.status == ChallengeStatus::Valid).collect()
        } else {
            a.challenges.iter().collect()
        };
        wire::Authorization {
            identifier: crate::model::Identifier {
                kind: a.identifier.kind,
                value: a.identifier.value.trim_start_matches("*.").to_owned(),
            },
            status,
            expires: rfc3339(a.expires),
            challenges: shown.into_iter().map(|c| self.challenge_json(&a.id, c)).collect(),
            wildcard: a.wildcard,
        }
    }

    pub(super) fn challenge_json(&self, authz: &AuthzId, c: &Challenge) -> wire::Challenge {
        wire::Challenge {
            kind: c.kind.as_str(),
            url: self.links.challenge(authz, &c.id),
            status: c.status,
            token: c.token.clone(),
            validated: c.validated.map(rfc3339),
            error: c.error.clone(),
            target: c.target.clone(),
        }
    }

    /// A challenge (§7.5.1): POST-as-GET fetches it, `{}` asks the server to validate.
    /// The challenge is `processing` (durably) before this returns; validation runs in
    /// the background.
    pub async fn challenge(
        &self,
        req: SignedRequest,
        authz_id: &AuthzId,
        id: &ChallengeId,
        now: UnixTime,
    ) -> Result<Reply<wire::Challenge>, AcmeError> {
        let v = self.verify(&req, KeyRule::Kid).await?;
        let mut authz = found(self.store.authorization(authz_id).await, "challenge")?;
        owned_by(&authz.value.account, &v, "challenge")?;
        let idx = authz.value.challenges.iter().position(|c| &c.id == id).ok_or_else(|| not_found("challenge"))?;
        let identity_kind = authz
            .value
            .challenges
            .get(idx)
            .is_some_and(|c| matches!(c.kind, ChallengeType::WireDpop01 | ChallengeType::WireOidc01));
        if !v.is_post_as_get() && identity_kind {
            let body: serde_json::Map<String, serde_json::Value> = v.json()?;
            let pending = authz_status(&authz.value, now) == AuthzStatus::Pending;
            let challenge_pending =
                authz.value.challenges.get(idx).is_some_and(|c| c.status == ChallengeStatus::Pending);
            if pending && challenge_pending {
                // Identity challenges are decided now: Wire clients expect the answer to
                // the POST to be `valid` already.
                let outcome = self.check_identity_challenge(&authz.value, idx, &body, &v, now).await?;
                worker::record_outcome(
                    &mut authz.value,
                    id,
                    &outcome,
                    now,
                    clock::span(self.config.valid_authz_lifetime_secs),
                );
                match self.store.update_authorization(&authz.value, authz.version).await {
                    Ok(version) => {
                        authz.version = version;
                        if let Some(c) = authz.value.challenges.get(idx) {
                            self.metrics.validation(c.kind.as_str(), outcome.is_ok());
                        }
                    }
                    Err(StoreError::Conflict) => authz = found(self.store.authorization(authz_id).await, "challenge")?,
                    Err(e) => return Err(e.into()),
                }
            }
        } else if !v.is_post_as_get() {
            let body: serde_json::Map<String, serde_json::Value> = v.json()?;
            // The legacy ACME v1 field is refused always, any other field in strict mode
            // (as Pebble does).
            if body.contains_key("keyAuthorization") || (self.config.strict && !body.is_empty()) {
                return Err(AcmeError::Malformed("a challenge is answered with an empty object {}".into()));
            }
            let pending = authz_status(&authz.value, now) == AuthzStatus::Pending;
            let challenge_pending =
                authz.value.challenges.get(idx).is_some_and(|c| c.status == ChallengeStatus::Pending);
            if pending && challenge_pending {
                if !self.queue.has_room() {
                    return Err(AcmeError::RateLimited {
                        detail: "too many validations are waiting (limits.queued_validations); retry shortly".into(),
                        retry_after: self.config.retry_after_secs.max(1),
                    });
                }
                if let Some(c) = authz.value.challenges.get_mut(idx) {
                    c.status = ChallengeStatus::Processing;
                }
                match self.store.update_authorization(&authz.value, authz.version).await {
                    Ok(version) => {
                        authz.version = version;
                        self.queue.push(authz_id.clone());
                    }
                    // Someone else moved it first; answer with what is stored now.
                    Err(StoreError::Conflict) => authz = found(self.store.authorization(authz_id).await, "challenge")?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let c = authz.value.challenges.get(idx).ok_or_else(|| not_found("challenge"))?;
        let mut reply = Reply::ok(self.challenge_json(authz_id, c)).link(self.links.authz(authz_id), "up");
        if c.status == ChallengeStatus::Processing {
            reply.retry_after = Some(self.config.retry_after_secs);
        }
        Ok(reply)
    }

    /// Checks the answer to a `wire-dpop-01` (`{"access_token"}`) or `wire-oidc-01`
    /// (`{"id_token"}`) challenge. A payload without the token is `malformed`; a token
    /// that does not bind is a failed validation (the challenge becomes invalid).
    pub(super) async fn check_identity_challenge(
        &self,
        authz: &Authorization,
        idx: usize,
        body: &serde_json::Map<String, serde_json::Value>,
        v: &Verified,
        now: UnixTime,
    ) -> Result<Result<(), crate::validate::ValidationError>, AcmeError> {
        let tokens = self
            .identity_tokens
            .as_ref()
            .ok_or_else(|| AcmeError::Malformed("identity challenges are not enabled on this server".into()))?;
        let c = authz.challenges.get(idx).ok_or_else(|| not_found("challenge"))?;
        let account = &v.account()?.value;
        let ident = identity::wire_identity(authz.identifier.kind, &authz.identifier.value)?;
        let target = c.target.clone().unwrap_or_default();
        let url = self.links.challenge(&authz.id, &c.id);
        let thumbprints: Vec<String> = account.key.thumbprints().into_iter().map(|j| j.0).collect();
        let key_authorizations: Vec<String> = thumbprints.iter().map(|t| format!("{}.{t}", c.token)).collect();
        let token = |field: &str| {
            body.get(field)
                .and_then(|t| t.as_str())
                .ok_or_else(|| AcmeError::Malformed(format!("the payload must be {{\"{field}\": \"…\"}}")))
        };
        Ok(match c.kind {
            ChallengeType::WireDpop01 => {
                crate::validate::check_wire_dpop(
                    tokens.as_ref(),
                    token("access_token")?,
                    &crate::validate::DpopChallenge {
                        target: &target,
                        url: &url,
                        token: &c.token,
                        account_jkt: &account.jkt.0,
                        account_thumbprints: &thumbprints,
                        client_id: ident.client_id.as_deref().unwrap_or_default(),
                        handle: &ident.handle,
                        name: &ident.name,
                        depth: self.json_depth,
                    },
                    now,
                )
                .await
            }
            _ => {
                crate::validate::check_wire_oidc(
                    tokens.as_ref(),
                    token("id_token")?,
                    &crate::validate::OidcChallenge {
                        issuer: &target,
                        url: &url,
                        key_authorizations: &key_authorizations,
                        handle: &ident.handle,
                        name: &ident.name,
                        claims: &self.identity_claims,
                    },
                    now,
                )
                .await
            }
        })
    }
}
