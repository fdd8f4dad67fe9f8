//! The device authorization grant (RFC 8628).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{AuthServer, ClientCredentials, OAuthError, TokenForm, TokenResponse, scopes};
use crate::clock::UnixTime;
use crate::model::oauth::{
    DeviceAuthorization, DeviceStatus, Grant, SecretHash, display_user_code, new_user_code, normalize_user_code,
};
use crate::model::random_token;
use crate::store::{Attempt, StoreError};

/// The device grant's `grant_type` (RFC 8628 §3.4).
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device authorization response (RFC 8628 §3.2). `interval` is always sent.
#[derive(Clone, Serialize)]
pub struct DeviceResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

impl std::fmt::Debug for DeviceResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceResponse([elided])")
    }
}

/// The confirmation form of the verification page.
#[derive(Clone, Deserialize)]
pub struct DeviceForm {
    pub user_code: String,
    pub csrf: String,
    pub username: String,
    pub password: String,
    /// `approve` or `deny`.
    pub action: String,
}

impl std::fmt::Debug for DeviceForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceForm").field("username", &self.username).field("action", &self.action).finish()
    }
}

/// What the verification page shows next.
#[derive(Debug, Clone)]
pub enum DeviceOutcome {
    /// Ask for the code (again).
    EnterCode { user_code: String, error: Option<String> },
    /// Show who asks for what, and ask for login and a decision (RFC 8628 §5.4).
    Confirm {
        user_code: String,
        csrf: String,
        client_name: String,
        scope: Vec<String>,
        username: String,
        error: Option<String>,
    },
    /// Decided.
    Done { approved: bool },
}

/// The name the wrong-user-code counter uses (it counts per address only).
const USER_CODE_KEY: &str = "";

