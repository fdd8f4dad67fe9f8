//! HTML pages: login and errors. Real forms, no JavaScript (but the one line that submits
//! a form-post response, allowed by its hash); every page forbids framing and caching
//! (RFC 9700 §4.16 clickjacking, RFC 6749 §10.13).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use crate::oauth::LoginPage;

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:26rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.6rem;font-size:1rem;box-sizing:border-box}\
button{margin-top:1.2rem;width:100%;padding:.7rem;font-size:1rem}.error{color:#a00}.scopes{color:#555}";

/// No `form-action`: browsers apply it to the redirect that follows a form POST, and the
/// login form's 303 goes to the client's redirect URI (found with a real browser).
fn page(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    );
    guarded(status, "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'", html)
}

/// A page with its CSP and the headers every page carries (no framing, no caching, no
/// referrer, no sniffing).
fn guarded(status: StatusCode, csp: &str, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", csp))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(html)
}

/// The script of the form-post page, and its CSP hash.
const SUBMIT: &str = "document.forms[0].submit()";

/// The authorization response POSTed to the client (OAuth 2.0 Form Post Response Mode
/// §2): `url`'s query as hidden fields of a form to the rest of it, submitted by a script
/// the CSP allows by its hash (a button without JavaScript).
pub(super) fn form_post(url: &str) -> HttpResponse {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return error(400, "The redirect URI of this client cannot be used.");
    };
    let fields: String = parsed
        .query_pairs()
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(&k), escape(&v)))
        .collect();
    parsed.set_query(None);
    let digest = ring::digest::digest(&ring::digest::SHA256, SUBMIT.as_bytes());
    let hash = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest.as_ref());
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signing in</title>\
         <style>{STYLE}</style></head><body><form method=\"post\" action=\"{}\">{fields}\
         <noscript><button type=\"submit\">Continue</button></noscript></form><script>{SUBMIT}</script></body></html>",
        escape(parsed.as_str())
    );
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    guarded(StatusCode::OK, &csp, html)
}

/// RP-initiated logout without an `id_token_hint`: the user confirms (the form carries
/// the request on, with a CSRF token bound to the session).
pub(super) fn logout_confirm(p: &crate::oauth::LogoutParams, csrf: &str) -> HttpResponse {
    let hidden = |name: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(v)))
            .unwrap_or_default()
    };
    let body = format!(
        "<h1>Sign out?</h1><p>You are signed in to idca. Sign out of it in this browser?</p>\
         <form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{}{}{}\
         <button type=\"submit\">Sign out</button></form>",
        crate::oauth::paths::LOGOUT,
        escape(csrf),
        hidden("client_id", &p.client_id),
        hidden("post_logout_redirect_uri", &p.post_logout_redirect_uri),
        hidden("state", &p.state),
    );
    page(StatusCode::OK, "Sign out", &body)
}

/// The account page: the user's grants (client, scopes, since when), browser sessions
/// and devices, each with a form that takes it back carrying the session's CSRF token.
pub(super) fn account(p: &crate::oauth::AccountPage) -> HttpResponse {
    let revoke = |field: &str, value: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"{field}\" value=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">{label}</button></form>",
            crate::oauth::paths::ACCOUNT_REVOKE,
            escape(value),
            escape(&p.csrf),
        )
    };
    let section = |class: &str, items: Vec<String>, empty: &str| {
        if items.is_empty() {
            format!("<p>{empty}</p>")
        } else {
            format!("<ul class=\"{class}\">{}</ul>", items.concat())
        }
    };
    // A named thing, what it holds, since when, and its form.
    let item = |name: &str, detail: &str, since: i64, form: String| {
        format!(
            "<li><strong>{}</strong><br><span class=\"scopes\">{} · since {}</span>{form}</li>",
            escape(name),
            escape(detail),
            crate::clock::rfc3339(since)
        )
    };
    let grants = p
        .grants
        .iter()
        .map(|g| item(&g.client_name, &g.scope.join(" "), g.created, revoke("grant", &g.id, "Revoke access")))
        .collect();
    let sessions = p
        .sessions
        .iter()
        .map(|s| {
            format!(
                "<li>Signed in {}{}<br><span class=\"scopes\">until {}</span>{}</li>",
                crate::clock::rfc3339(s.auth_time),
                if s.current { " (this browser)" } else { "" },
                crate::clock::rfc3339(s.expires),
                revoke("session", &s.id, "Sign out this session"),
            )
        })
        .collect();
    let devices = p
        .devices
        .iter()
        .map(|d| {
            let name = if d.label.is_empty() { &d.id } else { &d.label };
            item(name, &d.client_id, d.created, revoke("device", &d.id, "Remove device"))
        })
        .collect();
    let body = format!(
        "<h1>Your account</h1><p>Signed in as <strong>{}</strong>.</p>\
         <h2>Applications with access</h2>{}<h2>Sessions</h2>{}<h2>Devices</h2>{}\
         <p><a href=\"{}\">Sign out</a></p>",
        escape(&p.user),
        section("grants", grants, "No application has access to your account."),
        section("sessions", sessions, "No sessions."),
        section("devices", devices, "No devices."),
        crate::oauth::paths::LOGOUT,
    );
    page(StatusCode::OK, "Your account", &body)
}

