//! The seed's flow end to end: a user logs in, registers a device, the device proves its
//! key (the ACME account key) with DPoP, and the order's two identity challenges yield a
//! client identity certificate naming the device and the user.

use serde_json::{Value, json};
use x509_parser::prelude::*;

use crate::certs::first_cert_der;
use crate::client::{Key, RawClient, b64};
use crate::oauth::{Browser, Page, oauth_server};

const DOMAIN: &str = "wire.example.test";
const HANDLE: &str = "wireapp://%40alice_wire@wire.example.test";
const NAME: &str = "Alice Liddell";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A compact JWT signed by an ACME account key (the device's DPoP key).
fn sign_with(key: &Key, header: Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    format!("{input}.{}", b64(key.sign(input.as_bytes())))
}

fn param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_owned()))
}

/// Code + PKCE through the browser; `claims` is the OIDC claims parameter.
async fn tokens(b: &mut Browser, claims: Option<&Value>) -> Value {
    tokens_as(b, claims, "alice").await
}

/// [`tokens`] logged in as `username`.
async fn tokens_as(b: &mut Browser, claims: Option<&Value>, username: &str) -> Value {
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let mut url = format!(
        "{}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=http://127.0.0.1/callback&scope=openid%20profile&code_challenge={challenge}&code_challenge_method=S256",
        b.base
    );
    if let Some(c) = claims {
        let enc: String = c.to_string().bytes().map(|x| format!("%{x:02X}")).collect();
        url.push_str(&format!("&claims={enc}"));
    }
    let first: Page = b.get(&url).await;
    let done = if first.status == 303 { first } else { b.login(&first, username, "wonderland").await };
    let code = param(&done.location(), "code").unwrap_or_else(|| panic!("{}", done.location()));
    let form = crate::dpop::cli_code_form(&code);
    b.http.post(format!("{}/oauth/token", b.base)).form(&form).send().await.unwrap().json().await.unwrap()
}

struct Enrollment {
    b: Browser,
    acme: RawClient,
    user_token: String,
    device: Value,
    order: Value,
    order_url: String,
    dpop: Value,
    oidc: Value,
    server: crate::harness::TestServer,
}

async fn start_enrollment(account_key: Key) -> Enrollment {
    start_enrollment_with(account_key, |_| {}).await
}

