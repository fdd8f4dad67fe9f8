//! What a strict OpenID Connect client, or an attacker, sends to the authorization
//! endpoint: the `claims` parameter, `prompt`, `max_age`, POST requests, hostile
//! redirect URIs and error descriptions (OIDC Core §3.1.2.1, §5.5; RFC 6749).

use oauth2::{CsrfToken, PkceCodeChallenge, Scope};
use serde_json::{Value, json};

use crate::oauth::{Browser, PASSWORD, Page, authorize_with_login, oauth_server, public_client, verify_jwt};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1/callback";

/// Percent-decodes a query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A query parameter of a redirect, decoded.
fn param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?.1.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

/// RFC 6749 §4.1.2.1 / §5.2: `error_description` is %x20-21 / %x23-5B / %x5D-7E.
fn assert_description_allowed(d: &str) {
    assert!(d.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)), "error_description {d:?}");
}

/// An authorization request for idca-cli with a fixed PKCE challenge and `extra`
/// (already encoded) query parameters.
fn authorize_url(b: &Browser, extra: &str) -> String {
    format!(
        "{}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri={REDIRECT}&scope=openid&state=st\
         &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        b.base
    )
}

/// Redeems a code of idca-cli with the fixed verifier; the token response.
async fn redeem(b: &Browser, code: &str) -> Value {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", VERIFIER),
        ("client_id", "idca-cli"),
        ("redirect_uri", REDIRECT),
    ];
    let r = b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Asserts `page` is a redirect to the client with `error` (and `state`, `iss`).
