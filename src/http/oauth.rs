//! OAuth / OIDC routes, thin: extract, one call into `authz`, render.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;

use super::{AppState, HttpError, credentials, pages};
use crate::oauth::{
    AccountForm, AccountOutcome, AuthorizeOutcome, AuthorizeParams, ClientCredentials, ClientMetadata, ConsentForm,
    DeviceForm, DeviceOutcome, LoginForm, LogoutOutcome, LogoutParams, OAuthError, PushedForm, TokenForm, paths,
};

type State = web::Data<AppState>;

const SESSION_COOKIE: &str = "idca_session";
/// Prefix of the cookie naming a login form's request: `idca_login_{request}`.
const LOGIN_COOKIE: &str = "idca_login_";

pub(super) fn configure(cfg: &mut web::ServiceConfig, limits: &crate::config::LimitsConfig) {
    let form = web::FormConfig::default().limit(limits.form_body_bytes).error_handler(|e, _| {
        HttpError::OAuth(OAuthError::InvalidRequest(format!("the body must be application/x-www-form-urlencoded: {e}")))
            .into()
    });
    let json = web::JsonConfig::default().limit(limits.json_body_bytes).error_handler(|e, _| {
        HttpError::OAuth(OAuthError::InvalidClientMetadata(format!("the body must be JSON client metadata: {e}")))
            .into()
    });
    // RFC 6749 §3.1: parameters must not repeat; a query that does not deserialize is
    // invalid_request, as a form is.
    let query = web::QueryConfig::default()
        .error_handler(|e, _| HttpError::OAuth(OAuthError::InvalidRequest(format!("the query string: {e}"))).into());
    cfg.app_data(form)
        .app_data(json)
        .app_data(query)
        .route(paths::REGISTER, web::post().to(register))
        .service(
            web::resource("/oauth/register/{client_id}")
                .route(web::get().to(read_registration))
                .route(web::put().to(update_registration))
                .route(web::delete().to(delete_registration)),
        )
        .route(paths::AUTHORIZE, web::get().to(authorize))
        .route(paths::AUTHORIZE, web::post().to(authorize_form))
        .route(paths::LOGIN, web::post().to(login))
        .route(paths::CONSENT, web::post().to(consent))
        .route(paths::TOKEN, web::post().to(token))
        .route(paths::JWKS, web::get().to(jwks))
        .route(paths::INTROSPECT, web::post().to(introspect))
        .route(paths::DEVICE, web::post().to(device_authorization))
        .route(paths::PAR, web::post().to(pushed_authorization_request))
        .route(paths::ACCOUNT, web::get().to(account))
        .route(paths::ACCOUNT_REVOKE, web::post().to(account_revoke))
        .route(paths::DEVICE_VERIFY, web::get().to(device_page))
        .route(paths::DEVICE_VERIFY, web::post().to(device_decide))
        .route(paths::DEVICE_DONE, web::get().to(device_done))
        .route(paths::REVOKE, web::post().to(revoke))
        .route(paths::LOGOUT, web::get().to(logout))
        .route(paths::LOGOUT, web::post().to(logout_form))
        .route(paths::USERINFO, web::get().to(userinfo))
        .route(paths::USERINFO, web::post().to(userinfo))
        .route("/.well-known/oauth-authorization-server", web::get().to(metadata))
        .route("/.well-known/openid-configuration", web::get().to(metadata));
}

