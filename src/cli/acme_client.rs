//! The one ACME client of idca's own tools (`idca enroll`, `idca-load`, `idca-crash`):
//! signed requests with one account key (ES256 or Ed25519), badNonce retried once, each
//! request timed, and what the server acknowledged remembered. The tests use
//! instant-acme and their own raw client instead.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

/// Why a flow failed: the problem type, or the transport error's kind.
pub type FlowError = String;

/// An ACME account key (RFC 8555 §6.2: ES256 or EdDSA here).
pub enum AccountKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl AccountKey {
    /// A fresh P-256 key.
    pub fn es256() -> Result<Self, FlowError> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| fail("keygen"))?;
        Ok(Self::Es256(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|_| fail("keygen"))?))
    }

    /// A fresh Ed25519 key.
    pub fn ed25519() -> Result<Self, FlowError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| fail("keygen"))?;
        Ok(Self::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| fail("keygen"))?))
    }

    /// The JWS `alg` (RFC 7518 §3.4, RFC 8037 §3.1).
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Es256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    /// The public key as a JWK (RFC 7518 §6.2, RFC 8037 §2).
    pub fn jwk(&self) -> Value {
        match self {
            Self::Es256(k) => {
                let public = k.public_key().as_ref();
                let (x, y) = (public.get(1..33).unwrap_or_default(), public.get(33..65).unwrap_or_default());
                json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)})
            }
            Self::Ed25519(k) => json!({"crv": "Ed25519", "kty": "OKP", "x": b64(k.public_key().as_ref())}),
        }
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> Result<String, FlowError> {
        let jwk = crate::jose::Jwk::from_value(&self.jwk()).map_err(|e| fail(format!("jwk: {e}")))?;
        Ok(jwk.thumbprint().0)
    }

    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, FlowError> {
        match self {
            Self::Es256(k) => Ok(k.sign(&SystemRandom::new(), input).map_err(|_| fail("sign"))?.as_ref().to_vec()),
            Self::Ed25519(k) => Ok(k.sign(input).as_ref().to_vec()),
        }
    }

    /// A compact JWS (RFC 7515 §7.1) of `claims` under `header` (which names the `alg`).
    pub fn compact(&self, header: &Value, claims: &Value) -> Result<String, FlowError> {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        Ok(format!("{input}.{}", b64(self.sign(input.as_bytes())?)))
    }
}

/// An ACME client with one account key. It records each request's time and every
/// object the server acknowledged.
pub struct AcmeClient {
    http: reqwest::Client,
    key: AccountKey,
    kid: Option<String>,
    pub nonce: Option<String>,
    dir: Value,
    /// Sent as `Authorization: Bearer` on every request (identity orders need it).
    bearer: Option<String>,
    /// The `detail` of the last problem document the server answered.
    pub last_detail: Option<String>,
    /// This flow's timings and POST count.
    pub timings: Vec<(&'static str, u32)>,
    pub posts: u64,
    /// What the server said it created, in order.
    pub acknowledged: Vec<Acknowledged>,
}

/// An object the server told this client exists.
#[derive(Debug, Clone, PartialEq)]
pub enum Acknowledged {
    /// newAccount answered 201 with this account URL.
    Account { url: String },
    /// newOrder answered 201 with this order URL.
    Order { url: String },
    /// finalize answered that the order at `order` is valid with the certificate at
    /// `certificate`.
    Finalized { order: String, certificate: String },
    /// The order at `order` became valid and its certificate at `url` was downloaded.
    Certificate { order: String, url: String, pem: String },
}

fn b64(b: impl AsRef<[u8]>) -> String {
    crate::jose::b64_encode(b)
}

pub fn fail(kind: impl Into<String>) -> FlowError {
    kind.into()
}

impl AcmeClient {
    /// A client with a fresh ES256 account key.
    pub fn new(http: reqwest::Client, dir: Value) -> Result<Self, FlowError> {
        Ok(Self::with_key(http, dir, AccountKey::es256()?))
    }

    /// A client signing with `key`; `dir` is the server's directory.
    pub fn with_key(http: reqwest::Client, dir: Value, key: AccountKey) -> Self {
        Self {
            http,
            key,
            kid: None,
            nonce: None,
            dir,
            bearer: None,
            last_detail: None,
            timings: Vec::new(),
            posts: 0,
            acknowledged: Vec::new(),
        }
    }

    /// Sends `Authorization: Bearer {token}` with every request from now on.
    pub fn with_bearer(mut self, token: String) -> Self {
        self.bearer = Some(token);
        self
    }

    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    /// Talks through `http` from now on, with a fresh nonce (after a server restart).
    pub fn reconnect(&mut self, http: reqwest::Client) {
        self.http = http;
        self.nonce = None;
    }

    pub fn url(&self, name: &str) -> Result<String, FlowError> {
        self.dir.get(name).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| fail(format!("no {name}")))
    }

    pub fn record(&mut self, what: &'static str, started: Instant) {
        self.timings.push((what, started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32));
    }

    async fn fresh_nonce(&mut self) -> Result<(), FlowError> {
        let started = Instant::now();
        let resp = self.http.head(self.url("newNonce")?).send().await.map_err(transport)?;
        self.record("newNonce", started);
        self.nonce = header(&resp, "replay-nonce");
        self.nonce.as_ref().map(|_| ()).ok_or_else(|| fail("no Replay-Nonce"))
    }