fn assert_error_redirect(b: &Browser, page: &Page, error: &str) {
    assert_eq!(page.status, 303, "{}", page.text);
    let to = page.location();
    assert!(to.starts_with(REDIRECT), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some(error), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st"), "{to}");
    assert_eq!(param(&to, "iss").as_deref(), Some(b.base.as_str()), "{to}");
    assert_description_allowed(&param(&to, "error_description").unwrap_or_default());
}

/// Logs alice in once through the normal flow, so the browser holds a session.
async fn logged_in(b: &mut Browser) {
    let cli = public_client(b, REDIRECT);
    authorize_with_login(b, &cli, &["openid"]).await;
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The hole: a `claims` request with values must not make idca sign claims it cannot
/// vouch for. Only `keyauth` and `acme_aud` (Wire's wire-oidc-01) are echoed; `amr`
/// says what idca did; `acr` is never emitted; profile claims come from the user record.
#[tokio::test]
async fn claims_requests_cannot_make_idca_sign_what_it_does_not_vouch_for() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    const FORGED: [&str; 10] =
        ["acr", "amr", "cnf", "email_verified", "phone_number_verified", "sid", "nbf", "jti", "groups", "invented"];
    let mut id_token = serde_json::Map::new();
    for name in FORGED {
        id_token.insert(name.into(), json!({"value": "forged"}));
    }
    id_token.insert("amr".into(), json!({"essential": true, "value": ["hwk", "mfa"]}));
    id_token.insert("cnf".into(), json!({"value": {"jkt": "attacker-key-thumbprint"}}));
    id_token.insert("email_verified".into(), json!({"essential": true, "value": true}));
    id_token.insert("name".into(), json!({"value": "Mallory"}));
    id_token.insert("email".into(), json!({"values": ["root@example.test"]}));
    id_token.insert("auth_time".into(), json!({"essential": true}));
    id_token.insert("keyauth".into(), json!({"essential": true, "value": "tok.thumb"}));
    id_token.insert("acme_aud".into(), json!({"value": "https://acme.test/chall/1"}));
    let claims =
        json!({"id_token": id_token, "userinfo": {"groups": {"value": ["admin"]}, "email_verified": {"value": true}}});
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let cli = public_client(&b, REDIRECT);
    let (url, _) = cli
        .client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_extra_param("claims", claims.to_string())
        .url();
    let before = unix_now();
    let login = b.get(url.as_str()).await;
    let done = b.login(&login, "alice", PASSWORD).await;
    let code = param(&done.location(), "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret().as_str()),
        ("client_id", "idca-cli"),
        ("redirect_uri", REDIRECT),
    ];
    let body: Value =
        b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap().json().await.unwrap();
    let id = verify_jwt(&b, body["id_token"].as_str().unwrap(), "JWT").await;
    assert_eq!(id["keyauth"], "tok.thumb");
    assert_eq!(id["acme_aud"], "https://acme.test/chall/1");
    assert_eq!(id["amr"], json!(["pwd"]), "{id}");
    for name in FORGED.iter().filter(|n| **n != "amr") {
        assert!(id.get(*name).is_none(), "`{name}` was signed: {id}");
    }
    assert_eq!(id["name"], "Alice Liddell");
    assert_eq!(id["email"], "alice@example.test");
    assert!(id["auth_time"].as_i64().unwrap() >= before - 1, "{id}");
    let info = crate::oauth::userinfo(&b, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info,
        json!({"sub": "alice", "name": "Alice Liddell", "preferred_username": "alice", "email": "alice@example.test"})
    );

    // Core §5.5.1.1: an essential acr with values idca cannot satisfy fails the
    // authentication; so does a `sub` value (§3.1.2.2), and at the device endpoint too.
    let acr = json!({"id_token": {"acr": {"essential": true, "values": ["urn:mace:incommon:iap:silver"]}}});
    let enc = |v: &Value| idca::oauth::percent_encode(&v.to_string());
    let url = authorize_url(&b, &format!("&claims={}", enc(&acr)));
    let page = b.get(&url).await;
    assert_error_redirect(&b, &page, "unmet_authentication_requirements");
    let url = authorize_url(&b, &format!("&claims={}", enc(&json!({"id_token": {"sub": {"value": "root"}}}))));
    let page = b.get(&url).await;
    assert_error_redirect(&b, &page, "invalid_request");
    let r = b
        .http
        .post(format!("{}/oauth/device", b.base))
        .form(&[("client_id", "idca-cli"), ("scope", "openid"), ("claims", acr.to_string().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unmet_authentication_requirements");
    // Discovery says what is signed: amr, never acr.
    let meta: Value =
        b.http.get(format!("{}/.well-known/openid-configuration", b.base)).send().await.unwrap().json().await.unwrap();
    let supported = meta["claims_supported"].as_array().unwrap();
    assert!(supported.contains(&json!("amr")) && !supported.contains(&json!("acr")), "{supported:?}");
    assert!(meta.get("acr_values_supported").is_none());
    server.stop().await;
}

/// Core §3.1.2.1 `prompt=none`: never a page; the missing step is named instead.
#[tokio::test]
async fn prompt_none_answers_at_once_or_names_what_is_missing() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let url = authorize_url(&b, "&prompt=none");
    let page = b.get(&url).await;
    assert_error_redirect(&b, &page, "login_required");
    logged_in(&mut b).await;
    // A session and a first-party client: the code at once.
    let page = b.get(&url).await;
    assert_eq!(page.status, 303, "{}", page.text);
    let code = param(&page.location(), "code").unwrap();
    assert!(redeem(&b, &code).await["id_token"].is_string());
    // A session too old for max_age counts as none.
    let stale = authorize_url(&b, "&prompt=none&max_age=0");
    let page = b.get(&stale).await;
    assert_error_redirect(&b, &page, "login_required");
    // A dynamically registered client needs consent.
    let r = b
        .http
        .post(format!("{}/oauth/register", b.base))
        .json(&json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "scope": "openid"}))
        .send()
        .await
        .unwrap();
    let reg: Value = r.json().await.unwrap();
    let url = authorize_url(&b, "&prompt=none")
        .replace("client_id=idca-cli", &format!("client_id={}", reg["client_id"].as_str().unwrap()));
    let page = b.get(&url).await;
    assert_error_redirect(&b, &page, "consent_required");
    // none with anything else, or an unknown value, is a malformed request.
    for prompt in ["none%20login", "none%20consent", "bogus"] {
        let url = authorize_url(&b, &format!("&prompt={prompt}"));
        let page = b.get(&url).await;
        assert_error_redirect(&b, &page, "invalid_request");
    }
    server.stop().await;
}

/// Core §3.1.2.1: `prompt=login`, `select_account`, `max_age=0` and a session older
/// than `max_age` need a fresh login (and the id_token's `auth_time` says when);
/// `prompt=consent` asks even for a first-party client.
#[tokio::test]
async fn prompt_login_consent_and_max_age_force_their_steps() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    logged_in(&mut b).await;
    let first_login = unix_now();
    // (The test browser keeps one cookie: each login page replaces the session cookie.)
    let session = b.cookie.clone();
    for extra in ["&prompt=login", "&prompt=select_account", "&max_age=0", "&prompt=login%20consent"] {
        let url = authorize_url(&b, extra);
        let page = b.get(&url).await;
        assert_eq!(page.status, 200, "{extra}: a fresh login is needed");
        assert!(page.text.contains("Sign in"), "{extra}");
        b.cookie = session.clone();
    }
    // A young enough session passes max_age; auth_time is in the id_token.
    let url = authorize_url(&b, "&max_age=3600");
    let page = b.get(&url).await;
    assert_eq!(page.status, 303, "{}", page.text);
    let tokens = redeem(&b, &param(&page.location(), "code").unwrap()).await;
    let id = verify_jwt(&b, tokens["id_token"].as_str().unwrap(), "JWT").await;
    let auth_time = id["auth_time"].as_i64().unwrap();
    assert!(auth_time <= first_login, "{id}");
    // Older than max_age: log in again, and auth_time moves.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let url = authorize_url(&b, "&max_age=1");
    let login = b.get(&url).await;
    assert_eq!(login.status, 200, "a session older than max_age must log in again");
    let done = b.login(&login, "alice", PASSWORD).await;
    let tokens = redeem(&b, &param(&done.location(), "code").unwrap()).await;
    let id = verify_jwt(&b, tokens["id_token"].as_str().unwrap(), "JWT").await;
    assert!(id["auth_time"].as_i64().unwrap() > auth_time, "{id}");
    // prompt=consent: the consent page, even for idca-cli, then the code.
    let url = authorize_url(&b, "&prompt=consent");
    let page = b.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Allow access?") && !page.text.contains("not configured"), "{}", page.text);
    let form = [("request", page.field("request")), ("csrf", page.field("csrf")), ("action", "allow".to_owned())];
    let r = b
        .http
        .post(format!("{}/oauth/consent", b.base))
        .header("cookie", b.cookie.clone().unwrap())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(redeem(&b, &param(&to, "code").unwrap()).await["access_token"].is_string());
    // prompt=login consent after a fresh login: the consent page follows the login.
    let url = authorize_url(&b, "&prompt=login%20consent");
    let login = b.get(&url).await;
    let next = b.login(&login, "alice", PASSWORD).await;
    assert_eq!(next.status, 200, "{}", next.text);
    assert!(next.text.contains("Allow access?"));
    // A malformed max_age is refused.
    for bad in ["abc", "-1", "1.5"] {
        let url = authorize_url(&b, &format!("&max_age={bad}"));
        let page = b.get(&url).await;
        assert_error_redirect(&b, &page, "invalid_request");
    }
    server.stop().await;
}

