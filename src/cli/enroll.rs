//! `idca enroll`: the seed's end-to-end demo client. Against a running idca it logs a
//! user in (authorization code + PKCE through the login form, scripted with
//! `--user/--password`), registers a device, opens an ACME account with the device key
//! (which is also its DPoP key), orders a client identity certificate, answers
//! `wire-dpop-01` with a DPoP access token and `wire-oidc-01` with an id_token, and
//! writes the key and the certificate chain. With `--device-grant` it logs in as a
//! headless device does instead (RFC 8628): the user approves a code in a browser.

use std::path::PathBuf;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::acme_client::{AccountKey, AcmeClient};

use crate::jose::b64_encode;
use crate::oauth::percent_encode as pct;

/// What `idca enroll` needs.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// idca's base URL, e.g. `https://localhost:14000`.
    pub server: String,
    /// None: the demo user (`oauth.demo_user`).
    pub user: Option<String>,
    /// None with the demo user: read from `demo-password` beside the root file.
    pub password: Option<String>,
    pub login: Login,
    /// The root to trust (`data/root.pem`).
    pub ca: PathBuf,
    /// Output files: `{out}.pem` (chain) and `{out}-key.pem`.
    pub out: PathBuf,
}

/// How `idca enroll` logs the user in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// Scripted: fetch the login form and post `--user/--password` (or the demo user's).
    Form,
    /// The user's browser, redirected to a loopback port (RFC 8252).
    Browser,
    /// The device authorization grant (RFC 8628): the user approves a printed code.
    DeviceGrant,
}

type Fail = String;

fn step(n: u32, what: &str) {
    println!("[{n:>2}] {what}");
}

struct Http {
    client: reqwest::Client,
    cookie: Option<String>,
}

impl Http {
    async fn send(&mut self, r: reqwest::RequestBuilder) -> Result<(u16, HeaderMap, String), Fail> {
        let r = match &self.cookie {
            Some(c) => r.header("cookie", c.clone()),
            None => r,
        };
        let resp = r.send().await.map_err(|e| format!("request failed: {e}"))?;
        if let Some(set) = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, headers, text))
    }
}

/// A string member the flow cannot go on without.
fn need(v: &Value, key: &str, what: &str) -> Result<String, Fail> {
    v.get(key).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{what} has no `{key}`"))
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn field(page: &str, name: &str) -> Result<String, Fail> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).ok_or_else(|| format!("the login page has no `{name}` field"))? + marker.len();
    Ok(page.get(start..).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned())
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_owned()))
}

/// A signed ACME request; a refusal names the server's problem detail.
async fn acme_post(
    acme: &mut AcmeClient,
    what: &'static str,
    url: &str,
    payload: Option<&Value>,
) -> Result<(Value, Option<String>, String), Fail> {
    match acme.post(what, url, payload).await {
        Ok(r) => Ok(r),
        Err(e) => Err(match acme.last_detail.take() {
            Some(detail) => format!("{url}: {e}: {detail}"),
            None => format!("{url}: {e}"),
        }),
    }
}

/// Logs in (the form, or the device grant) and returns the token response, with the
/// OIDC `claims` request when given.
async fn login(http: &mut Http, o: &EnrollOptions, meta: &Value, claims: Option<&Value>) -> Result<Value, Fail> {
    match o.login {
        Login::Form => form_login(http, o, meta, claims).await,
        Login::Browser => browser_login(http, meta, claims).await,
        Login::DeviceGrant => device_login(http, meta, claims).await,
    }
}

