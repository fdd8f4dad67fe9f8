//! The authorization server through its real HTTP surface: the oauth2 crate as the
//! client, reqwest (no redirects, cookies by hand) as the browser.

use std::sync::OnceLock;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, Scope, TokenResponse, TokenUrl,
};
use serde_json::{Value, json};

use crate::harness::{TestServer, start_with};

pub(crate) const PASSWORD: &str = "wonderland";
pub(crate) const SECRET: &str = "s3cret-s3cret-s3cret";

/// argon2 hashes are slow on purpose: make each once per test binary.
fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| (idca::oauth::hash_password(PASSWORD).unwrap(), idca::oauth::hash_password(SECRET).unwrap()))
}

pub(crate) async fn oauth_server(tweak: impl FnOnce(&mut idca::config::Config)) -> TestServer {
    let (user_hash, secret_hash) = hashes().clone();
    start_with(move |c| {
        c.oauth.users.push(idca::config::UserConfig {
            username: "alice".into(),
            password_hash: user_hash,
            name: "Alice Liddell".into(),
            email: "alice@example.test".into(),
            handle: "alice_wire".into(),
            team: "wire".into(),
            domain: "wire.example.test".into(),
        });
        c.oauth.clients.push(idca::config::ClientConfig {
            client_id: "backend".into(),
            name: "Backend".into(),
            secret_hash: secret_hash.clone(),
            redirect_uris: vec![],
            scopes: vec!["acme".into()],
            grant_types: vec!["client_credentials".into()],
            post_logout_redirect_uris: vec![],
            ..Default::default()
        });
        c.oauth.clients.push(idca::config::ClientConfig {
            client_id: "webapp".into(),
            name: "Web app".into(),
            secret_hash,
            redirect_uris: vec!["https://app.example.test/cb".into()],
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            post_logout_redirect_uris: vec!["https://app.example.test/signed-out".into()],
            ..Default::default()
        });
        tweak(c);
    })
    .await
}

/// A browser: no automatic redirects, the session cookie kept by hand.
pub(crate) struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub(crate) struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Page {
    pub(crate) fn location(&self) -> String {
        self.headers["location"].to_str().unwrap().to_owned()
    }

    /// The value of a hidden input.
    pub(crate) fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start =
            self.text.find(&marker).unwrap_or_else(|| panic!("no field {name} in {}", self.text)) + marker.len();
        self.text[start..].split('"').next().unwrap().to_owned()
    }
}

impl Browser {
    pub(crate) fn new(server: &TestServer) -> Self {
        let cert = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { http, base: server.directory_url().replace("/directory", ""), cookie: None }
    }

    async fn page(&mut self, r: reqwest::RequestBuilder) -> Page {
        let r = match &self.cookie {
            Some(c) => r.header("cookie", c.clone()),
            None => r,
        };
        let resp = r.send().await.unwrap();
        if let Some(set) = resp.headers().get("set-cookie") {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        Page { status: resp.status().as_u16(), headers: resp.headers().clone(), text: resp.text().await.unwrap() }
    }

    pub(crate) async fn get(&mut self, url: &str) -> Page {
        let r = self.http.get(url);
        self.page(r).await
    }

    /// Submits the login form of `login` with these credentials.
    pub(crate) async fn login(&mut self, login: &Page, username: &str, password: &str) -> Page {
        let form = [
            ("request", login.field("request")),
            ("csrf", login.field("csrf")),
            ("username", username.to_owned()),
            ("password", password.to_owned()),
        ];
        let r = self.http.post(format!("{}/oauth/login", self.base)).form(&form);
        self.page(r).await
    }
}

/// oauth2's HTTP client, on the tests' reqwest 0.13.
pub(crate) fn oauth_http(
    client: reqwest::Client,
) -> impl Fn(oauth2::HttpRequest) -> std::pin::Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, std::io::Error>>>>
{
    move |req: oauth2::HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
            let req: reqwest::Request = req.try_into().map_err(|e: reqwest::Error| io(&e))?;
            let resp = client.execute(req).await.map_err(|e| io(&e))?;
            let mut b = http::Response::builder().status(resp.status().as_u16());
            for (k, v) in resp.headers() {
                b = b.header(k.as_str(), v.as_bytes());
            }
            let body = resp.bytes().await.map_err(|e| io(&e))?.to_vec();
            b.body(body).map_err(|e| io(&e))
        })
    }
}

pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace("%20", " ").replace("%3A", ":").replace("%2F", "/"))
    })
}

pub(crate) struct Cli {
    pub client: BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
}