/// After RP-initiated logout, when the client gave no address to return to.
pub(super) fn signed_out() -> HttpResponse {
    page(StatusCode::OK, "Signed out", "<h1>Signed out</h1><p>You are signed out of idca in this browser.</p>")
}

/// The login form for a pending authorization.
pub(super) fn login(p: &LoginPage) -> HttpResponse {
    let error =
        p.error.as_deref().map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1><p><strong>{client}</strong> asks to access your account.</p>\
         <p class=\"scopes\">Scopes: {scopes}</p>{error}\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"username\">User name</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{username}\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in and allow</button></form>",
        client = escape(&p.client_name),
        scopes = escape(&p.scope.join(" ")),
        action = crate::oauth::paths::LOGIN,
        request = escape(&p.request),
        csrf = escape(&p.csrf),
        username = escape(&p.username),
    );
    match (p.retry_after, &p.error) {
        // RFC 6585 §4: locked out for a while.
        (Some(wait), _) => {
            let mut res = page(StatusCode::TOO_MANY_REQUESTS, "Sign in", &body);
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&wait.to_string()) {
                res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, v);
            }
            res
        }
        (None, Some(_)) => page(StatusCode::UNAUTHORIZED, "Sign in", &body),
        (None, None) => page(StatusCode::OK, "Sign in", &body),
    }
}

/// The consent page: for a third-party (dynamically registered) client, or when the
/// client asked for it (`prompt=consent`).
pub(super) fn consent(p: &crate::oauth::ConsentPage) -> HttpResponse {
    let who =
        if p.third_party { " (a registered application, not configured by this server's administrator)" } else { "" };
    let body = format!(
        "<h1>Allow access?</h1><p><strong>{client}</strong>{who} asks to access your account.</p>\
         <p class=\"scopes\">Scopes: {scopes}</p>\
         <p class=\"scopes\">It will be sent to: {redirect}</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"action\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        client = escape(&p.client_name),
        scopes = escape(&p.scope.join(" ")),
        redirect = escape(&p.redirect_uri),
        action = crate::oauth::paths::CONSENT,
        request = escape(&p.request),
        csrf = escape(&p.csrf),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

/// The device verification pages (RFC 8628 §3.3).
pub(super) fn device(outcome: &crate::oauth::DeviceOutcome) -> HttpResponse {
    use crate::oauth::DeviceOutcome;
    let verify = crate::oauth::paths::DEVICE_VERIFY;
    let error_html = |e: &Option<String>| {
        e.as_deref().map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default()
    };
    match outcome {
        DeviceOutcome::EnterCode { user_code, error } => {
            let body = format!(
                "<h1>Connect a device</h1><p>Enter the code shown on your device.</p>{err}\
                 <form method=\"get\" action=\"{verify}\"><label for=\"user_code\">Code</label>\
                 <input id=\"user_code\" name=\"user_code\" autocomplete=\"off\" autocapitalize=\"characters\" \
                 placeholder=\"XXXX-XXXX\" required value=\"{code}\"><button type=\"submit\">Continue</button></form>",
                err = error_html(error),
                code = escape(user_code),
            );
            page(if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, "Connect a device", &body)
        }
        DeviceOutcome::Confirm { user_code, csrf, client_name, scope, username, error } => {
            let body = format!(
                "<h1>Connect a device</h1><p><strong>{client}</strong> on a device showing code \
                 <strong>{code}</strong> asks to access your account.</p><p class=\"scopes\">Scopes: {scopes}</p>\
                 <p>Only continue if you started this on your own device.</p>{err}\
                 <form method=\"post\" action=\"{verify}\">\
                 <input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <label for=\"username\">User name</label>\
                 <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{username}\">\
                 <label for=\"password\">Password</label>\
                 <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
                 <button type=\"submit\" name=\"action\" value=\"approve\">Allow</button>\
                 <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
                client = escape(client_name),
                code = escape(user_code),
                scopes = escape(&scope.join(" ")),
                err = error_html(error),
                csrf = escape(csrf),
                username = escape(username),
            );
            page(if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK }, "Connect a device", &body)
        }
        DeviceOutcome::Done { approved } => {
            let text = if *approved {
                "Device connected. You can return to your device."
            } else {
                "Request denied. The device gets no access."
            };
            page(StatusCode::OK, "Connect a device", &format!("<h1>Connect a device</h1><p>{text}</p>"))
        }
    }
}

/// An error shown to the user (never redirected to a client).
pub(super) fn error(status: u16, message: &str) -> HttpResponse {
    let body = format!("<h1>Cannot continue</h1><p class=\"error\">{}</p>", escape(message));
    page(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), "Error", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