/// RFC 8628 §3.1-3.5: ask for a code, show it, poll until the user decides.
async fn device_login(http: &mut Http, meta: &Value, claims: Option<&Value>) -> Result<Value, Fail> {
    let mut form = vec![("client_id", "idca-cli".to_owned()), ("scope", SCOPE.to_owned())];
    if let Some(c) = claims {
        form.push(("claims", c.to_string()));
    }
    let body = form.iter().map(|(k, v)| format!("{k}={}", pct(v))).collect::<Vec<_>>().join("&");
    let endpoint = need(meta, "device_authorization_endpoint", "the server metadata")?;
    let r = http.client.post(endpoint).header("content-type", "application/x-www-form-urlencoded").body(body);
    let (status, _, text) = http.send(r).await?;
    if status != 200 {
        return Err(format!("device authorization refused: {text}"));
    }
    let d = json_of(&text);
    println!(
        "     open {} and approve code {}",
        &need(&d, "verification_uri_complete", "the device authorization response")?,
        &need(&d, "user_code", "the device authorization response")?
    );
    let mut interval = d["interval"].as_u64().unwrap_or(5).max(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(d["expires_in"].as_u64().unwrap_or(600));
    let poll = format!(
        "grant_type={}&device_code={}&client_id=idca-cli",
        pct("urn:ietf:params:oauth:grant-type:device_code"),
        pct(&need(&d, "device_code", "the device authorization response")?)
    );
    let token_url = need(meta, "token_endpoint", "the server metadata")?;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        let r =
            http.client.post(&token_url).header("content-type", "application/x-www-form-urlencoded").body(poll.clone());
        let (status, _, text) = http.send(r).await?;
        let answer = json_of(&text);
        match (status, answer["error"].as_str()) {
            (200, _) => return Ok(answer),
            (_, Some("authorization_pending")) => {}
            (_, Some("slow_down")) => interval += 5,
            _ => return Err(format!("device login failed: {text}")),
        }
    }
    Err("the device code expired before it was approved".into())
}

/// The user and password for the login form: as given, or the demo user's.
fn credentials(o: &EnrollOptions) -> Result<(String, String), Fail> {
    match (&o.user, &o.password) {
        (Some(user), Some(password)) => Ok((user.clone(), password.clone())),
        (Some(_), None) => Err("give --password (or set IDCA_PASSWORD), or use --device-grant".into()),
        (None, Some(password)) => Ok(("demo".into(), password.clone())),
        (None, None) => {
            let path = o.ca.with_file_name(crate::app::DEMO_PASSWORD_FILE);
            let password = std::fs::read_to_string(&path).map_err(|e| {
                format!("no --user given and cannot read the demo user's password from {}: {e}", path.display())
            })?;
            Ok(("demo".into(), password.trim().to_owned()))
        }
    }
}

const SCOPE: &str = "openid profile acme";

/// One authorization code request (RFC 6749 §4.1.1 with PKCE S256, RFC 7636 §4.2).
struct CodeRequest {
    url: String,
    redirect_uri: String,
    verifier: String,
    state: String,
}

impl CodeRequest {
    fn new(meta: &Value, redirect_uri: &str, claims: Option<&Value>) -> Result<Self, Fail> {
        let verifier = format!("{}{}", crate::model::random_token(), crate::model::random_token());
        let challenge = b64_encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
        let state = crate::model::random_token();
        let mut url = format!(
            "{}?response_type=code&client_id=idca-cli&redirect_uri={}&scope={}&state={state}&code_challenge={challenge}&code_challenge_method=S256",
            &need(meta, "authorization_endpoint", "the server metadata")?,
            pct(redirect_uri),
            pct(SCOPE),
        );
        if let Some(c) = claims {
            url.push_str(&format!("&claims={}", pct(&c.to_string())));
        }
        Ok(Self { url, redirect_uri: redirect_uri.to_owned(), verifier, state })
    }

    /// The code from the redirect's query (RFC 6749 §4.1.2), after checking `state`.
    fn code_from(&self, query: &str) -> Result<String, Fail> {
        let query = format!("?{}", query.split_once('?').map_or(query, |(_, q)| q));
        if let Some(error) = query_param(&query, "error") {
            return Err(format!("the authorization server answered {error}"));
        }
        if query_param(&query, "state").as_deref() != Some(self.state.as_str()) {
            return Err("the redirect carries another state".into());
        }
        query_param(&query, "code").ok_or_else(|| "the redirect carries no code".into())
    }

    /// Exchanges the code (RFC 6749 §4.1.3, RFC 7636 §4.5).
    async fn exchange(&self, http: &mut Http, meta: &Value, code: &str) -> Result<Value, Fail> {
        let body = format!(
            "grant_type=authorization_code&code={}&code_verifier={}&client_id=idca-cli&redirect_uri={}",
            pct(code),
            self.verifier,
            pct(&self.redirect_uri)
        );
        let token_url = need(meta, "token_endpoint", "the server metadata")?;
        let r = http.client.post(token_url).header("content-type", "application/x-www-form-urlencoded").body(body);
        let (status, _, text) = http.send(r).await?;
        if status != 200 {
            return Err(format!("token request failed: {text}"));
        }
        Ok(json_of(&text))
    }
}