/// Core §3.1.2.1: the authorization endpoint takes POST (form-encoded) as well as GET.
#[tokio::test]
async fn the_authorization_endpoint_accepts_post() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let form = [
        ("response_type", "code"),
        ("client_id", "idca-cli"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("state", "st"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("nonce", "n-1"),
    ];
    let r = b.http.post(format!("{}/oauth/authorize", b.base)).form(&form);
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let login = Page { status: 200, headers: r.headers().clone(), text: r.text().await.unwrap() };
    b.cookie = Some(cookie);
    let done = b.login(&login, "alice", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let tokens = redeem(&b, &param(&done.location(), "code").unwrap()).await;
    let id = verify_jwt(&b, tokens["id_token"].as_str().unwrap(), "JWT").await;
    assert_eq!(id["nonce"], "n-1");
    // The same checks apply: prompt=none without a session by POST.
    let mut form = form.to_vec();
    form.push(("prompt", "none"));
    let fresh = Browser::new(&server);
    let r = fresh.http.post(format!("{}/oauth/authorize", b.base)).form(&form).send().await.unwrap();
    let page = Page { status: r.status().as_u16(), headers: r.headers().clone(), text: String::new() };
    assert_error_redirect(&b, &page, "login_required");
    server.stop().await;
}

/// RFC 6749 §4.1.2.1, §5.2: client input never reaches `error_description` raw.
#[tokio::test]
async fn error_descriptions_never_echo_raw_input() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let hostile = "x\"\\\u{e9}\r\n\u{7f}<script>";
    // Token endpoint: an unknown grant_type, and a bad scope.
    for form in [
        vec![("grant_type", hostile), ("client_id", "idca-cli")],
        vec![("grant_type", "refresh_token"), ("client_id", "idca-cli"), ("refresh_token", hostile)],
    ] {
        let r = b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_description_allowed(body["error_description"].as_str().unwrap());
    }
    // Authorization endpoint: a scope that is not allowed, echoed in a redirect.
    let url = authorize_url(&b, "")
        .replace("scope=openid", &format!("scope=openid%20{}", idca::oauth::percent_encode(hostile)));
    let page = b.get(&url).await;
    assert_error_redirect(&b, &page, "invalid_scope");
    // Device endpoint and registration.
    let r = b
        .http
        .post(format!("{}/oauth/device", b.base))
        .form(&[("client_id", "idca-cli"), ("scope", hostile)])
        .send()
        .await
        .unwrap();
    assert_description_allowed(r.json::<Value>().await.unwrap()["error_description"].as_str().unwrap());
    for meta in [
        json!({"redirect_uris": [format!("https://a.test/{hostile}")]}),
        json!({"redirect_uris": ["https://a.test/cb"], "grant_types": [hostile]}),
        json!({"redirect_uris": ["https://a.test/cb"], "scope": format!("openid {hostile}")}),
    ] {
        let r = b.http.post(format!("{}/oauth/register", b.base)).json(&meta).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_description_allowed(body["error_description"].as_str().unwrap());
    }
    server.stop().await;
}

/// RFC 6749 §3.1.2, RFC 7591 §2: only RFC 3986 absolute URIs register, and no
/// registered client makes the authorization endpoint answer 500 or an invalid
/// `Location`.
#[tokio::test]
async fn redirect_uris_must_parse_and_authorize_never_fails_for_a_registered_client() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    for bad in [
        "https://a.test/c b",
        "https://a.test/cb\r\nSet-Cookie: x=1",
        "https://a.test/cb\n",
        "https://a.test/\u{e9}",
        "https://a.test/\"",
        "https://a.test/<x>",
        "https://a.test/\\",
        "https://a.test/{x}",
        "https://a.test/|",
        "https://a.test/^",
        "https://a.test/`",
        "https://a.test:99999/cb",
        "https://a.test:x/cb",
        "https://a.test:/cb",
        "https://user@a.test/cb",
        "https://[zz]/cb",
        "https://a.test/%zz",
        "http://evil.test/cb",
    ] {
        let r = b
            .http
            .post(format!("{}/oauth/register", b.base))
            .json(&json!({"redirect_uris": [bad], "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_redirect_uri", "{bad:?}: {body}");
        assert_description_allowed(body["error_description"].as_str().unwrap());
    }
    // The same rules in config.toml.
    let err = idca::config::Config::parse(
        "[[oauth.clients]]\nclient_id = \"x\"\nname = \"x\"\nsecret_hash = \"\"\nredirect_uris = [\"https://a.test/c b\"]\nscopes = [\"openid\"]\ngrant_types = [\"authorization_code\"]\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("redirect URI"), "{err}");
    // Every URI that registers works at the authorization endpoint.
    for good in [
        "https://a.test/cb",
        "https://a.test:8443/cb?x=1&y=%20",
        "https://[2001:db8::1]:443/cb",
        "http://[::1]:8080/cb",
        "http://localhost:3000/cb",
        "com.example.app:/oauth2redirect",
        "https://a.test/c!$&'()*+,;=:@b",
    ] {
        let r = b
            .http
            .post(format!("{}/oauth/register", b.base))
            .json(&json!({"redirect_uris": [good], "token_endpoint_auth_method": "none", "scope": "openid"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{good}");
        let reg: Value = r.json().await.unwrap();
        let id = reg["client_id"].as_str().unwrap();
        for extra in ["", "&prompt=none", "&response_type=token", "&state=%0D%0Ax%22", "&scope=bogus"] {
            let url = format!(
                "{}/oauth/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid\
                 &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
                b.base,
                idca::oauth::percent_encode(good)
            );
            let page = b.get(&url).await;
            assert!(page.status < 500, "{good} {extra}: {} {}", page.status, page.text);
            if page.status == 303 {
                assert!(page.location().starts_with(good.split('?').next().unwrap()), "{good}: {}", page.location());
            }
        }
    }
    server.stop().await;
}