    fn jws(&self, url: &str, payload: &str) -> Result<String, FlowError> {
        let mut protected = json!({"alg": self.key.alg(), "nonce": self.nonce, "url": url});
        match &self.kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.key.jwk(),
        }
        let protected = b64(protected.to_string());
        let payload = b64(payload);
        let signing_input = format!("{protected}.{payload}");
        let sig = self.key.sign(signing_input.as_bytes())?;
        Ok(json!({"protected": protected, "payload": payload, "signature": b64(sig)}).to_string())
    }

    /// A signed POST (`payload` None: POST-as-GET), retrying once on badNonce.
    pub async fn post(
        &mut self,
        what: &'static str,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<(Value, Option<String>, String), FlowError> {
        let body = payload.map(Value::to_string).unwrap_or_default();
        for attempt in 0..2 {
            if self.nonce.is_none() {
                self.fresh_nonce().await?;
            }
            let jws = self.jws(url, &body)?;
            self.nonce = None;
            let started = Instant::now();
            let mut request = self.http.post(url).header("content-type", "application/jose+json").body(jws);
            if let Some(token) = &self.bearer {
                request = request.bearer_auth(token);
            }
            let resp = request.send().await.map_err(transport)?;
            self.nonce = header(&resp, "replay-nonce");
            let status = resp.status();
            let location = header(&resp, "location");
            let text = resp.text().await.map_err(transport)?;
            self.record(what, started);
            self.posts += 1;
            if status.is_success() {
                return Ok((serde_json::from_str(&text).unwrap_or(Value::Null), location, text));
            }
            let problem: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            self.last_detail = problem["detail"].as_str().map(str::to_owned);
            let kind = problem["type"].as_str().unwrap_or("").trim_start_matches("urn:ietf:params:acme:error:");
            if kind == "badNonce" && attempt == 0 {
                continue;
            }
            return Err(fail(format!("{what}: {} {kind}", status.as_u16())));
        }
        Err(fail(format!("{what}: badNonce twice")))
    }

    /// Creates the account (once), agreeing to the terms; later requests name it by `kid`.
    pub async fn ensure_account(&mut self) -> Result<(), FlowError> {
        if self.kid.is_some() {
            return Ok(());
        }
        let url = self.url("newAccount")?;
        let (_, location, _) = self.post("newAccount", &url, Some(&json!({"termsOfServiceAgreed": true}))).await?;
        let url = location.ok_or_else(|| fail("newAccount: no Location"))?;
        self.acknowledged.push(Acknowledged::Account { url: url.clone() });
        self.kid = Some(url);
        Ok(())
    }

    /// Polls `url` (POST-as-GET) until its status is one of `done`.
    async fn poll(&mut self, what: &'static str, url: &str, done: &[&str]) -> Result<Value, FlowError> {
        let mut wait = Duration::from_millis(1);
        for _ in 0..200 {
            let (v, _, _) = self.post(what, url, None).await?;
            let status = v["status"].as_str().unwrap_or("");
            if done.contains(&status) {
                return Ok(v);
            }
            if status == "invalid" {
                return Err(fail(format!("{what}: invalid")));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(20));
        }
        Err(fail(format!("{what}: still not {done:?}")))
    }

    /// One issuance for `name`.
    pub async fn issue(&mut self, name: &str) -> Result<(), FlowError> {
        self.ensure_account().await?;
        let new_order = self.url("newOrder")?;
        let (order, location, _) =
            self.post("newOrder", &new_order, Some(&json!({"identifiers": [{"type": "dns", "value": name}]}))).await?;
        let order_url = location.ok_or_else(|| fail("newOrder: no Location"))?;
        self.acknowledged.push(Acknowledged::Order { url: order_url.clone() });
        let authzs: Vec<String> = order["authorizations"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        for authz_url in authzs {
            let (authz, _, _) = self.post("authz", &authz_url, None).await?;
            if authz["status"] == "valid" {
                continue;
            }
            let challenge = authz["challenges"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "http-01"))
                .and_then(|c| c["url"].as_str())
                .ok_or_else(|| fail("authz: no http-01"))?
                .to_owned();
            self.post("challenge", &challenge, Some(&json!({}))).await?;
        }
        self.poll("pollReady", &order_url, &["ready", "valid"]).await?;
        let csr = csr(name)?;
        let finalize = order["finalize"].as_str().ok_or_else(|| fail("order: no finalize"))?.to_owned();
        let (done, _, _) = self.post("finalize", &finalize, Some(&json!({"csr": csr}))).await?;
        if let (Some("valid"), Some(certificate)) = (done["status"].as_str(), done["certificate"].as_str()) {
            self.acknowledged
                .push(Acknowledged::Finalized { order: order_url.clone(), certificate: certificate.to_owned() });
        }
        let done =
            if done["status"] == "valid" { done } else { self.poll("pollValid", &order_url, &["valid"]).await? };
        let cert_url = done["certificate"].as_str().ok_or_else(|| fail("order: no certificate"))?.to_owned();
        let (_, _, pem) = self.post("certificate", &cert_url, None).await?;
        if !pem.contains("BEGIN CERTIFICATE") {
            return Err(fail("certificate: not PEM"));
        }
        self.acknowledged.push(Acknowledged::Certificate { order: order_url, url: cert_url, pem });
        Ok(())
    }
}

fn csr(name: &str) -> Result<String, FlowError> {
    let key = rcgen::KeyPair::generate().map_err(|_| fail("csr key"))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|_| fail("csr"))?;
    // No subject: rcgen's default CN is not one of the names.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let req = params.serialize_request(&key).map_err(|_| fail("csr"))?;
    Ok(b64(req.der()))
}

pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub fn transport(e: reqwest::Error) -> FlowError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    fail(kind)
}

/// The target must resolve to loopback addresses only.
pub fn check_loopback(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = u.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let port = u.port_or_known_default().unwrap_or(443);
    let addrs: Vec<_> = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!("{host} is not a loopback address: only servers on this machine are loaded"));
    }
    Ok(())
}
