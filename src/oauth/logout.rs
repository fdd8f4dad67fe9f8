//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the end-session
//! endpoint ends the browser's session and, when asked, sends it back to the client.

use serde::Deserialize;

use super::{AuthServer, OAuthError, with_query};
use crate::clock::UnixTime;
use crate::model::oauth::{SecretHash, Session};
use crate::store::StoreError;

/// The end-session request's parameters (§2), by GET or by form POST.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LogoutParams {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    /// The confirmation page's CSRF token (a POST from that page).
    pub csrf: Option<String>,
}

/// What the end-session endpoint leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum LogoutOutcome {
    /// A request that cannot be honoured (a bad hint, an unregistered return address):
    /// shown, and nothing ends.
    ErrorPage { status: u16, message: String },
    /// No `id_token_hint`: the user confirms on a page first (§2, logout CSRF).
    Confirm { params: LogoutParams, csrf: String },
    /// The session is over; back to the client at `redirect` (with `state`), or a page.
    SignedOut { redirect: Option<String> },
}

impl AuthServer {
    /// The confirmation page's CSRF token: bound to the browser's session, so another
    /// site cannot sign a user out (it does not know the session cookie).
    fn logout_csrf(session: &str) -> String {
        SecretHash::of(&format!("logout\u{0}{session}")).0
    }

    /// The end-session endpoint, in order:
    /// 1. an `id_token_hint` must be an id_token this server signed (expired is fine,
    ///    §2); its `aud` names the client, and a `client_id` sent beside it must agree;
    /// 2. a `post_logout_redirect_uri` needs that client, and must be one it registered,
    ///    exactly (§3.1); otherwise nothing is redirected or ended;
    /// 3. without a hint, the user confirms first (unless the form's CSRF token, bound to
    ///    the session, says they did);
    /// 4. the session ends; back to the client with `state`, or a signed-out page.
    pub async fn logout(
        &self,
        p: &LogoutParams,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<LogoutOutcome, OAuthError> {
        let page = |status: u16, message: &str| Ok(LogoutOutcome::ErrorPage { status, message: message.to_owned() });
        // 1.
        let hinted = match &p.id_token_hint {
            Some(hint) => match self.verify_own_token(hint, "JWT", now).await {
                Ok(claims) if claims.get("iss").and_then(|i| i.as_str()) == Some(self.issuer.as_str()) => {
                    claims.get("aud").and_then(|a| a.as_str()).map(str::to_owned)
                }
                Ok(_) | Err(OAuthError::InvalidToken(_)) => {
                    return page(400, "The id_token_hint was not issued by this server.");
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        if let (Some(aud), Some(id)) = (&hinted, &p.client_id)
            && aud != id
        {
            return page(400, "The client_id does not match the id_token_hint.");
        }
        // 2.
        let redirect = match &p.post_logout_redirect_uri {
            Some(uri) => {
                let Some(id) = hinted.as_ref().or(p.client_id.as_ref()) else {
                    return page(400, "A post_logout_redirect_uri needs an id_token_hint or a client_id.");
                };
                match self.client(id).await? {
                    Some(c) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => {
                        let mut params = Vec::new();
                        if let Some(s) = &p.state {
                            params.push(("state", s.as_str()));
                        }
                        Some(with_query(uri, &params))
                    }
                    _ => return page(400, "This post_logout_redirect_uri is not registered for the client."),
                }
            }
            None => None,
        };
        // 3.
        let confirmed = match (&p.csrf, session) {
            (Some(csrf), Some(s)) => crate::jose::ct_eq(csrf.as_bytes(), Self::logout_csrf(s).as_bytes()),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if hinted.is_none() && !confirmed {
            if p.csrf.is_some() {
                return page(403, "The form was not sent by this page.");
            }
            if let Some(s) = session {
                return Ok(LogoutOutcome::Confirm { params: p.clone(), csrf: Self::logout_csrf(s) });
            }
        }
        // 4.
        if let Some(id) = session {
            let hash = SecretHash::of(id);
            match self.store.session(&hash).await {
                Ok(s) => {
                    let ended = Session { expires: now, ..s };
                    self.store.put_session(&hash, &ended).await?;
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(LogoutOutcome::SignedOut { redirect })
    }
}