async fn start_enrollment_with(account_key: Key, tweak: impl FnOnce(&mut idca::config::Config)) -> Enrollment {
    let server = oauth_server(tweak).await;
    let mut b = Browser::new(&server);
    let user_token = tokens(&mut b, None).await["access_token"].as_str().unwrap().to_owned();
    let device: Value =
        b.http.post(format!("{}/clients", b.base)).bearer_auth(&user_token).send().await.unwrap().json().await.unwrap();
    let mut acme = RawClient::new(&server, account_key).await;
    assert_eq!(acme.register().await.status, 201);
    let device_value =
        json!({"client-id": device["client_id"], "handle": HANDLE, "name": NAME, "domain": DOMAIN}).to_string();
    let user_value = json!({"handle": HANDLE, "name": NAME, "domain": DOMAIN}).to_string();
    let r = acme
        .post(
            &acme.url("newOrder"),
            Some(&json!({"identifiers": [{"type": "wireapp-device", "value": device_value}, {"type": "wireapp-user", "value": user_value}]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let order = r.json();
    assert!(order["notBefore"].is_string() && order["notAfter"].is_string() && order["expires"].is_string());
    let order_url = r.location();
    let (mut dpop, mut oidc) = (Value::Null, Value::Null);
    for url in order["authorizations"].as_array().unwrap() {
        let a = acme.post(url.as_str().unwrap(), None).await.json();
        assert_eq!(a["challenges"].as_array().unwrap().len(), 1, "{a}");
        let ch = a["challenges"][0].clone();
        match ch["type"].as_str().unwrap() {
            "wire-dpop-01" => dpop = ch,
            "wire-oidc-01" => oidc = ch,
            other => panic!("{other}"),
        }
    }
    Enrollment { b, acme, user_token, device, order, order_url, dpop, oidc, server }
}

impl Enrollment {
    /// The device's DPoP access token for the wire-dpop-01 challenge, its proof signed
    /// with `key`.
    async fn access_token(&self, key: &Key) -> String {
        let (status, body) = self.token_request(key, "", self.dpop["target"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
    }

    /// A backend nonce and then a token request at `{prefix}/clients/{id}/…` (prefix
    /// `""` or a wire-server API version such as `/v5`), the proof's `htu` being `htu`.
    async fn token_request(&self, key: &Key, prefix: &str, htu: &str) -> (u16, Value) {
        let cid = self.device["id"].as_str().unwrap();
        let r = self
            .b
            .http
            .head(format!("{}{prefix}/clients/{cid}/nonce", self.b.base))
            .bearer_auth(&self.user_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let nonce = r.headers()["replay-nonce"].to_str().unwrap().to_owned();
        let claims = json!({
            "sub": self.device["client_id"], "aud": self.dpop["url"], "iat": now(), "nbf": now(), "exp": now() + 120,
            "jti": idca::model::random_token(), "nonce": nonce, "htm": "POST", "htu": htu,
            "chal": self.dpop["token"], "handle": HANDLE, "team": "wire", "name": NAME,
        });
        let proof = sign_with(key, json!({"alg": key.alg(), "typ": "dpop+jwt", "jwk": key.jwk()}), &claims);
        let r = self
            .b
            .http
            .post(format!("{}{prefix}/clients/{cid}/access-token", self.b.base))
            .bearer_auth(&self.user_token)
            .header("DPoP", proof)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A CSR naming the device and the user as URIs, with a fresh key of the account
    /// key's type (as a Wire cipher suite signs both with one scheme).
    fn csr(&self) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = idca::cli::enroll::identity_subject(DOMAIN, NAME);
        p.subject_alt_names = vec![
            rcgen::SanType::URI(self.device["client_id"].as_str().unwrap().try_into().unwrap()),
            rcgen::SanType::URI(HANDLE.try_into().unwrap()),
        ];
        let alg = match &self.acme.key {
            Key::P521(_) => return crate::client::p521_csr(&p, &Key::p521()),
            Key::P256(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
            Key::P384(_) => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_ED25519,
        };
        p.serialize_request(&rcgen::KeyPair::generate_for(alg).unwrap()).unwrap().der().to_vec()
    }

    async fn id_token(&mut self, keyauth: &str) -> String {
        let claims = json!({"id_token": {"keyauth": {"essential": true, "value": keyauth}, "acme_aud": {"essential": true, "value": self.oidc["url"]}}});
        tokens(&mut self.b, Some(&claims)).await["id_token"].as_str().unwrap().to_owned()
    }
}

/// Every signature scheme of Wire's cipher suites (Ed25519, P-256, P-384, and P-521 for
/// suite 5: ES512 for the ACME requests and the DPoP proof, a P-521 CSR and leaf key).
#[tokio::test]
async fn the_seed_flow_issues_a_client_identity_certificate() {
    for key in [Key::ed25519(), Key::p256(), Key::p384(), Key::p521()] {
        enroll_with(key).await;
    }
}

async fn enroll_with(key: Key) {
    let alg = key.alg();
    let mut e = start_enrollment(key).await;
    assert!(
        e.dpop["target"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/clients/{}/access-token", e.device["id"].as_str().unwrap()))
    );
    assert_eq!(e.oidc["target"].as_str(), Some(e.b.base.as_str()));
    // wire-dpop-01: the POST is answered already valid, target included.
    let at = e.access_token(&e.acme.key).await;
    let r = e.acme.post(e.dpop["url"].as_str().unwrap(), Some(&json!({"access_token": at}))).await;
    assert_eq!(r.status, 200, "{alg}: {}", r.text);
    assert_eq!(r.json()["status"], "valid", "{alg}: {}", r.text);
    assert!(r.json()["target"].is_string());
    // wire-oidc-01.
    let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
    let id_token = e.id_token(&keyauth).await;
    let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": id_token}))).await;
    assert_eq!(r.json()["status"], "valid", "{}", r.text);
    assert_eq!(e.acme.post(&e.order_url, None).await.json()["status"], "ready");
    // A CSR whose subject does not carry the domain and the display name (step-ca's
    // check) is badCSR and leaves the order ready.
    for (org, name) in [("other.test", NAME), (DOMAIN, "Someone Else")] {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = idca::cli::enroll::identity_subject(org, name);
        p.subject_alt_names = vec![
            rcgen::SanType::URI(e.device["client_id"].as_str().unwrap().try_into().unwrap()),
            rcgen::SanType::URI(HANDLE.try_into().unwrap()),
        ];
        let der = p.serialize_request(&key).unwrap().der().to_vec();
        let fin = e.acme.post(e.order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&der)}))).await;
        fin.assert_problem(400, "badCSR");
    }
    assert_eq!(e.acme.post(&e.order_url, None).await.json()["status"], "ready");
    // Finalize with a CSR naming the device and the user as URIs, O and displayName.
    let csr = e.csr();
    let fin = e.acme.post(e.order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&csr)}))).await;
    assert_eq!(fin.json()["status"], "valid", "{}", fin.text);
    let chain = e.acme.post(fin.json()["certificate"].as_str().unwrap(), None).await.text;
    let der = first_cert_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    // Signed by the intermediate (a P-521 leaf too, whose TBS idca set right and signed).
    let blocks = crate::certs::pem_blocks(&chain);
    let (_, intermediate) = X509Certificate::from_der(&blocks[1]).unwrap();
    cert.verify_signature(Some(intermediate.public_key())).unwrap();
    assert_eq!(cert.subject().to_string(), format!("O={DOMAIN}, CN={NAME}"));
    let curve = cert.public_key().algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    let want = match alg {
        "ES512" => Some("1.3.132.0.35"),
        "ES384" => Some("1.3.132.0.34"),
        "ES256" => Some("1.2.840.10045.3.1.7"),
        _ => None,
    };
    assert_eq!(curve.as_deref(), want, "{alg}: the leaf key is the CSR's");
    let uris = leaf_uris(&cert);
    let device_uri = e.device["client_id"].as_str().unwrap().replace('!', "%21");
    assert_eq!(uris, vec![device_uri, HANDLE.to_owned()]);
    assert!(cert.extended_key_usage().unwrap().unwrap().value.client_auth);
    assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
    assert!(!cert.is_ca());
    e.server.stop().await;
}

/// Wire's clients call the device endpoints under an API version prefix: served the same
/// (`/v0` to `/v99`), the proof's `htu` being the unversioned URL (the challenge target,
/// as core-crypto writes it) at either path; a wrong `htu` is refused at both.
#[tokio::test]
async fn versioned_client_paths_are_served_and_check_the_htu() {
    let e = start_enrollment(Key::ed25519()).await;
    let target = e.dpop["target"].as_str().unwrap().to_owned();
    let cid = e.device["id"].as_str().unwrap();
    for prefix in ["/v5", "/v7", "/v12"] {
        let (status, body) = e.token_request(&e.acme.key, prefix, &target).await;
        assert_eq!(status, 200, "{prefix}: {body}");
        assert_eq!(body["type"], "DPoP");
    }
    let versioned = format!("{}/v5/clients/{cid}/access-token", e.b.base);
    let other_device = format!("{}/clients/0000000000000000/access-token", e.b.base);
    for (prefix, htu) in [("", versioned.as_str()), ("", other_device.as_str()), ("/v5", other_device.as_str())] {
        let (status, body) = e.token_request(&e.acme.key, prefix, htu).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{prefix} {htu}: {body}");
        assert!(body["error_description"].as_str().unwrap().contains("htu"), "{body}");
    }
    let r = e.b.http.head(format!("{}/v100/clients/{cid}/nonce", e.b.base)).bearer_auth(&e.user_token).send();
    assert_eq!(r.await.unwrap().status(), 404, "three digits is not an API version");
    e.server.stop().await;
}

#[tokio::test]
async fn rejects_a_dpop_key_that_is_not_the_account_key_and_a_wrong_keyauth() {
    let mut e = start_enrollment(Key::ed25519()).await;
    // A payload without the token is malformed, and decides nothing.
    for payload in [json!({}), json!({"access_token": 5}), json!({"id_token": "x"})] {
        let r = e.acme.post(e.dpop["url"].as_str().unwrap(), Some(&payload)).await;
        r.assert_problem(400, "malformed");
    }
    assert_eq!(e.acme.post(&e.order_url, None).await.json()["status"], "pending");
    // The access token binds another key (cnf.kid is not the account's thumbprint).
    let other = Key::p256();
    let at = e.access_token(&other).await;
    let r = e.acme.post(e.dpop["url"].as_str().unwrap(), Some(&json!({"access_token": at}))).await;
    assert_eq!(r.json()["status"], "invalid", "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "urn:ietf:params:acme:error:unauthorized");
    // An id_token whose keyauth is for another challenge.
    let id_token = e.id_token("not-this-challenge.x").await;
    let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": id_token}))).await;
    assert_eq!(r.json()["status"], "invalid", "{}", r.text);
    assert_eq!(e.acme.post(&e.order_url, None).await.json()["status"], "invalid");
    e.server.stop().await;
}

#[tokio::test]
async fn rejects_inconsistent_identity_orders() {
    let e = start_enrollment(Key::ed25519()).await;
    let device_value =
        json!({"client-id": e.device["client_id"], "handle": HANDLE, "name": NAME, "domain": DOMAIN}).to_string();
    let other_user =
        json!({"handle": "wireapp://%40bob@wire.example.test", "name": "Bob", "domain": DOMAIN}).to_string();
    for ids in [
        json!([{"type": "wireapp-device", "value": device_value}]),
        json!([{"type": "wireapp-device", "value": device_value}, {"type": "wireapp-user", "value": other_user}]),
        json!([{"type": "wireapp-device", "value": "not json"}, {"type": "wireapp-user", "value": other_user}]),
        json!([{"type": "wireapp-device", "value": device_value}, {"type": "dns", "value": "a.example.test"}]),
    ] {
        let r = e.acme.post(&e.acme.url("newOrder"), Some(&json!({"identifiers": ids}))).await;
        assert_eq!(r.status, 400, "{ids}: {}", r.text);
    }
    e.server.stop().await;
}

/// The URI subject alternative names of a certificate, in order.
fn leaf_uris(cert: &X509Certificate) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// Runs `idca enroll` (the shipped binary) against a server, trusting `ca`, with `login`
/// arguments (`--user`, `--password`; none for the demo user).
async fn run_enroll(
    server: &crate::harness::TestServer,
    ca: &std::path::Path,
    login: &[&str],
    out: &std::path::Path,
) -> std::process::Output {
    let base = server.directory_url().replace("/directory", "");
    let (ca, out) = (ca.to_owned(), out.to_owned());
    let login: Vec<String> = login.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
            .args(["enroll", "--server", &base])
            .args(&login)
            .arg("--ca")
            .arg(&ca)
            .arg("--out")
            .arg(&out)
            .env_remove("IDCA_PASSWORD")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enroll_command_writes_a_client_identity_certificate_and_its_key() {
    let server = oauth_server(|_| {}).await;
    let out = server.dir.path().join("alice-device");
    let run = run_enroll(&server, &server.root_path, &["--user", "alice", "--password", "wonderland"], &out).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(stdout.matches("challenge valid").count(), 2, "{stdout}");
    let chain = std::fs::read_to_string(out.with_extension("pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let der = first_cert_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), format!("O={DOMAIN}, CN={NAME}"));
    assert!(cert.extended_key_usage().unwrap().unwrap().value.client_auth);
    let uris = leaf_uris(&cert);
    assert_eq!(uris.len(), 2);
    assert!(uris[0].starts_with("wireapp://") && uris[0].contains("%21"), "{uris:?}");
    assert_eq!(uris[1], HANDLE);
    // The key file holds the certificate's key, readable by the owner only.
    let key_path = server.dir.path().join("alice-device-key.pem");
    let key_pem = std::fs::read_to_string(&key_path).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(key.public_key_raw(), cert.public_key().subject_public_key.data.as_ref());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A wrong password fails at login and writes nothing.
    let bad_out = server.dir.path().join("mallory");
    let run = run_enroll(&server, &server.root_path, &["--user", "alice", "--password", "nope"], &bad_out).await;
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("login failed"));
    assert!(!bad_out.with_extension("pem").exists());
    server.stop().await;
}

/// Starts `idca enroll` with `mode` (`--device-grant`, `--browser`) and hands its
/// output lines over as they come.
fn spawn_enroll(
    server: &crate::harness::TestServer,
    mode: &str,
    out: &std::path::Path,
) -> (std::process::Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use std::io::BufRead;
    let base = server.directory_url().replace("/directory", "");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_idca"))
        .args(["enroll", mode, "--server", &base])
        .arg("--ca")
        .arg(&server.root_path)
        .arg("--out")
        .arg(out)
        .env_remove("IDCA_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enroll_command_can_log_in_with_the_device_grant() {
    let server = oauth_server(|c| c.oauth.device_poll_interval_secs = 1).await;
    let mut b = Browser::new(&server);
    let out = server.dir.path().join("headless");
    let (child, mut rx) = spawn_enroll(&server, "--device-grant", &out);
    // The user approves each code the device shows (once to log in, once for the
    // id_token of wire-oidc-01).
    let (mut approvals, mut log) = (0, String::new());
    while let Some(line) = rx.recv().await {
        log.push_str(&line);
        log.push('\n');
        if let Some(code) = line.split("approve code ").nth(1) {
            let done = crate::device::decide(&mut b, code.trim(), "approve", "wonderland").await;
            assert_eq!(done.status, 303, "{}", done.text);
            approvals += 1;
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().status).await.unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(approvals, 2, "{log}");
    let chain = std::fs::read_to_string(out.with_extension("pem")).unwrap();
    let der = first_cert_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(leaf_uris(&cert)[1], HANDLE);
    server.stop().await;
}

/// What Wire's own E2EI client (core-crypto's `e2e-identity`) relies on, from its code:
/// `typ: JWT` in JWS headers, the account's `orders` URL (it derives the `kid` from it),
/// pending authorizations with `expires` and one challenge with a long enough token and a
/// `target`, synchronous challenge and finalize answers, SKI and AKI on the chain.
#[tokio::test]
async fn serves_what_wires_e2ei_client_relies_on() {
    let mut e = start_enrollment(Key::ed25519()).await;
    let jwt = crate::client::Overrides { extra: Some(("typ".into(), json!("JWT"))), ..Default::default() };
    let kid = e.acme.kid.clone().unwrap();
    let account = e.acme.post_with(&kid, None, &jwt).await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert_eq!(account.json()["status"], "valid");
    assert_eq!(account.json()["orders"].as_str().unwrap().strip_suffix("/orders"), Some(kid.as_str()));
    for url in e.order["authorizations"].as_array().unwrap() {
        let a = e.acme.post_with(url.as_str().unwrap(), None, &jwt).await.json();
        assert_eq!(a["status"], "pending");
        assert!(a["expires"].is_string(), "{a}");
        let ch = &a["challenges"][0];
        for k in ["type", "url", "token", "target"] {
            assert!(ch[k].is_string(), "{k}: {a}");
        }
        let token =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, ch["token"].as_str().unwrap());
        assert!(token.unwrap().len() >= 16);
    }
    let at = e.access_token(&e.acme.key).await;
    let r = e.acme.post_with(e.dpop["url"].as_str().unwrap(), Some(&json!({"access_token": at})), &jwt).await;
    assert_eq!(r.json()["status"], "valid", "{}", r.text);
    let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
    let id_token = e.id_token(&keyauth).await;
    let r = e.acme.post_with(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": id_token})), &jwt).await;
    assert_eq!(r.json()["status"], "valid", "{}", r.text);
    let csr = e.csr();
    let fin = e.acme.post_with(e.order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&csr)})), &jwt).await;
    assert_eq!(fin.json()["status"], "valid", "{}", fin.text);
    let chain = e.acme.post_with(fin.json()["certificate"].as_str().unwrap(), None, &jwt).await.text;
    let blocks = crate::certs::pem_blocks(&chain);
    assert_eq!(blocks.len(), 2);
    for der in &blocks {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let exts: Vec<_> = cert.extensions().iter().map(|x| x.oid.to_id_string()).collect();
        assert!(exts.contains(&"2.5.29.14".to_owned()), "SKI missing: {exts:?}");
        assert!(exts.contains(&"2.5.29.35".to_owned()), "AKI missing: {exts:?}");
    }
    e.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_defaults_enroll_needs_no_arguments_beyond_the_server() {
    // The defaults have no [[oauth.users]]: the demo user appears, its password in the
    // data directory, readable by the owner only.
    let server = crate::harness::start_with(|c| c.oauth.demo_user = true).await;
    let password_file = server.data_dir().join("demo-password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    assert!(password.trim().len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&password_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = server.dir.path().join("device");
    let run = run_enroll(&server, &server.data_dir().join("root.pem"), &[], &out).await;
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let chain = std::fs::read_to_string(server.dir.path().join("device.pem")).unwrap();
    let der = first_cert_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "O=localhost, CN=Demo User");
    assert_eq!(leaf_uris(&cert)[1], "wireapp://%40demo@localhost");
    server.stop().await;
}

#[tokio::test]
async fn there_is_no_demo_user_once_users_are_configured() {
    let server = oauth_server(|c| c.oauth.demo_user = true).await;
    assert!(!server.data_dir().join("demo-password").exists());
    let mut b = Browser::new(&server);
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=http://127.0.0.1/callback&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        b.base
    );
    let page = b.get(&url).await;
    let done = b.login(&page, "demo", "anything").await;
    assert_ne!(done.status, 303, "{}", done.text);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enroll_command_can_log_in_through_a_browser_on_a_loopback_redirect() {
    let server = oauth_server(|_| {}).await;
    let mut b = Browser::new(&server);
    let out = server.dir.path().join("laptop");
    let (child, mut rx) = spawn_enroll(&server, "--browser", &out);
    let plain = reqwest::Client::new();
    let (mut redirects, mut log) = (Vec::new(), String::new());
    while let Some(line) = rx.recv().await {
        log.push_str(&line);
        log.push('\n');
        if let Some(url) = line.trim().strip_prefix("open ") {
            // The browser: the login page the first time, the session after that.
            let first = b.get(url).await;
            let done = if first.status == 303 { first } else { b.login(&first, "alice", "wonderland").await };
            assert_eq!(done.status, 303, "{}", done.text);
            let back = done.location();
            assert!(back.starts_with("http://127.0.0.1:") && back.contains("/callback?"), "{back}");
            // A stray request to the listener is answered 404 and does not end the wait.
            let port_root = back.split("/callback").next().unwrap().to_owned();
            assert_eq!(plain.get(format!("{port_root}/favicon.ico")).send().await.unwrap().status(), 404);
            let page = plain.get(&back).send().await.unwrap();
            assert_eq!(page.status(), 200);
            assert!(page.text().await.unwrap().contains("Signed in"));
            redirects.push(back);
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap().status).await.unwrap();
    assert!(status.success(), "{log}");
    assert_eq!(redirects.len(), 2, "{log}");
    let der = first_cert_der(&std::fs::read_to_string(out.with_extension("pem")).unwrap());
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(leaf_uris(&cert)[1], HANDLE);
    server.stop().await;
}

/// Configures `devices.oidc_issuer` to be `provider`, trusting its root only.
fn trusting(provider: &crate::harness::TestServer) -> impl FnOnce(&mut idca::config::Config) + use<> {
    let issuer = provider.directory_url().replace("/directory", "");
    let root = provider.root_path.display().to_string();
    move |c| {
        c.devices.oidc_issuer = issuer;
        c.devices.oidc_ca_file = root;
        c.devices.oidc_client_id = "idca-cli".into();
    }
}

#[tokio::test]
async fn wire_oidc_01_can_trust_an_external_openid_provider() {
    // Another idca plays the external provider; the CA fetches its keys through its
    // discovery document.
    let provider = oauth_server(|_| {}).await;
    let mut at_provider = Browser::new(&provider);
    let e = start_enrollment_with(Key::ed25519(), trusting(&provider)).await;
    assert_eq!(e.oidc["target"].as_str(), Some(at_provider.base.as_str()));
    let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
    let wanted = json!({"id_token": {"keyauth": {"essential": true, "value": keyauth}, "acme_aud": {"essential": true, "value": e.oidc["url"]}}});
    let from_provider = tokens(&mut at_provider, Some(&wanted)).await["id_token"].as_str().unwrap().to_owned();
    let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": from_provider}))).await;
    assert_eq!(r.json()["status"], "valid", "{}", r.text);
    e.server.stop().await;

    // The CA's own id_token is not the provider's: refused.
    let mut e = start_enrollment_with(Key::ed25519(), trusting(&provider)).await;
    let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
    let own = e.id_token(&keyauth).await;
    let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": own}))).await;
    assert_eq!(r.json()["status"], "invalid", "{}", r.text);
    assert!(r.text.contains("not signed by a current key"), "{}", r.text);
    e.server.stop().await;
    provider.stop().await;
}

/// A provider whose id_tokens carry no `handle`, only `preferred_username` (as Wire's
/// Keycloak setup): the handle is taken from it; idca's own id_tokens say
/// `preferred_username` too.
#[tokio::test]
async fn wire_oidc_01_takes_the_handle_from_preferred_username() {
    let provider = oauth_server(|c| {
        let u = &mut c.oauth.users[0];
        (u.username, u.handle, u.domain) = ("alice_wire".into(), String::new(), String::new());
    })
    .await;
    let mut at_provider = Browser::new(&provider);
    let e = start_enrollment_with(Key::ed25519(), trusting(&provider)).await;
    let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
    let wanted = json!({"id_token": {"keyauth": {"essential": true, "value": keyauth}, "acme_aud": {"essential": true, "value": e.oidc["url"]}}});
    let id_token =
        tokens_as(&mut at_provider, Some(&wanted), "alice_wire").await["id_token"].as_str().unwrap().to_owned();
    let claims = crate::oauth::verify_jwt(&at_provider, &id_token, "JWT").await;
    assert_eq!((claims["preferred_username"].as_str(), claims.get("handle")), (Some("alice_wire"), None), "{claims}");
    let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": id_token}))).await;
    assert_eq!(r.json()["status"], "valid", "{}", r.text);
    e.server.stop().await;
    provider.stop().await;
}

/// An external Wire backend (brig) issues the device's access token, signed with its own
/// key (`devices.backend_keys`), for the target `devices.dpop_target`: the CA accepts it
/// and issues the identity certificate; a token signed by a key not configured is
/// refused, whatever key its header carries.
#[tokio::test]
async fn wire_dpop_01_accepts_an_external_backends_token() {
    let backend = idca::jose::SigningKey::from_pkcs8(&idca::jose::SigningKey::generate_pkcs8().unwrap()).unwrap();
    let stranger = idca::jose::SigningKey::from_pkcs8(&idca::jose::SigningKey::generate_pkcs8().unwrap()).unwrap();
    let key = backend.jwk().to_value().to_string();
    let configure = move |c: &mut idca::config::Config| {
        c.devices.backend_keys = vec![key];
        c.devices.dpop_target = "https://backend.example.test/clients/{device}/access-token".into();
    };
    for (signer, accepted) in [(&stranger, false), (&backend, true)] {
        let mut e = start_enrollment_with(Key::ed25519(), configure.clone()).await;
        let target = e.dpop["target"].as_str().unwrap().to_owned();
        let cid = e.device["id"].as_str().unwrap();
        assert_eq!(target, format!("https://backend.example.test/clients/{cid}/access-token"));
        // What brig does: check the device's proof, then sign the access token.
        let nonce = "UhaLt4MDQpGJWKm5tvcjDQ";
        let proof_claims = json!({
            "sub": e.device["client_id"], "aud": e.dpop["url"], "iat": now(), "nbf": now(), "exp": now() + 120,
            "jti": idca::model::random_token(), "nonce": nonce, "htm": "POST", "htu": target,
            "chal": e.dpop["token"], "handle": HANDLE, "team": "wire", "name": NAME,
        });
        let k = &e.acme.key;
        let proof = sign_with(k, json!({"alg": k.alg(), "typ": "dpop+jwt", "jwk": k.jwk()}), &proof_claims);
        let token_claims = json!({
            "api_version": 5, "aud": e.dpop["url"], "chal": e.dpop["token"], "client_id": e.device["client_id"],
            "cnf": {"kid": k.thumbprint()}, "exp": now() + 300, "iat": now(), "nbf": now(), "iss": target,
            "jti": idca::model::random_token(), "nonce": nonce, "proof": proof, "scope": "wire_client_id",
            "sub": e.device["client_id"],
        });
        let token = signer.sign_embedding_jwk("at+jwt", &token_claims).unwrap();
        let r = e.acme.post(e.dpop["url"].as_str().unwrap(), Some(&json!({"access_token": token}))).await;
        if !accepted {
            assert_eq!(r.json()["status"], "invalid", "{}", r.text);
            assert!(r.text.contains("backend key"), "{}", r.text);
            e.server.stop().await;
            continue;
        }
        assert_eq!(r.json()["status"], "valid", "{}", r.text);
        let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
        let id_token = e.id_token(&keyauth).await;
        let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": id_token}))).await;
        assert_eq!(r.json()["status"], "valid", "{}", r.text);
        let csr = e.csr();
        let fin = e.acme.post(e.order["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(&csr)}))).await;
        assert_eq!(fin.json()["status"], "valid", "{}", fin.text);
        let chain = e.acme.post(fin.json()["certificate"].as_str().unwrap(), None).await.text;
        let der = first_cert_der(&chain);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(leaf_uris(&cert)[1], HANDLE);
        e.server.stop().await;
    }
}

/// The id_token's `aud` must name `devices.oidc_client_id`, for idca's own id_tokens too.
#[tokio::test]
async fn wire_oidc_01_refuses_an_id_token_for_another_client() {
    let mut e = start_enrollment_with(Key::ed25519(), |c| c.devices.oidc_client_id = "wire-webapp".into()).await;
    let keyauth = format!("{}.{}", e.oidc["token"].as_str().unwrap(), e.acme.key.thumbprint());
    let for_idca_cli = e.id_token(&keyauth).await;
    let r = e.acme.post(e.oidc["url"].as_str().unwrap(), Some(&json!({"id_token": for_idca_cli}))).await;
    assert_eq!(r.json()["status"], "invalid", "{}", r.text);
    assert!(r.text.contains("aud does not name the client wire-webapp"), "{}", r.text);
    e.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_constrained_intermediate_issues_identity_and_still_serves_tls() {
    // rustls-webpki skips URI constraints for DNS names, so idca's own TLS certificate
    // (every request here) verifies under the constrained intermediate.
    let server = oauth_server(|c| c.ca.identity_uri_domains = vec![DOMAIN.into()]).await;
    let out = server.dir.path().join("constrained");
    let run = run_enroll(&server, &server.root_path, &["--user", "alice", "--password", "wonderland"], &out).await;
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let chain = std::fs::read_to_string(out.with_extension("pem")).unwrap();
    let blocks = crate::certs::pem_blocks(&chain);
    assert_eq!(idca::ca::permitted_uri_hosts(&blocks[1]), vec![DOMAIN.to_owned()]);
    server.stop().await;

    // Identities of another domain are refused at newOrder, not issued unverifiable.
    let server = oauth_server(|c| c.ca.identity_uri_domains = vec!["other.test".into()]).await;
    let out = server.dir.path().join("refused");
    let run = run_enroll(&server, &server.root_path, &["--user", "alice", "--password", "wonderland"], &out).await;
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("rejectedIdentifier") && stderr.contains("name-constrained"), "{stderr}");
    assert!(!out.with_extension("pem").exists());
    server.stop().await;
}
