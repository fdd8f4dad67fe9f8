//! Consent remembered, and the page a signed-in user takes it back on: a user who
//! approved a client is not asked again for the same or fewer scopes while that grant
//! lives (`prompt=consent` still asks, OIDC Core §3.1.2.1); the account page lists the
//! user's grants, browser sessions and devices, and takes back each: a grant's refresh
//! and access tokens stop at once, a session ends, a device is removed.

use super::*;

/// One grant as the account page shows it.
#[derive(Debug, Clone)]
pub struct GrantView {
    pub id: String,
    pub client_name: String,
    pub scope: Vec<String>,
    pub created: UnixTime,
}

/// One browser session as the account page shows it (`id`: the hash of its cookie).
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: String,
    pub auth_time: UnixTime,
    pub expires: UnixTime,
    /// The session of the browser looking at the page.
    pub current: bool,
}

/// The account page's content.
#[derive(Debug, Clone)]
pub struct AccountPage {
    pub user: String,
    /// Bound to the session: the revoke forms echo it.
    pub csrf: String,
    pub grants: Vec<GrantView>,
    pub sessions: Vec<SessionView>,
    pub devices: Vec<crate::model::oauth::Device>,
}

/// What the account page shows or did.
#[derive(Debug)]
pub enum AccountOutcome {
    /// No live session.
    SignedOut,
    Page(AccountPage),
    /// Something was taken back: back to the page (303).
    Revoked,
    /// A forged or stale form (403).
    Forbidden,
}

/// A revoke form of the account page (fields of the page `http::oauth` renders): one of
/// a grant, a session (its hash) or a device.
#[derive(Debug, Clone, Deserialize)]
pub struct AccountForm {
    pub grant: Option<String>,
    pub session: Option<String>,
    pub device: Option<String>,
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
        let current = SecretHash::of(id);
        let sessions = self
            .store
            .user_sessions(&s.sub, now)
            .await?
            .into_iter()
            .map(|(hash, live)| SessionView {
                current: hash == current,
                id: hash.0,
                auth_time: live.auth_time,
                expires: live.expires,
            })
            .collect();
        let devices = self.store.user_devices(&s.sub).await?;
        Ok(AccountOutcome::Page(AccountPage { user: s.sub, csrf: Self::account_csrf(id), grants, sessions, devices }))
    }

    /// Takes back one of the signed-in user's grants, sessions or devices: the CSRF token
    /// must be the session's (constant-time) and the thing the user's. A revoked grant's
    /// refresh and access tokens are refused from then on (at idca's resources and in
    /// introspection); an ended session signs that browser out; a removed device gets no
    /// more nonces or tokens.
    pub async fn account_revoke(
        &self,
        form: &AccountForm,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<AccountOutcome, OAuthError> {
        let (Some(id), Some(s)) = (session, self.live_session(session, now).await?) else {
            return Ok(AccountOutcome::SignedOut);
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), Self::account_csrf(id).as_bytes()) {
            return Ok(AccountOutcome::Forbidden);
        }
        let found = match (&form.grant, &form.session, &form.device) {
            (Some(grant), None, None) => match self.store.grant(grant).await {
                Ok(g) if g.sub == s.sub && g.auth_time.is_some() => {
                    self.store.revoke_grant(&g.id).await?;
                    tracing::info!(grant = %g.id, client_id = %g.client_id, "grant revoked by its user");
                    true
                }
                Ok(_) | Err(StoreError::NotFound) => false,
                Err(e) => return Err(e.into()),
            },
            (None, Some(hash), None) => {
                let hash = SecretHash(hash.clone());
                match self.store.session(&hash).await {
                    Ok(other) if other.sub == s.sub => {
                        self.store.put_session(&hash, &Session { expires: now, ..other }).await?;
                        true
                    }
                    Ok(_) | Err(StoreError::NotFound) => false,
                    Err(e) => return Err(e.into()),
                }
            }
            (None, None, Some(device)) => match self.store.device(device).await {
                Ok(d) if d.user == s.sub => {
                    match self.store.delete_device(&d.id).await {
                        Ok(()) | Err(StoreError::NotFound) => {}
                        Err(e) => return Err(e.into()),
                    }
                    tracing::info!(device = %d.id, "device removed by its user");
                    true
                }
                Ok(_) | Err(StoreError::NotFound) => false,
                Err(e) => return Err(e.into()),
            },
            _ => false,
        };
        Ok(if found { AccountOutcome::Revoked } else { AccountOutcome::Forbidden })
    }
}