impl AuthServer {
    /// The device authorization endpoint (RFC 8628 §3.1-3.2). `claims` is the OIDC
    /// `claims` parameter (Core §5.5), kept for the id_token as on the code flow. At most
    /// `limits.device_authorizations_per_minute_per_address` / `_per_client`.
    pub async fn device_authorization(
        &self,
        creds: &ClientCredentials,
        from: IpAddr,
        scope: Option<&str>,
        claims: Option<&str>,
        now: UnixTime,
    ) -> Result<DeviceResponse, OAuthError> {
        let client = self.authenticated_client(creds, from, now).await?;
        if !client.allows_grant(DEVICE_GRANT) {
            return Err(OAuthError::UnauthorizedClient("this client may not use the device grant".into()));
        }
        // RFC 8628 §5.4: each request stores a device code; one loop must not fill the store.
        self.take_rate(super::Rate::DeviceAuthorizationFrom, &crate::model::address_group(from)).await?;
        self.take_rate(super::Rate::DeviceAuthorizationBy, &client.client_id).await?;
        let scope = scopes(scope.unwrap_or(""));
        if scope.is_empty() {
            return Err(OAuthError::InvalidScope("scope is required".into()));
        }
        if let Some(s) = scope.iter().find(|s| !client.scopes.contains(s)) {
            return Err(OAuthError::InvalidScope(format!("scope `{s}` is not allowed for this client")));
        }
        let id_token_claims = claims.map(super::claims::requested_claims).transpose()?.unwrap_or_default();
        let device_code = format!("{}{}", random_token(), random_token());
        let hash = SecretHash::of(&device_code);
        let interval = self.config.device_poll_interval_secs.max(1);
        let lifetime = self.config.device_code_lifetime_secs;
        for _ in 0..5 {
            let d = DeviceAuthorization {
                client_id: client.client_id.clone(),
                scope: scope.clone(),
                user_code: new_user_code(),
                status: DeviceStatus::Pending,
                expires: now + lifetime as i64,
                interval: interval as i64,
                last_poll: None,
                csrf: random_token(),
                id_token_claims: id_token_claims.clone(),
            };
            match self.store.create_device_authorization(&hash, &d).await {
                Ok(()) => {
                    let verification_uri = format!("{}{}", self.audience, super::paths::DEVICE_VERIFY);
                    let user_code = display_user_code(&d.user_code);
                    return Ok(DeviceResponse {
                        device_code,
                        verification_uri_complete: format!("{verification_uri}?user_code={user_code}"),
                        verification_uri,
                        user_code,
                        expires_in: lifetime,
                        interval,
                    });
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(OAuthError::server(StoreError::Conflict))
    }

    /// The device_code grant (RFC 8628 §3.4-3.5), polled by the device:
    /// 1. the device code must be this client's and unexpired (`expired_token`);
    /// 2. a poll sooner than `interval` after the previous one is `slow_down`, and the
    ///    interval grows by 5 seconds for this and later polls; the first poll is never
    ///    early;
    /// 3. undecided: `authorization_pending`; denied: `access_denied`;
    /// 4. approved: tokens, once (the code is redeemed in the grant's transaction).
    pub(super) async fn device_grant(
        &self,
        client: &super::Client,
        form: &TokenForm,
        jkt: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let code =
            form.device_code.as_deref().ok_or_else(|| OAuthError::InvalidRequest("device_code is required".into()))?;
        let hash = SecretHash::of(code);
        let mut d = match self.store.device_authorization(&hash).await {
            Ok(d) => d,
            Err(StoreError::NotFound) => return Err(OAuthError::InvalidGrant("unknown device_code".into())),
            Err(e) => return Err(e.into()),
        };
        // 1.
        if d.value.client_id != client.client_id {
            return Err(OAuthError::InvalidGrant("the device_code was issued to another client".into()));
        }
        if d.value.expires <= now {
            return Err(OAuthError::ExpiredToken("the device_code has expired; start again".into()));
        }
        match d.value.status.clone() {
            DeviceStatus::Redeemed => Err(OAuthError::InvalidGrant("the device_code was already used".into())),
            DeviceStatus::Denied => Err(OAuthError::AccessDenied("the user denied the request".into())),
            DeviceStatus::Pending => {
                // 2.
                let early = d.value.last_poll.is_some_and(|last| now - last < d.value.interval);
                if early {
                    d.value.interval += 5;
                }
                d.value.last_poll = Some(now);
                let interval = d.value.interval;
                match self.store.update_device_authorization(&hash, &d.value, d.version).await {
                    Ok(_) | Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
                // 3.
                if early {
                    Err(OAuthError::SlowDown(format!("polling too fast: wait {interval} seconds between polls")))
                } else {
                    Err(OAuthError::AuthorizationPending("the user has not decided yet".into()))
                }
            }
            // 4.
            DeviceStatus::Approved { sub, auth_time } => {
                let grant = Grant {
                    id: random_token(),
                    client_id: client.client_id.clone(),
                    sub,
                    scope: d.value.scope.clone(),
                    auth_time: Some(auth_time),
                    created: now,
                    revoked: false,
                };
                let refresh = self.new_refresh(client, &grant, jkt, now);
                match self
                    .store
                    .redeem_device_authorization(&hash, d.version, &grant, refresh.as_ref().map(|(_, h, r)| (h, r)))
                    .await
                {
                    Ok(()) => {
                        self.respond(&grant, refresh.map(|(t, _, _)| t), None, &d.value.id_token_claims, jkt, now)
                    }
                    Err(StoreError::Conflict) => {
                        Err(OAuthError::InvalidGrant("the device_code was already used".into()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// The verification page (RFC 8628 §3.3): without a code, ask for one; with one,
    /// show the client and scopes it asks for. Wrong codes count against the address
    /// (§5.1: about five guesses per code's lifetime).
    pub async fn device_page(
        &self,
        user_code: Option<&str>,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<DeviceOutcome, OAuthError> {
        let Some(input) = user_code.filter(|c| !c.trim().is_empty()) else {
            return Ok(DeviceOutcome::EnterCode { user_code: String::new(), error: None });
        };
        let d = match self.pending_device(input, ip, now).await? {
            Ok(d) => d,
            Err(error) => return Ok(DeviceOutcome::EnterCode { user_code: input.to_owned(), error: Some(error) }),
        };
        self.confirm(&d, String::new(), None).await
    }

    async fn confirm(
        &self,
        d: &DeviceAuthorization,
        username: String,
        error: Option<String>,
    ) -> Result<DeviceOutcome, OAuthError> {
        Ok(DeviceOutcome::Confirm {
            user_code: display_user_code(&d.user_code),
            csrf: d.csrf.clone(),
            client_name: self.client(&d.client_id).await?.map(|c| c.name).unwrap_or_default(),
            scope: d.scope.clone(),
            username,
            error,
        })
    }

    /// A pending, unexpired device authorization for what the user typed, or the
    /// message to show (counting the failure).
    async fn pending_device(
        &self,
        input: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Result<DeviceAuthorization, String>, OAuthError> {
        if let Err(wait) = self.device_limiter.begin(self.store.as_ref(), USER_CODE_KEY, ip, now).await? {
            return Ok(Err(format!("Too many wrong codes. Try again in {wait} seconds.")));
        }
        let found = match normalize_user_code(input) {
            Some(code) => match self.store.device_authorization_by_user_code(&code).await {
                Ok((_, d)) if d.value.status == DeviceStatus::Pending && d.value.expires > now => Some(d.value),
                Ok(_) | Err(StoreError::NotFound) => None,
                Err(e) => {
                    self.device_limiter.end(self.store.as_ref(), USER_CODE_KEY, ip, now, Attempt::Abandoned).await;
                    return Err(e.into());
                }
            },
            None => None,
        };
        // A code found does not clear the failures (a guesser's hit is no excuse).
        let how = if found.is_some() { Attempt::Abandoned } else { Attempt::Failed };
        self.device_limiter.end(self.store.as_ref(), USER_CODE_KEY, ip, now, how).await;
        match found {
            Some(d) => Ok(Ok(d)),
            None => Ok(Err("This code is not valid or has expired. Check the code shown on your device.".into())),
        }
    }

    /// The confirmation form: the CSRF token of this device authorization, the user's
    /// credentials (with the login lockout), then the decision, recorded by CAS.
    pub async fn device_decide(
        &self,
        form: &DeviceForm,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<DeviceOutcome, OAuthError> {
        let d = match self.pending_device(&form.user_code, ip, now).await? {
            Ok(d) => d,
            Err(error) => {
                return Ok(DeviceOutcome::EnterCode { user_code: form.user_code.clone(), error: Some(error) });
            }
        };
        if !crate::jose::ct_eq(form.csrf.as_bytes(), d.csrf.as_bytes()) {
            return Err(OAuthError::AccessDenied("the form was not sent by this page".into()));
        }
        if let Err(wait) = self.limiter.begin(self.store.as_ref(), &form.username, ip, now).await? {
            let error = Some(format!("Too many failed attempts. Try again in {wait} seconds."));
            return self.confirm(&d, form.username.clone(), error).await;
        }
        let Some(user) = super::login::check_credentials(&self.users, &form.username, &form.password).await else {
            self.limiter.end(self.store.as_ref(), &form.username, ip, now, Attempt::Failed).await;
            return self.confirm(&d, form.username.clone(), Some("Wrong user name or password.".into())).await;
        };
        self.limiter.end(self.store.as_ref(), &form.username, ip, now, Attempt::Succeeded).await;
        let approved = match form.action.as_str() {
            "approve" => true,
            "deny" => false,
            _ => return Err(OAuthError::InvalidRequest("action must be approve or deny".into())),
        };
        let code = d.user_code.clone();
        let (hash, mut current) = self.store.device_authorization_by_user_code(&code).await?;
        if current.value.status != DeviceStatus::Pending {
            return Ok(DeviceOutcome::EnterCode {
                user_code: String::new(),
                error: Some("This code was already used.".into()),
            });
        }
        current.value.status = if approved {
            DeviceStatus::Approved { sub: user.username.clone(), auth_time: now }
        } else {
            DeviceStatus::Denied
        };
        match self.store.update_device_authorization(&hash, &current.value, current.version).await {
            Ok(_) => Ok(DeviceOutcome::Done { approved }),
            Err(StoreError::Conflict) => Ok(DeviceOutcome::EnterCode {
                user_code: String::new(),
                error: Some("This code was already used.".into()),
            }),
            Err(e) => Err(e.into()),
        }
    }
}