fn render(st: &AppState, outcome: AuthorizeOutcome) -> HttpResponse {
    let with_session = |mut res: HttpResponse, session: Option<(String, i64)>| {
        if let Some((id, max_age)) = session {
            let secure = if st.secure_cookies { "; Secure" } else { "" };
            let cookie =
                format!("{SESSION_COOKIE}={id}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
        res
    };
    match outcome {
        AuthorizeOutcome::ErrorPage { status, message } => pages::error(status, &message),
        AuthorizeOutcome::Login(page) => {
            // Binds the form to this browser (login CSRF, see `AuthServer::login`).
            let mut res = pages::login(&page);
            let secure = if st.secure_cookies { "; Secure" } else { "" };
            let cookie = format!(
                "{LOGIN_COOKIE}{}={}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                page.request,
                page.csrf,
                st.authz.login_page_lifetime_secs()
            );
            if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        AuthorizeOutcome::Consent { page, session } => with_session(pages::consent(&page), session),
        AuthorizeOutcome::Redirect { url, session, form_post: true } => with_session(pages::form_post(&url), session),
        AuthorizeOutcome::Redirect { url, session, form_post: false } => {
            let Ok(location) = header::HeaderValue::from_str(&url) else {
                return pages::error(400, "The redirect URI of this client cannot be used.");
            };
            // 303 after a POST (RFC 9700 §4.12); also fine after a GET.
            let res = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
            with_session(res, session)
        }
    }
}

/// RP-initiated logout's end-session endpoint (OpenID Connect RP-Initiated Logout 1.0 §2).
async fn logout(st: State, req: HttpRequest, q: web::Query<LogoutParams>) -> Result<HttpResponse, HttpError> {
    let session = credentials::cookie(&req, SESSION_COOKIE);
    let outcome = st.authz.logout(&q, session.as_deref(), st.clock.now()).await?;
    Ok(match outcome {
        LogoutOutcome::ErrorPage { status, message } => pages::error(status, &message),
        LogoutOutcome::Confirm { params, csrf } => pages::logout_confirm(&params, &csrf),
        LogoutOutcome::SignedOut { redirect } => {
            let mut res = match redirect.map(|r| header::HeaderValue::from_str(&r)) {
                Some(Ok(location)) => HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .finish(),
                _ => pages::signed_out(),
            };
            // The session cookie goes too.
            if let Ok(v) = header::HeaderValue::from_str(&format!("{SESSION_COOKIE}=; Path=/oauth; Max-Age=0")) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
    })
}

/// The signed-in user's account page: their grants, sessions and devices, each revocable.
async fn account(st: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let session = credentials::cookie(&req, SESSION_COOKIE);
    Ok(account_page(st.authz.account(session.as_deref(), st.clock.now()).await?))
}

/// The account page's revoke form: 303 back to the page.
async fn account_revoke(st: State, req: HttpRequest, form: web::Form<AccountForm>) -> Result<HttpResponse, HttpError> {
    let session = credentials::cookie(&req, SESSION_COOKIE);
    Ok(account_page(st.authz.account_revoke(&form, session.as_deref(), st.clock.now()).await?))
}

fn account_page(outcome: AccountOutcome) -> HttpResponse {
    match outcome {
        AccountOutcome::Page(p) => pages::account(&p),
        AccountOutcome::SignedOut => pages::error(401, "You are not signed in to idca in this browser."),
        AccountOutcome::Forbidden => pages::error(403, "This form is not valid any more. Reload the account page."),
        AccountOutcome::Revoked => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, paths::ACCOUNT))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    }
}

/// The end-session endpoint by form POST (§2), also the confirmation page's target.
async fn logout_form(st: State, req: HttpRequest, form: web::Form<LogoutParams>) -> Result<HttpResponse, HttpError> {
    logout(st, req, web::Query(form.into_inner())).await
}

/// The consent form's target.
async fn consent(st: State, req: HttpRequest, form: web::Form<ConsentForm>) -> Result<HttpResponse, HttpError> {
    let session = credentials::cookie(&req, SESSION_COOKIE);
    let outcome = st.authz.consent(&form, session.as_deref(), st.clock.now()).await?;
    Ok(render(&st, outcome))
}

/// The authorization endpoint (RFC 6749 §3.1).
async fn authorize(st: State, req: HttpRequest, q: web::Query<AuthorizeParams>) -> Result<HttpResponse, HttpError> {
    let session = credentials::cookie(&req, SESSION_COOKIE);
    let from = credentials::client_ip(&req, &st.trusted_proxies);
    let outcome = st.authz.authorize(&q, session.as_deref(), from, st.clock.now()).await?;
    Ok(render(&st, outcome))
}

/// The authorization endpoint by POST (OIDC Core §3.1.2.1: form-encoded, same
/// parameters).
async fn authorize_form(
    st: State,
    req: HttpRequest,
    form: web::Form<AuthorizeParams>,
) -> Result<HttpResponse, HttpError> {
    authorize(st, req, web::Query(form.into_inner())).await
}

/// The login form's target.
async fn login(st: State, req: HttpRequest, form: web::Form<LoginForm>) -> Result<HttpResponse, HttpError> {
    let name = format!("{LOGIN_COOKIE}{}", form.request);
    let browser = credentials::cookie(&req, &name);
    let outcome = st
        .authz
        .login(&form, browser.as_deref(), credentials::client_ip(&req, &st.trusted_proxies), st.clock.now())
        .await?;
    let done = matches!(outcome, AuthorizeOutcome::Redirect { .. } | AuthorizeOutcome::Consent { .. });
    let mut res = render(&st, outcome);
    if done && let Ok(v) = header::HeaderValue::from_str(&format!("{name}=; Path=/oauth; Max-Age=0")) {
        // The form is used: its cookie goes (after the session cookie, which stays first).
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// Client authentication (RFC 6749 §2.3.1): HTTP Basic with form-urlencoded id and
/// secret, `client_id` (+ `client_secret`) in the body, or a `client_assertion`
/// (RFC 7523 §2.2); only one method.
fn client_credentials(req: &HttpRequest, form: &TokenForm) -> Result<ClientCredentials, OAuthError> {
    let basic = credentials::scheme(req, "basic")?;
    if let Some(assertion) = &form.client_assertion {
        if basic.is_some() || form.client_secret.is_some() {
            return Err(OAuthError::InvalidRequest("use one client authentication method".into()));
        }
        return ClientCredentials::assertion(
            assertion,
            form.client_assertion_type.as_deref(),
            form.client_id.as_deref(),
        );
    }
    match (basic, &form.client_secret) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest("use one client authentication method".into())),
        (Some(b64), None) => {
            let bad = || OAuthError::InvalidClient("malformed Basic credentials".into());
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
            let client_id = form_decode(id).ok_or_else(bad)?;
            if form.client_id.as_deref().is_some_and(|c| c != client_id) {
                return Err(OAuthError::InvalidRequest("client_id differs from the authenticated client".into()));
            }
            Ok(ClientCredentials::Basic { client_id, secret: form_decode(secret).ok_or_else(bad)? })
        }
        (None, Some(secret)) => Ok(ClientCredentials::Post {
            client_id: form
                .client_id
                .clone()
                .ok_or_else(|| OAuthError::InvalidRequest("client_id is required".into()))?,
            secret: secret.clone(),
        }),
        (None, None) => match &form.client_id {
            Some(id) => Ok(ClientCredentials::None { client_id: id.clone() }),
            None => Err(OAuthError::InvalidClient("client authentication is required".into())),
        },
    }
}

/// application/x-www-form-urlencoded decoding of one component.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The token endpoint (RFC 6749 §3.2); responses are never cached (§5.1) and carry the
/// current `DPoP-Nonce` (RFC 9449 §8).
async fn token(st: State, req: HttpRequest, form: web::Form<TokenForm>) -> Result<HttpResponse, HttpError> {
    let creds = client_credentials(&req, &form)?;
    let now = st.clock.now();
    let response = st
        .authz
        .token(&creds, credentials::client_ip(&req, &st.trusted_proxies), &form, &credentials::dpop_proofs(&req)?, now)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header(("DPoP-Nonce", st.authz.dpop_nonce(now)))
        .json(response))
}

/// The pushed authorization request endpoint (RFC 9126 §2): `201` with the
/// `request_uri`, never cached.
async fn pushed_authorization_request(
    st: State,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, HttpError> {
    let form = PushedForm::parse(form.into_inner())?;
    let creds = client_credentials(&req, &form.authentication)?;
    let from = credentials::client_ip(&req, &st.trusted_proxies);
    let body = st.authz.push_authorization_request(&creds, from, form, st.clock.now()).await?;
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// The device authorization endpoint (RFC 8628 §3.1).
async fn device_authorization(
    st: State,
    req: HttpRequest,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, HttpError> {
    let creds = client_credentials(&req, &form)?;
    let now = st.clock.now();
    let body = st
        .authz
        .device_authorization(
            &creds,
            credentials::client_ip(&req, &st.trusted_proxies),
            form.scope.as_deref(),
            form.claims.as_deref(),
            now,
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

#[derive(serde::Deserialize)]
struct UserCode {
    user_code: Option<String>,
}

/// The verification page (RFC 8628 §3.3): enter a code, or confirm one.
async fn device_page(st: State, req: HttpRequest, q: web::Query<UserCode>) -> Result<HttpResponse, HttpError> {
    let outcome = st
        .authz
        .device_page(q.user_code.as_deref(), credentials::client_ip(&req, &st.trusted_proxies), st.clock.now())
        .await?;
    Ok(pages::device(&outcome))
}

/// The decision; a 303 to the result page when made (RFC 9700 §4.12).
async fn device_decide(st: State, req: HttpRequest, form: web::Form<DeviceForm>) -> Result<HttpResponse, HttpError> {
    match st.authz.device_decide(&form, credentials::client_ip(&req, &st.trusted_proxies), st.clock.now()).await {
        Ok(DeviceOutcome::Done { approved }) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("{}?approved={approved}", paths::DEVICE_DONE)))
            .finish()),
        Ok(other) => Ok(pages::device(&other)),
        Err(OAuthError::AccessDenied(m)) => Ok(pages::error(403, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct Approved {
    approved: Option<bool>,
}

async fn device_done(q: web::Query<Approved>) -> HttpResponse {
    pages::device(&DeviceOutcome::Done { approved: q.approved.unwrap_or(false) })
}

/// Dynamic client registration (RFC 7591 §3): `201` with the client's credentials.
async fn register(st: State, req: HttpRequest, m: web::Json<ClientMetadata>) -> Result<HttpResponse, HttpError> {
    let from = credentials::client_ip(&req, &st.trusted_proxies);
    let r = st.authz.register(&m, from, st.clock.now()).await?;
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(r))
}

/// RFC 7592 §2.1.
async fn read_registration(st: State, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    let r = st.authz.read_registration(&id, &bearer(&req)?).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(r))
}

/// RFC 7592 §2.2.
async fn update_registration(
    st: State,
    req: HttpRequest,
    id: web::Path<String>,
    m: web::Json<ClientMetadata>,
) -> Result<HttpResponse, HttpError> {
    let r = st.authz.update_registration(&id, &bearer(&req)?, &m).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(r))
}

/// RFC 7592 §2.3: `204`.
async fn delete_registration(st: State, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, HttpError> {
    st.authz.delete_registration(&id, &bearer(&req)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Introspection (RFC 7662).
async fn introspect(st: State, req: HttpRequest, form: web::Form<TokenForm>) -> Result<HttpResponse, HttpError> {
    let creds = client_credentials(&req, &form)?;
    let token = form.token.as_deref().ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    let body =
        st.authz.introspect(&creds, credentials::client_ip(&req, &st.trusted_proxies), token, st.clock.now()).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// Revocation (RFC 7009): `200` with an empty body whatever the token was.
async fn revoke(st: State, req: HttpRequest, form: web::Form<TokenForm>) -> Result<HttpResponse, HttpError> {
    let creds = client_credentials(&req, &form)?;
    let token = form.token.as_deref().ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    st.authz.revoke(&creds, credentials::client_ip(&req, &st.trusted_proxies), token, st.clock.now()).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn jwks(st: State) -> HttpResponse {
    HttpResponse::Ok().json(st.authz.jwks())
}

async fn metadata(st: State) -> HttpResponse {
    HttpResponse::Ok().json(st.authz.metadata())
}

/// The bearer token of a request (RFC 6750 §2.1).
fn bearer(req: &HttpRequest) -> Result<String, OAuthError> {
    match credentials::authorization(req)? {
        None => Err(OAuthError::InvalidToken("an access token is required".into())),
        Some(value) => match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim().to_owned()),
            _ => Err(OAuthError::InvalidToken("use Authorization: Bearer".into())),
        },
    }
}

/// userinfo (OIDC Core §5.3).
async fn userinfo(st: State, req: HttpRequest) -> Result<HttpResponse, HttpError> {
    let info = st
        .authz
        .userinfo(
            credentials::authorization(&req)?,
            &credentials::dpop_proofs(&req)?,
            req.method().as_str(),
            st.clock.now(),
        )
        .await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }
}
