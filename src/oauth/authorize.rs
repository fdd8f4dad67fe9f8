//! The authorization endpoint, the login and consent forms (RFC 6749 §4.1, OIDC Core
//! §3.1.2): from a request to a code, through a session, a login or a consent.

use super::*;
use crate::clock;

pub(super) fn consent_page(request: String, p: &PendingAuthorization, client: &Client) -> ConsentPage {
    ConsentPage {
        request,
        csrf: p.csrf.clone(),
        client_name: client.name.clone(),
        redirect_uri: p.redirect_uri.clone(),
        scope: p.scope.clone(),
        third_party: client.dynamic,
    }
}

/// The `prompt` parameter (OIDC Core §3.1.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Prompt {
    /// Show no page: answer at once, or with an error.
    none: bool,
    /// Log in again even with a live session (`login`, and `select_account`, which with
    /// one account per browser session means the same).
    login: bool,
    /// Ask for consent even where it is not otherwise asked.
    consent: bool,
}

impl Prompt {
    pub(super) fn parse(s: Option<&str>) -> Result<Self, OAuthError> {
        let mut p = Self::default();
        for v in s.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
            match v {
                "none" => p.none = true,
                "login" | "select_account" => p.login = true,
                "consent" => p.consent = true,
                _ => return Err(OAuthError::InvalidRequest("prompt holds an unsupported value".into())),
            }
        }
        if p.none && (p.login || p.consent) {
            return Err(OAuthError::InvalidRequest("prompt=none cannot be combined with other values".into()));
        }
        Ok(p)
    }
}

/// An authorization request that passed steps 2 to 5 of [`AuthServer::authorize`].
pub(super) struct CheckedRequest {
    scope: Vec<String>,
    code_challenge: Option<String>,
    id_token_claims: std::collections::BTreeMap<String, serde_json::Value>,
    prompt: Prompt,
    max_age: Option<i64>,
}

impl AuthServer {
    /// The authorization endpoint (RFC 6749 §4.1.1), in order:
    /// 0. a `request_uri` stands for the parameters pushed for it (RFC 9126 §4), and a
    ///    client that must use PAR gets `invalid_request` without one (after step 1);
    /// 1. an unknown client or a redirect URI that is not registered for it is shown as
    ///    an error page, never redirected (§4.1.2.1, RFC 9700 §4.1);
    /// 2. `response_type` must be `code`;
    /// 3. `scope` must be non-empty and allowed for the client;
    /// 4. PKCE (RFC 7636): S256 only; required from public clients, and from all when
    ///    `oauth.require_pkce`;
    /// 5. `prompt` and `max_age` (OIDC Core §3.1.2.1): `prompt=login`, `max_age=0` or a
    ///    session older than `max_age` need a fresh login; `prompt=consent`, and
    ///    dynamically registered clients the user has no live grant for these scopes
    ///    with, need consent; `prompt=none` shows no page and
    ///    answers `login_required` or `consent_required` instead;
    /// 6. with a usable session (and no consent to ask) a code is issued at once, else
    ///    the request is kept and the login (or consent) page shown, at most
    ///    `limits.login_pages_per_minute_per_address` a minute per address (past it the
    ///    client gets `temporarily_unavailable`, RFC 6749 §4.1.2.1).
    pub async fn authorize(
        &self,
        p: &AuthorizeParams,
        session: Option<&str>,
        from: IpAddr,
        now: UnixTime,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        // 0. (RFC 9126 §4)
        let (p, pushed) = match self.pushed_parameters(p, now).await? {
            Ok(found) => found,
            Err(message) => return Ok(AuthorizeOutcome::ErrorPage { status: 400, message: message.to_owned() }),
        };
        let p = &p;
        // 1.
        let (client, redirect_uri) = match self.client_and_redirect_uri(p).await? {
            Ok(found) => found,
            Err(message) => return Ok(AuthorizeOutcome::ErrorPage { status: 400, message: message.to_owned() }),
        };
        let state = p.state.clone();
        let form_post = p.response_mode.as_deref() == Some("form_post");
        let error_redirect = |e: OAuthError| {
            let description = e.description();
            let params = [("error", e.code()), ("error_description", description.as_str())];
            let url = self.redirect_to_client(&redirect_uri, &params, state.as_deref());
            Ok(AuthorizeOutcome::Redirect { url, session: None, form_post })
        };
        if let Err(e) = self.check_response_mode(p) {
            return error_redirect(e);
        }
        if !pushed && self.requires_par(&client) {
            return error_redirect(OAuthError::InvalidRequest(
                "this client must push its authorization requests (RFC 9126 PAR) first".into(),
            ));
        }
        let CheckedRequest { scope, code_challenge, id_token_claims, prompt, max_age } =
            match self.check_request(p, &client) {
                Ok(checked) => checked,
                Err(e) => return error_redirect(e),
            };
        let session = self
            .live_session(session, now)
            .await?
            .filter(|s| !prompt.login && max_age.is_none_or(|m| m > 0 && now - s.auth_time <= m));
        // Consent: asked of third-party clients unless a live grant already covers these
        // scopes (for a user known only after login, `login` decides), always with
        // `prompt=consent`.
        let remembered = match &session {
            Some(s) if client.dynamic && !prompt.consent => {
                self.remembered_consent(&s.sub, &client.client_id, &scope).await?
            }
            _ => false,
        };
        let consent = prompt.consent || (client.dynamic && !remembered);
        if prompt.none {
            let (code, detail) = match &session {
                None => ("login_required", "the user must log in"),
                Some(_) if consent => ("consent_required", "the user must consent to this client"),
                Some(_) => ("", ""),
            };
            if !code.is_empty() {
                return error_redirect(OAuthError::PromptNone { code, detail: detail.into() });
            }
        }
        // A page shown keeps the request in the store: limited per address.
        if (session.is_none() || consent)
            && let Err(e) = self.take_rate(Rate::LoginPage, &crate::model::address_group(from)).await
        {
            return error_redirect(e);
        }
        let pending = PendingAuthorization {
            client_id: client.client_id.clone(),
            redirect_uri,
            scope,
            state,
            nonce: p.nonce.clone(),
            code_challenge,
            id_token_claims,
            dpop_jkt: p.dpop_jkt.clone(),
            csrf: random_token(),
            redirect_uri_sent: p.redirect_uri.is_some(),
            consent,
            consent_prompted: prompt.consent,
            form_post,
            expires: clock::after(now, self.config.login_page_lifetime_secs),
        };
        // 6.
        if let Some(s) = session {
            if consent {
                let request = random_token();
                self.store.put_pending_authorization(&request, &pending).await?;
                return Ok(AuthorizeOutcome::Consent { page: consent_page(request, &pending, &client), session: None });
            }
            let url = self.issue_code(&pending, &s.sub, s.auth_time, now).await?;
            return Ok(AuthorizeOutcome::Redirect { url, session: None, form_post });
        }
        let request = random_token();
        self.store.put_pending_authorization(&request, &pending).await?;
        Ok(AuthorizeOutcome::Login(LoginPage {
            request,
            csrf: pending.csrf,
            client_name: client.name.clone(),
            scope: pending.scope,
            username: String::new(),
            error: None,
            retry_after: None,
        }))
    }