/// Logs in with the form (scripted with `--user/--password`).
async fn form_login(http: &mut Http, o: &EnrollOptions, meta: &Value, claims: Option<&Value>) -> Result<Value, Fail> {
    let request = CodeRequest::new(meta, "http://127.0.0.1/callback", claims)?;
    let (status, headers, page) = http.send(http.client.get(&request.url)).await?;
    let location = if status == 303 {
        headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    } else {
        let (username, password) = (o.user.clone().unwrap_or_default(), o.password.clone().unwrap_or_default());
        let form = [
            ("request", field(&page, "request")?),
            ("csrf", field(&page, "csrf")?),
            ("username", username),
            ("password", password),
        ];
        let body = form.iter().map(|(k, v)| format!("{k}={}", pct(v))).collect::<Vec<_>>().join("&");
        let login = format!("{}/oauth/login", o.server);
        let r = http.client.post(login).header("content-type", "application/x-www-form-urlencoded").body(body);
        let (status, headers, _) = http.send(r).await?;
        if status != 303 {
            return Err(format!("login failed (HTTP {status}): check --user and --password"));
        }
        headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let code = request.code_from(&location)?;
    request.exchange(http, meta, &code).await
}

/// Logs in through the user's browser (RFC 8252 §7.3): a one-shot listener on a loopback
/// port receives the redirect. Waits up to ten minutes.
async fn browser_login(http: &mut Http, meta: &Value, claims: Option<&Value>) -> Result<Value, Fail> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("loopback listener: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let request = CodeRequest::new(meta, &format!("http://127.0.0.1:{port}/callback"), claims)?;
    println!("     open {}", request.url);
    let wait = async {
        loop {
            let (mut socket, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let Some(target) = read_request_target(&mut socket).await else { continue };
            if !target.starts_with("/callback") {
                respond(&mut socket, "404 Not Found", "Not found.").await;
                continue;
            }
            let result = request.code_from(&target);
            let page = match &result {
                Ok(_) => "Signed in. idca enroll continues; you can close this tab.",
                Err(_) => "Sign-in failed; see the terminal.",
            };
            respond(&mut socket, "200 OK", page).await;
            return result;
        }
    };
    let code = tokio::time::timeout(std::time::Duration::from_secs(600), wait)
        .await
        .map_err(|_| "no sign-in within ten minutes".to_owned())??;
    request.exchange(http, meta, &code).await
}

/// The request target of an HTTP/1.1 GET (the first line), or None.
async fn read_request_target(socket: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n)?);
        }
        Some(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read).await.ok()??;
    let line = String::from_utf8_lossy(&buf).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => Some(target.to_owned()),
        _ => None,
    }
}

async fn respond(socket: &mut tokio::net::TcpStream, status: &str, text: &str) {
    use tokio::io::AsyncWriteExt;
    let body = format!("<!doctype html><title>idca enroll</title><p>{text}</p>");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Runs the whole enrollment, printing each step.
/// An enrolled identity: the certificate chain and its key, PEM.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub chain_pem: String,
    pub key_pem: String,
}

/// `idca enroll`: the whole flow, printing each step, then writes `{out}.pem` and
/// `{out}-key.pem`.
pub async fn enroll(o: &EnrollOptions) -> Result<(), Fail> {
    let enrolled = enroll_identity(o, &|n, what| {
        if n == 0 { println!("     {what}") } else { step(n, what) }
    })
    .await?;
    // `{out}.pem`, appended (not `with_extension`, which would eat a dot in the name).
    let mut chain_path = o.out.clone().into_os_string();
    chain_path.push(".pem");
    let chain_path = PathBuf::from(chain_path);
    let mut key_path = o.out.clone().into_os_string();
    key_path.push("-key.pem");
    let key_path = PathBuf::from(key_path);
    // Both synced, then renamed into place; the key is created mode 0600.
    let mut files = crate::files::StagedFiles::default();
    files.stage(&chain_path, enrolled.chain_pem.as_bytes(), false)?;
    files.stage(&key_path, enrolled.key_pem.as_bytes(), true)?;
    files.commit()?;
    println!("     wrote {} and {}", chain_path.display(), key_path.display());
    Ok(())
}