/// An authorization URL for scope `openid` with a fresh PKCE challenge (its verifier
/// dropped: for tests that stop before the token request).
pub(crate) fn openid_authorize_url(cli: &Cli) -> oauth2::url::Url {
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    cli.client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scope(Scope::new("openid".into()))
        .url()
        .0
}

pub(crate) fn public_client(b: &Browser, redirect: &str) -> Cli {
    Cli {
        client: BasicClient::new(ClientId::new("idca-cli".into()))
            .set_auth_uri(AuthUrl::new(format!("{}/oauth/authorize", b.base)).unwrap())
            .set_token_uri(TokenUrl::new(format!("{}/oauth/token", b.base)).unwrap())
            .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap()),
    }
}

/// Exchanges a code with the oauth2 crate (code + PKCE verifier).
pub(crate) async fn exchange(
    b: &Browser,
    cli: &Cli,
    code: String,
    verifier: PkceCodeVerifier,
) -> oauth2::basic::BasicTokenResponse {
    let http = oauth_http(b.http.clone());
    cli.client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap()
}

/// Runs the browser part of code + PKCE: returns (code, verifier, the final redirect).
pub(crate) async fn authorize_with_login(
    b: &mut Browser,
    cli: &Cli,
    scopes: &[&str],
) -> (String, PkceCodeVerifier, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = cli.client.authorize_url(CsrfToken::new_random).set_pkce_challenge(challenge);
    for s in scopes {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    let (url, state) = req.add_extra_param("nonce", "n-0S6_WzA2Mj").url();
    let login = b.get(url.as_str()).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let done = b.login(&login, "alice", PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let redirect = done.location();
    assert_eq!(query_param(&redirect, "state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(query_param(&redirect, "iss").as_deref(), Some(b.base.as_str()));
    (query_param(&redirect, "code").unwrap(), verifier, redirect)
}

/// GET userinfo with a bearer token.
pub(crate) async fn userinfo(b: &Browser, access_token: &str) -> Value {
    let r = b.http.get(format!("{}/oauth/userinfo", b.base)).bearer_auth(access_token).send().await.unwrap();
    r.json().await.unwrap()
}

/// Checks a JWT with the server's JWKS and returns its claims.
pub(crate) async fn verify_jwt(b: &Browser, token: &str, typ: &str) -> Value {
    let jwks: Value = b.http.get(format!("{}/oauth/jwks", b.base)).send().await.unwrap().json().await.unwrap();
    let jws = idca::jose::CompactJws::parse(token, idca::jose::JsonDepth::default()).unwrap();
    assert_eq!(jws.header.typ.as_deref(), Some(typ));
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"].as_str() == jws.header.kid.as_deref()).unwrap();
    let jwk = idca::jose::Jwk::from_value(key).unwrap();
    jws.verify(&jwk).unwrap()
}

#[tokio::test]
async fn code_flow_with_pkce_issues_verifiable_tokens() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1:53123/callback");
    let (code, verifier, redirect) = authorize_with_login(&mut b, &cli, &["openid", "profile", "email", "acme"]).await;
    assert!(redirect.starts_with("http://127.0.0.1:53123/callback?code="));
    let token = exchange(&b, &cli, code, verifier).await;
    let at = verify_jwt(&b, token.access_token().secret(), "at+jwt").await;
    assert_eq!(at["sub"], "alice");
    assert_eq!(at["client_id"], "idca-cli");
    assert_eq!(at["iss"], b.base);
    let scope = at["scope"].as_str().unwrap();
    assert!(scope.contains("acme") && scope.contains("openid"), "{scope}");
    for claim in ["exp", "iat", "jti", "aud"] {
        assert!(!at[claim].is_null(), "missing {claim}");
    }
    assert!(token.refresh_token().is_some());
    server.stop().await;
}

#[tokio::test]
async fn id_token_userinfo_and_session_reuse() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let (code, verifier, _) = authorize_with_login(&mut b, &cli, &["openid", "profile", "email"]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret().as_str()),
        ("client_id", "idca-cli"),
        ("redirect_uri", "http://127.0.0.1/callback"),
    ];
    let r = b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let id = verify_jwt(&b, body["id_token"].as_str().unwrap(), "JWT").await;
    assert_eq!(id["aud"], "idca-cli");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["name"], "Alice Liddell");
    assert_eq!(id["email"], "alice@example.test");
    let digest = ring::digest::digest(&ring::digest::SHA256, body["access_token"].as_str().unwrap().as_bytes());
    assert_eq!(id["at_hash"], crate::client::b64(&digest.as_ref()[..16]));
    let info = userinfo(&b, body["access_token"].as_str().unwrap()).await;
    assert_eq!(
        info,
        json!({"sub": "alice", "name": "Alice Liddell", "preferred_username": "alice", "email": "alice@example.test"})
    );
    // The browser has a session now: a second authorization skips the login page.
    let url = openid_authorize_url(&cli);
    let again = b.get(url.as_str()).await;
    assert_eq!(again.status, 303);
    assert!(query_param(&again.location(), "code").is_some());
    server.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let (code, verifier, _) = authorize_with_login(&mut b, &cli, &["openid", "acme"]).await;
    let first = exchange(&b, &cli, code, verifier).await;
    let http = oauth_http(b.http.clone());
    let r1 = first.refresh_token().unwrap().clone();
    let second = cli.client.exchange_refresh_token(&r1).request_async(&http).await.unwrap();
    let r2 = second.refresh_token().unwrap().clone();
    assert_ne!(r1.secret(), r2.secret());
    // Reusing the first refresh token is refused and kills the family.
    let err = cli.client.exchange_refresh_token(&r1).request_async(&http).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
    let err = cli.client.exchange_refresh_token(&r2).request_async(&http).await.unwrap_err();
    assert!(format!("{err:?}").contains("invalid_grant"), "{err:?}");
    // So are the access tokens of the family.
    let r = b
        .http
        .get(format!("{}/oauth/userinfo", b.base))
        .bearer_auth(second.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    server.stop().await;
}

#[tokio::test]
async fn client_credentials_for_confidential_clients() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let http = oauth_http(b.http.clone());
    let backend = BasicClient::new(ClientId::new("backend".into()))
        .set_client_secret(ClientSecret::new(SECRET.into()))
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", b.base)).unwrap());
    let token =
        backend.exchange_client_credentials().add_scope(Scope::new("acme".into())).request_async(&http).await.unwrap();
    let at = verify_jwt(&b, token.access_token().secret(), "at+jwt").await;
    assert_eq!((at["sub"].as_str(), at["scope"].as_str()), (Some("backend"), Some("acme")));
    assert!(token.refresh_token().is_none());
    // client_secret_post works too.
    let r = b
        .http
        .post(format!("{}/oauth/token", b.base))
        .form(&[("grant_type", "client_credentials"), ("client_id", "backend"), ("client_secret", SECRET)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn discovery_documents_match_what_is_served() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let get = |p: &str| b.http.get(format!("{}{p}", b.base)).send();
    let rfc8414: Value = get("/.well-known/oauth-authorization-server").await.unwrap().json().await.unwrap();
    let oidc: Value = get("/.well-known/openid-configuration").await.unwrap().json().await.unwrap();
    assert_eq!(rfc8414, oidc);
    assert_eq!(oidc["issuer"], b.base);
    assert_eq!(oidc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(oidc["authorization_response_iss_parameter_supported"], true);
    let jwks: Value = b.http.get(oidc["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none(), "private key in the JWKS");
    // The token endpoint refuses a GET; a POST without a client is invalid_client.
    let token = oidc["token_endpoint"].as_str().unwrap();
    let r = b.http.post(token).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

pub(crate) fn refresh(s: &str) -> RefreshToken {
    RefreshToken::new(s.to_owned())
}

#[tokio::test]
async fn introspection_and_revocation() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let (code, verifier, _) = authorize_with_login(&mut b, &cli, &["openid", "acme"]).await;
    let t = exchange(&b, &cli, code, verifier).await;
    let access = t.access_token().secret().clone();
    let refresh = t.refresh_token().unwrap().secret().clone();
    let introspect = |token: String| {
        let r = b
            .http
            .post(format!("{}/oauth/introspect", b.base))
            .basic_auth("backend", Some(SECRET))
            .form(&[("token", token)])
            .send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let a = introspect(access.clone()).await;
    assert_eq!(
        (a["active"].as_bool(), a["sub"].as_str(), a["client_id"].as_str()),
        (Some(true), Some("alice"), Some("idca-cli"))
    );
    assert_eq!(introspect(refresh.clone()).await["active"], true);
    assert_eq!(introspect("nonsense".into()).await, json!({"active": false}));
    // A public client may not introspect.
    let r = b
        .http
        .post(format!("{}/oauth/introspect", b.base))
        .form(&[("token", access.as_str()), ("client_id", "idca-cli")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another client revoking the token changes nothing; unknown tokens get 200 too.
    let revoke = |form: Vec<(&'static str, String)>, basic: Option<(&'static str, &'static str)>| {
        let mut r = b.http.post(format!("{}/oauth/revoke", b.base)).form(&form);
        if let Some((id, s)) = basic {
            r = r.basic_auth(id, Some(s));
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(revoke(vec![("token", refresh.clone())], Some(("backend", SECRET))).await, 200);
    assert_eq!(introspect(refresh.clone()).await["active"], true);
    assert_eq!(revoke(vec![("token", "unknown".into()), ("client_id", "idca-cli".into())], None).await, 200);
    // The owner revokes its refresh token: the grant, and so the access token, die.
    assert_eq!(revoke(vec![("token", refresh.clone()), ("client_id", "idca-cli".into())], None).await, 200);
    assert_eq!(introspect(refresh).await["active"], false);
    assert_eq!(introspect(access.clone()).await["active"], false);
    let r = b.http.get(format!("{}/oauth/userinfo", b.base)).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn claims_requested_with_values_reach_the_id_token() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let claims = json!({"id_token": {"keyauth": {"essential": true, "value": "tok.thumb"}, "acme_aud": {"value": "https://acme.test/chal/1"}, "name": null}});
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let cli = public_client(&b, "http://127.0.0.1/callback");
    let (url, _) = cli
        .client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scope(Scope::new("openid".into()))
        .add_extra_param("claims", claims.to_string())
        .url();
    let login = b.get(url.as_str()).await;
    let done = b.login(&login, "alice", PASSWORD).await;
    let code = query_param(&done.location(), "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.secret().as_str()),
        ("client_id", "idca-cli"),
        ("redirect_uri", "http://127.0.0.1/callback"),
    ];
    let body: Value =
        b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap().json().await.unwrap();
    let id = verify_jwt(&b, body["id_token"].as_str().unwrap(), "JWT").await;
    assert_eq!(id["keyauth"], "tok.thumb");
    assert_eq!(id["acme_aud"], "https://acme.test/chal/1");
    // Registered claims cannot be set this way.
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = cli
        .client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scope(Scope::new("openid".into()))
        .add_extra_param("claims", json!({"id_token": {"sub": {"value": "root"}}}).to_string())
        .url();
    let page = b.get(url.as_str()).await;
    assert_eq!(query_param(&page.location(), "error").as_deref(), Some("invalid_request"));
    server.stop().await;
}

#[tokio::test]
async fn rotated_keys_stay_published_and_old_tokens_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = idca::config::Config::default();
    config.storage.data_dir = dir.path().join("data");
    let first = idca::cli::rotate_oauth_key(&config).await.unwrap();
    let second = idca::cli::rotate_oauth_key(&config).await.unwrap();
    assert_ne!(first, second);
    // The binary does the same (and finds the store free again).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
        .args(["oauth-rotate-key", "--data"])
        .arg(&config.storage.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let third =
        String::from_utf8(out.stdout).unwrap().split_whitespace().nth(3).unwrap().trim_end_matches(';').to_owned();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.management.listen = String::new();
    let server = idca::app::start(config, idca::app::StartOptions::default()).await.unwrap();
    let root = reqwest::Certificate::from_pem(server.root_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
    let jwks: Value = http
        .get(server.directory_url().replace("/directory", "/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 3, "{kids:?}");
    for kid in [&first, &second, &third] {
        assert!(kids.contains(&kid.as_str()), "{kid} missing from {kids:?}");
    }
    server.stop().await;
}

/// One reading of credential headers everywhere: an `Authorization` or `DPoP` header
/// that is not ASCII is a malformed request (400 `invalid_request` / 401
/// `invalid_dpop_proof` at the token endpoint, 401 with `error="invalid_request"` on an
/// ACME resource), never taken for a missing credential.
#[tokio::test]
async fn a_non_ascii_credential_header_is_malformed_everywhere() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let latin1 = || reqwest::header::HeaderValue::from_bytes(b"Bearer \xe9t\xe9").unwrap();
    for (method, path) in [
        (reqwest::Method::GET, "/oauth/userinfo"),
        (reqwest::Method::GET, "/clients/x/nonce"),
        (reqwest::Method::POST, "/clients/x/access-token"),
    ] {
        let r = b
            .http
            .request(method, format!("{}{path}", b.base))
            .header(reqwest::header::AUTHORIZATION, latin1())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}");
    }
    let token = |header: &'static str| {
        b.http
            .post(format!("{}/oauth/token", b.base))
            .header(header, latin1())
            .form(&[("grant_type", "client_credentials"), ("client_id", "backend"), ("client_secret", SECRET)])
            .send()
    };
    let r = token("authorization").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = token("dpop").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_dpop_proof");
    let r = b
        .http
        .post(format!("{}/acme/new-order", b.base))
        .header(reqwest::header::AUTHORIZATION, latin1())
        .header(reqwest::header::CONTENT_TYPE, "application/jose+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()[reqwest::header::WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(challenge.contains("invalid_request"), "{challenge}");
    server.stop().await;
}

/// `response_mode=form_post` (OAuth 2.0 Form Post Response Mode): the code, `state` and
/// `iss` come back as a page that POSTs them to the redirect URI, after a login and from
/// a live session alike, with its one script allowed by hash; the code works at the
/// token endpoint; an unknown response mode is `invalid_request`; discovery says so.
#[tokio::test]
async fn form_post_response_mode_posts_the_response_to_the_client() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let url = format!("{}&response_mode=form_post&state=st-1", crate::dpop::cli_authorize_url(&b.base, "openid"));
    let login = b.get(&url).await;
    for page in [b.login(&login, "alice", PASSWORD).await, b.get(&url).await] {
        assert_eq!(page.status, 200, "{}", page.text);
        let csp = page.headers["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(page.text.contains(r#"<form method="post" action="http://127.0.0.1/callback">"#), "{}", page.text);
        assert_eq!((page.field("state"), page.field("iss")), ("st-1".to_owned(), b.base.clone()));
        let code = page.field("code");
        let form = crate::dpop::cli_code_form(&code);
        let r = b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let bad = format!("{}&response_mode=fragment", crate::dpop::cli_authorize_url(&b.base, "openid"));
    let r = b.get(&bad).await;
    assert_eq!(r.status, 303);
    assert_eq!(query_param(&r.location(), "error").as_deref(), Some("invalid_request"), "{}", r.location());
    let meta: Value =
        b.http.get(format!("{}/.well-known/openid-configuration", b.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["response_modes_supported"], json!(["query", "form_post"]));
    server.stop().await;
}

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): with an id_token_hint
/// and a registered post_logout_redirect_uri the session ends (server-side: the old
/// cookie no longer signs in) and the browser goes back with `state`; an unregistered
/// address is refused and ends nothing; without a hint the user confirms on a page whose
/// CSRF token is bound to the session; discovery names the endpoint.
#[tokio::test]
async fn rp_initiated_logout_ends_the_session() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let url = crate::dpop::cli_authorize_url(&b.base, "openid");
    let sign_in = async |b: &mut Browser| {
        let login = b.get(&url).await;
        let done = b.login(&login, "alice", PASSWORD).await;
        let code = crate::dpop::code_of(&done.location());
        let form = crate::dpop::cli_code_form(&code);
        let t: Value =
            b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap().json().await.unwrap();
        t["id_token"].as_str().unwrap().to_owned()
    };
    let id_token = sign_in(&mut b).await;
    assert_eq!(b.get(&url).await.status, 303, "the session signs in");
    let base = b.base.clone();
    let logout = |params: &str| format!("{base}/oauth/logout?{params}");
    let r = b.get(&logout(&format!("id_token_hint={id_token}&post_logout_redirect_uri=https://evil.example/x"))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(b.get(&url).await.status, 303, "a refused logout ends nothing");
    let cookie = b.cookie.clone();
    let r = b
        .get(&logout(&format!(
            "id_token_hint={id_token}&post_logout_redirect_uri=http://127.0.0.1/signed-out&state=bye"
        )))
        .await;
    assert_eq!((r.status, r.location()), (303, "http://127.0.0.1/signed-out?state=bye".to_owned()));
    b.cookie = cookie;
    assert_eq!(b.get(&url).await.status, 200, "the old session cookie no longer signs in: the login page");

    // Without a hint: a confirmation page first.
    sign_in(&mut b).await;
    let confirm = b.get(&logout("client_id=idca-cli")).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    assert!(confirm.text.contains("Sign out?"), "{}", confirm.text);
    let post = |b: &Browser, csrf: String| {
        let mut r =
            b.http.post(format!("{}/oauth/logout", b.base)).form(&[("csrf", csrf), ("client_id", "idca-cli".into())]);
        if let Some(c) = &b.cookie {
            r = r.header("cookie", c.clone());
        }
        r.send()
    };
    assert_eq!(post(&b, "forged".into()).await.unwrap().status(), 403);
    assert_eq!(b.get(&url).await.status, 303, "a forged confirmation ends nothing");
    let r = post(&b, confirm.field("csrf")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Signed out"));
    assert_eq!(b.get(&url).await.status, 200, "signed out");
    let meta: Value =
        b.http.get(format!("{}/.well-known/openid-configuration", b.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["end_session_endpoint"], format!("{}/oauth/logout", b.base));
    server.stop().await;
}
