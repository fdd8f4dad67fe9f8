//! Consent remembered, and the page a signed-in user takes it back on: a user who
//! approved a client is not asked again for the same or fewer scopes while that grant
//! lives (`prompt=consent` still asks, OIDC Core §3.1.2.1); the account page lists the
//! user's grants and revokes each (its refresh and access tokens stop at once).

use super::*;

/// One grant as the account page shows it.
#[derive(Debug, Clone)]
pub struct GrantView {
    pub id: String,
    pub client_name: String,
    pub scope: Vec<String>,
    pub created: UnixTime,
}

/// The account page's content.
#[derive(Debug, Clone)]
pub struct AccountPage {
    pub user: String,
    /// Bound to the session: the revoke forms echo it.
    pub csrf: String,
    pub grants: Vec<GrantView>,
}

/// What the account page shows or did.
#[derive(Debug)]
pub enum AccountOutcome {
    /// No live session.
    SignedOut,
    Page(AccountPage),
    /// A grant was revoked: back to the page (303).
    Revoked,
    /// A forged or stale form (403).
    Forbidden,
}

/// The revoke form (fields of the page `http::oauth` renders).
#[derive(Debug, Clone, Deserialize)]
pub struct RevokeGrantForm {
    pub grant: String,
    pub csrf: String,
}

impl AuthServer {
    fn account_csrf(session: &str) -> String {
        SecretHash::of(&format!("account\u{0}{session}")).0
    }

    /// Whether `sub` already approved `client_id` for all of `scope`: a live grant from a
    /// user's authorization (not client credentials) with those scopes or more.
    pub(super) async fn remembered_consent(
        &self,
        sub: &str,
        client_id: &str,
        scope: &[String],
    ) -> Result<bool, OAuthError> {
        let grants = self.store.user_grants(sub).await?;
        Ok(grants
            .iter()
            .any(|g| g.client_id == client_id && g.auth_time.is_some() && scope.iter().all(|s| g.scope.contains(s))))
    }

    /// The account page for the browser's session.
    pub async fn account(&self, session: Option<&str>, now: UnixTime) -> Result<AccountOutcome, OAuthError> {
        let (Some(id), Some(s)) = (session, self.live_session(session, now).await?) else {
            return Ok(AccountOutcome::SignedOut);
        };
        let mut grants = Vec::new();
        for g in self.store.user_grants(&s.sub).await?.into_iter().filter(|g| g.auth_time.is_some()) {
            let client_name = match self.client(&g.client_id).await? {
                Some(c) => c.name,
                None => g.client_id.clone(),
            };
            grants.push(GrantView { id: g.id, client_name, scope: g.scope, created: g.created });
        }
        Ok(AccountOutcome::Page(AccountPage { user: s.sub, csrf: Self::account_csrf(id), grants }))
    }

    /// Revokes one of the session's user's grants: the CSRF token must be the session's
    /// (constant-time), the grant the user's; its refresh tokens and access tokens are
    /// refused from then on (at idca's resources and in introspection).
    pub async fn revoke_user_grant(
        &self,
        form: &RevokeGrantForm,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<AccountOutcome, OAuthError> {
        let (Some(id), Some(s)) = (session, self.live_session(session, now).await?) else {
            return Ok(AccountOutcome::SignedOut);
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), Self::account_csrf(id).as_bytes()) {
            return Ok(AccountOutcome::Forbidden);
        }
        match self.store.grant(&form.grant).await {
            Ok(g) if g.sub == s.sub && g.auth_time.is_some() => {
                self.store.revoke_grant(&g.id).await?;
                tracing::info!(grant = %g.id, client_id = %g.client_id, "grant revoked by its user");
                Ok(AccountOutcome::Revoked)
            }
            Ok(_) | Err(StoreError::NotFound) => Ok(AccountOutcome::Forbidden),
            Err(e) => Err(e.into()),
        }
    }
}