/// The enrollment flow (login, device, ACME identity order, DPoP access token,
/// wire-dpop-01, wire-oidc-01, finalize); `progress(n, what)` hears each step (`n` 1 to
/// 10) and details (`n` 0). Also what `idca-load --mode identity` runs.
pub async fn enroll_identity(o: &EnrollOptions, progress: &(dyn Fn(u32, &str) + Sync)) -> Result<Enrolled, Fail> {
    let step = progress;
    crate::install_crypto_provider();
    // The form login's user and password, settled once (the demo user's file read once).
    let settled;
    let o = if o.login == Login::Form {
        let (user, password) = credentials(o)?;
        settled = EnrollOptions { user: Some(user), password: Some(password), ..o.clone() };
        &settled
    } else {
        o
    };
    let root = std::fs::read(&o.ca).map_err(|e| format!("cannot read {}: {e}", o.ca.display()))?;
    let cert = reqwest::Certificate::from_pem(&root).map_err(|e| format!("{}: {e}", o.ca.display()))?;
    let client = reqwest::Client::builder()
        .tls_certs_only([cert])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut http = Http { client, cookie: None };

    step(1, "discovery");
    let (_, _, meta) =
        http.send(http.client.get(format!("{}/.well-known/oauth-authorization-server", o.server))).await?;
    let meta = json_of(&meta);

    match o.login {
        Login::Form => {
            step(2, &format!("login as {} (authorization code + PKCE)", o.user.as_deref().unwrap_or_default()))
        }
        Login::Browser => step(2, "login in your browser (authorization code + PKCE, loopback redirect)"),
        Login::DeviceGrant => step(2, "login (device authorization grant)"),
    }
    let tokens = login(&mut http, o, &meta, None).await?;
    let user_token = need(&tokens, "access_token", "the token response")?;
    if tokens["id_token"].is_null() {
        return Err("the token response has no id_token".into());
    }

    step(3, "register the device (POST /clients)");
    let r = http
        .client
        .post(format!("{}/clients", o.server))
        .bearer_auth(&user_token)
        .header("content-type", "application/json")
        .body(json!({"label": "idca enroll"}).to_string());
    let (status, _, text) = http.send(r).await?;
    if status != 201 {
        return Err(format!("device registration failed: {text}"));
    }
    let device = json_of(&text);
    let client_id = need(&device, "client_id", "the device registration response")?;
    let device_id = need(&device, "id", "the device registration response")?;
    let text_of = |k: &str| device[k].as_str().unwrap_or_default().to_owned();
    let (handle, name, team, domain) = (text_of("handle"), text_of("name"), text_of("team"), text_of("domain"));
    step(0, &format!("device {device_id}, client id {client_id}"));

    step(4, "ACME account with the device key (Ed25519, also the DPoP key)");
    let (_, _, dir) = http.send(http.client.get(format!("{}/directory", o.server))).await?;
    let mut acme = AcmeClient::with_key(http.client.clone(), json_of(&dir), AccountKey::ed25519()?)
        .with_bearer(user_token.clone());
    acme.ensure_account().await.map_err(|e| format!("newAccount: {e}"))?;

    step(5, "order a client identity certificate (wireapp-device + wireapp-user)");
    let device_value = json!({"client-id": client_id, "handle": handle, "name": name, "domain": domain}).to_string();
    let user_value = json!({"handle": handle, "name": name, "domain": domain}).to_string();
    let new_order = acme.url("newOrder")?;
    let ids = json!({"identifiers": [{"type": "wireapp-device", "value": device_value}, {"type": "wireapp-user", "value": user_value}]});
    let (order, order_url, _) = acme_post(&mut acme, "newOrder", &new_order, Some(&ids)).await?;
    let order_url = order_url.unwrap_or_default();
    let (mut dpop, mut oidc) = (Value::Null, Value::Null);
    for url in order["authorizations"].as_array().cloned().unwrap_or_default() {
        let (a, _, _) = acme_post(&mut acme, "authz", url.as_str().unwrap_or_default(), None).await?;
        let ch = a["challenges"][0].clone();
        if ch["type"] == "wire-dpop-01" { dpop = ch } else { oidc = ch }
    }

    step(6, "backend nonce (HEAD /clients/{id}/nonce)");
    let r = http.client.head(format!("{}/clients/{device_id}/nonce", o.server)).bearer_auth(&user_token);
    let (_, h, _) = http.send(r).await?;
    let nonce = h.get("replay-nonce").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();

    step(7, "DPoP access token (POST /clients/{id}/access-token)");
    let claims = json!({
        "sub": client_id, "aud": dpop["url"], "iat": now(), "nbf": now(), "exp": now() + 120,
        "jti": crate::model::random_token(), "nonce": nonce, "htm": "POST", "htu": dpop["target"],
        "chal": dpop["token"], "handle": handle, "team": team, "name": name,
    });
    let key = acme.key();
    let proof = key.compact(&json!({"alg": key.alg(), "typ": "dpop+jwt", "jwk": key.jwk()}), &claims)?;
    let r = http
        .client
        .post(&need(&dpop, "target", "the wire-dpop-01 challenge")?)
        .bearer_auth(&user_token)
        .header("DPoP", proof);
    let (status, _, text) = http.send(r).await?;
    if status != 200 {
        return Err(format!("access token refused: {text}"));
    }
    let access_token = json_of(&text)["token"].as_str().unwrap_or_default().to_owned();

    step(8, "answer wire-dpop-01");
    let answer = json!({"access_token": access_token});
    let (r, _, _) =
        acme_post(&mut acme, "challenge", &need(&dpop, "url", "the wire-dpop-01 challenge")?, Some(&answer)).await?;
    step(0, &format!("challenge {}", r["status"].as_str().unwrap_or("?")));

    step(9, "id_token with keyauth and acme_aud, answer wire-oidc-01");
    let keyauth = format!("{}.{}", &need(&oidc, "token", "the wire-oidc-01 challenge")?, acme.key().thumbprint()?);
    let wanted = json!({"id_token": {"keyauth": {"essential": true, "value": keyauth}, "acme_aud": {"essential": true, "value": oidc["url"]}}});
    let tokens = login(&mut http, o, &meta, Some(&wanted)).await?;
    let answer = json!({"id_token": tokens["id_token"]});
    let (r, _, _) =
        acme_post(&mut acme, "challenge", &need(&oidc, "url", "the wire-oidc-01 challenge")?, Some(&answer)).await?;
    step(0, &format!("challenge {}", r["status"].as_str().unwrap_or("?")));

    step(10, "CSR with a new certificate key, finalize, download");
    let cert_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = identity_subject(&domain, &name);
    for uri in [client_id.as_str(), handle.as_str()] {
        params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().map_err(|_| format!("bad URI {uri}"))?));
    }
    let csr = params.serialize_request(&cert_key).map_err(|e| e.to_string())?;
    let finalize = need(&order, "finalize", "the order")?;
    let (fin, _, _) = acme_post(&mut acme, "finalize", &finalize, Some(&json!({"csr": b64_encode(csr.der())}))).await?;
    let cert_url =
        fin["certificate"].as_str().ok_or_else(|| format!("order not valid: {fin} ({order_url})"))?.to_owned();
    let (_, _, chain) = acme_post(&mut acme, "certificate", &cert_url, None).await?;
    if !chain.contains("BEGIN CERTIFICATE") {
        return Err(format!("the certificate download returned no certificate: {chain}"));
    }
    Ok(Enrolled { chain_pem: chain, key_pem: cert_key.serialize_pem() })
}

/// An identity CSR's subject as Wire's core-crypto writes it (and step-ca checks it):
/// `O={domain}`, `displayName={name}` (OID 2.16.840.1.113730.3.1.241).
pub fn identity_subject(domain: &str, name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, domain);
    dn.push(
        rcgen::DnType::CustomDnType(vec![2, 16, 840, 1, 113730, 3, 1, 241]),
        rcgen::DnValue::Utf8String(name.into()),
    );
    dn
}