    /// Step 1 of [`AuthServer::authorize`]: the client and the redirect URI to answer
    /// at, or the message of the error page to show instead (never a redirect).
    pub(super) async fn client_and_redirect_uri(
        &self,
        p: &AuthorizeParams,
    ) -> Result<Result<(Client, String), &'static str>, OAuthError> {
        let client = match &p.client_id {
            Some(id) => self.client(id).await?,
            None => None,
        };
        let Some(client) = client else {
            return Ok(Err("Unknown client. Check the client_id the application sent."));
        };
        let redirect_uri = match (&p.redirect_uri, client.redirect_uris.as_slice()) {
            (Some(uri), _) if client.matches_redirect_uri(uri) => uri.clone(),
            (None, [only]) => only.clone(),
            _ => return Ok(Err("The redirect URI is not registered for this client.")),
        };
        // Records written before the RFC 3986 check: never a redirect to what would not
        // make a valid `Location`.
        if crate::config::check_redirect_uri(&redirect_uri).is_err() {
            return Ok(Err(
                "The redirect URI registered for this client is not valid. Ask its developer to register it again.",
            ));
        }
        Ok(Ok((client, redirect_uri)))
    }

    /// `response_mode`: `query` (the default) or `form_post`.
    pub(super) fn check_response_mode(&self, p: &AuthorizeParams) -> Result<(), OAuthError> {
        match p.response_mode.as_deref() {
            None | Some("query" | "form_post") => Ok(()),
            Some(mode) => {
                Err(OAuthError::InvalidRequest(format!("response_mode `{mode}` is not supported (query, form_post)")))
            }
        }
    }

    /// The browser session named by the cookie, if it exists and has not expired.
    pub(super) async fn live_session(&self, id: Option<&str>, now: UnixTime) -> Result<Option<Session>, OAuthError> {
        let Some(id) = id else { return Ok(None) };
        match self.store.session(&SecretHash::of(id)).await {
            Ok(s) if s.expires > now => Ok(Some(s)),
            Ok(_) | Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Steps 2 to 5 of [`AuthServer::authorize`] for a known client and redirect URI:
    /// what the request asks for, or the error to redirect back with.
    pub(super) fn check_request(&self, p: &AuthorizeParams, client: &Client) -> Result<CheckedRequest, OAuthError> {
        // 2.
        if p.response_type.as_deref() != Some("code") {
            return Err(OAuthError::UnsupportedResponseType("response_type must be code".into()));
        }
        // 3.
        let scope = scopes(p.scope.as_deref().unwrap_or(""));
        if scope.is_empty() {
            return Err(OAuthError::InvalidScope("scope is required".into()));
        }
        if let Some(s) = scope.iter().find(|s| !client.scopes.contains(s)) {
            return Err(OAuthError::InvalidScope(format!("scope `{s}` is not allowed for this client")));
        }
        // 4.
        let code_challenge = match &p.code_challenge {
            Some(c) => {
                pkce::check_challenge(c, p.code_challenge_method.as_deref())?;
                Some(c.clone())
            }
            None if client.is_public() || self.config.require_pkce => {
                return Err(OAuthError::InvalidRequest("PKCE is required: send code_challenge (S256)".into()));
            }
            None => None,
        };
        let id_token_claims = p.claims.as_deref().map(claims::requested_claims).transpose()?.unwrap_or_default();
        if p.dpop_jkt.as_deref().is_some_and(|j| j.len() != 43 || crate::jose::b64_decode(j).is_err()) {
            return Err(OAuthError::InvalidRequest("dpop_jkt must be a base64url SHA-256 thumbprint".into()));
        }
        // 5.
        let prompt = Prompt::parse(p.prompt.as_deref())?;
        let max_age = match p.max_age.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(m)) if m >= 0 => Some(m),
            Some(_) => {
                return Err(OAuthError::InvalidRequest("max_age must be a non-negative integer".into()));
            }
        };
        Ok(CheckedRequest { scope, code_challenge, id_token_claims, prompt, max_age })
    }

    /// Issues a code for a completed authorization and returns the redirect URL with
    /// `code`, `state` and `iss` (RFC 9207).
    pub(super) async fn issue_code(
        &self,
        p: &PendingAuthorization,
        sub: &str,
        auth_time: UnixTime,
        now: UnixTime,
    ) -> Result<String, OAuthError> {
        let code = format!("{}{}", random_token(), random_token());
        let record = AuthorizationCode {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            redirect_uri_sent: p.redirect_uri_sent,
            code_challenge: p.code_challenge.clone(),
            scope: p.scope.clone(),
            nonce: p.nonce.clone(),
            id_token_claims: p.id_token_claims.clone(),
            dpop_jkt: p.dpop_jkt.clone(),
            sub: sub.to_owned(),
            auth_time,
            expires: clock::after(now, self.config.code_lifetime_secs),
            redeemed: None,
        };
        self.store.put_code(&SecretHash::of(&code), &record).await?;
        Ok(self.redirect_to_client(&p.redirect_uri, &[("code", code.as_str())], p.state.as_deref()))
    }

    /// The redirect back to the client: `params`, then the request's `state` (RFC 6749
    /// §4.1.2) and `iss` (RFC 9207 §2).
    fn redirect_to_client(&self, redirect_uri: &str, params: &[(&str, &str)], state: Option<&str>) -> String {
        let mut all = params.to_vec();
        if let Some(s) = state {
            all.push(("state", s));
        }
        all.push(("iss", &self.issuer));
        with_query(redirect_uri, &all)
    }

    /// The login form (a POST from the page): the request must be live and the CSRF
    /// token must match, both in the form and in the cookie the login page set in this
    /// browser (`browser`), so that another site cannot log a victim's browser in to the
    /// attacker's account (login CSRF, RFC 9700 §4.7); a locked-out user/address pair is
    /// refused without checking the password; success opens a session and issues the
    /// code.
    pub async fn login(
        &self,
        form: &LoginForm,
        browser: Option<&str>,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        let expired = || AuthorizeOutcome::ErrorPage {
            status: 400,
            message: "This login request is unknown or has expired. Start again from the application.".into(),
        };
        let pending = match self.store.pending_authorization(&form.request).await {
            Ok(p) if p.expires > now => p,
            Ok(_) | Err(StoreError::NotFound) => return Ok(expired()),
            Err(e) => return Err(e.into()),
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), pending.csrf.as_bytes()) {
            return Ok(AuthorizeOutcome::ErrorPage {
                status: 403,
                message: "The form was not sent by this page.".into(),
            });
        }
        if !browser.is_some_and(|b| crate::jose::ct_eq(b.as_bytes(), pending.csrf.as_bytes())) {
            return Ok(AuthorizeOutcome::ErrorPage {
                status: 403,
                message: "This login form was not opened in this browser, or its cookie was blocked. Start again \
                          from the application."
                    .into(),
            });
        }
        let client_name = self.client(&pending.client_id).await?.map(|c| c.name).unwrap_or_default();
        let again = |error: String, retry_after: Option<i64>| {
            let client_name = client_name.clone();
            AuthorizeOutcome::Login(LoginPage {
                request: form.request.clone(),
                csrf: pending.csrf.clone(),
                client_name,
                scope: pending.scope.clone(),
                username: form.username.clone(),
                error: Some(error),
                retry_after,
            })
        };
        if let Err(wait) = self.limiter.begin(self.store.as_ref(), &form.username, ip, now).await? {
            return Ok(again(format!("Too many failed attempts. Try again in {wait} seconds."), Some(wait)));
        }
        let Some(user) = login::check_credentials(&self.users, &form.username, &form.password).await else {
            self.limiter.end(self.store.as_ref(), &form.username, ip, now, Attempt::Failed).await;
            // Only a configured user's name is logged: what was typed for an unknown one
            // may be a password entered in the wrong field, or text made to forge log
            // lines (a field's newlines are not escaped by the log format).
            match self.users.iter().find(|u| u.username == form.username) {
                Some(u) => tracing::info!(username = ?u.username, "login failed"),
                None => tracing::info!("login failed for an unknown user name"),
            }
            return Ok(again("Wrong user name or password.".into(), None));
        };
        self.limiter.end(self.store.as_ref(), &form.username, ip, now, Attempt::Succeeded).await;
        let session_id = format!("{}{}", random_token(), random_token());
        let lifetime = clock::span(self.config.session_lifetime_secs);
        let session = Session { sub: user.username.clone(), auth_time: now, expires: now + lifetime };
        let client = self.client(&pending.client_id).await?;
        let ask = (client.as_ref().is_some_and(|c| c.dynamic) || pending.consent)
            && (pending.consent_prompted
                || !self.remembered_consent(&user.username, &pending.client_id, &pending.scope).await?);
        if let Some(client) = client.filter(|_| ask) {
            // A third-party client: the user consents on the next page, which the same
            // pending request (and its CSRF token) carries.
            self.store.put_session(&SecretHash::of(&session_id), &session).await?;
            return Ok(AuthorizeOutcome::Consent {
                page: consent_page(form.request.clone(), &pending, &client),
                session: Some((session_id, lifetime)),
            });
        }
        // Single use: a second submission of the same form finds nothing.
        let pending = match self.store.take_pending_authorization(&form.request).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return Ok(expired()),
            Err(e) => return Err(e.into()),
        };
        self.store.put_session(&SecretHash::of(&session_id), &session).await?;
        let url = self.issue_code(&pending, &user.username, now, now).await?;
        Ok(AuthorizeOutcome::Redirect { url, session: Some((session_id, lifetime)), form_post: pending.form_post })
    }

    /// The consent form (for dynamically registered clients): a live session, a live
    /// request with a matching CSRF token, taken once; `allow` issues the code, `deny`
    /// returns `access_denied` to the client.
    pub async fn consent(
        &self,
        form: &ConsentForm,
        session: Option<&str>,
        now: UnixTime,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        let page = |status: u16, message: &str| Ok(AuthorizeOutcome::ErrorPage { status, message: message.to_owned() });
        let session = match session {
            Some(id) => match self.store.session(&SecretHash::of(id)).await {
                Ok(s) if s.expires > now => s,
                Ok(_) | Err(StoreError::NotFound) => {
                    return page(401, "Your session has ended. Start again from the application.");
                }
                Err(e) => return Err(e.into()),
            },
            None => return page(401, "Your session has ended. Start again from the application."),
        };
        let pending = match self.store.pending_authorization(&form.request).await {
            Ok(p) if p.expires > now => p,
            Ok(_) | Err(StoreError::NotFound) => {
                return page(400, "This request is unknown or has expired. Start again from the application.");
            }
            Err(e) => return Err(e.into()),
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), pending.csrf.as_bytes()) {
            return page(403, "The form was not sent by this page.");
        }
        let pending = match self.store.take_pending_authorization(&form.request).await {
            Ok(p) => p,
            Err(StoreError::NotFound) => return page(400, "This request was already answered."),
            Err(e) => return Err(e.into()),
        };
        match form.action.as_str() {
            "allow" => {
                let url = self.issue_code(&pending, &session.sub, session.auth_time, now).await?;
                Ok(AuthorizeOutcome::Redirect { url, session: None, form_post: pending.form_post })
            }
            _ => {
                let params = [("error", "access_denied"), ("error_description", "the user denied the request")];
                let url = self.redirect_to_client(&pending.redirect_uri, &params, pending.state.as_deref());
                Ok(AuthorizeOutcome::Redirect { url, session: None, form_post: pending.form_post })
            }
        }
    }
}
