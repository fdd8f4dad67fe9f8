//! A raw ACME client for negative tests: builds every JWS by hand so a test can break
//! exactly one rule.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use crate::harness::TestServer;

pub(crate) fn b64(b: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn pem_der(path: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

/// An account key.
pub(crate) enum Key {
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
    /// P-521 (ES512, Wire's cipher suite 5): RustCrypto, as ring has none.
    P521(Box<p521::ecdsa::SigningKey>),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl Key {
    pub(crate) fn p256() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::P256(EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap())
    }

    pub(crate) fn p384() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Self::P384(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }

    pub(crate) fn p521() -> Self {
        let rng = ring::rand::SystemRandom::new();
        loop {
            let mut scalar = [0u8; 66];
            ring::rand::SecureRandom::fill(&rng, &mut scalar).unwrap();
            scalar[0] &= 0x01;
            if let Ok(k) = p521::ecdsa::SigningKey::from_slice(&scalar) {
                return Self::P521(Box::new(k));
            }
        }
    }

    /// The uncompressed public point of a P-521 key.
    pub(crate) fn p521_point(&self) -> Vec<u8> {
        let Self::P521(k) = self else { panic!("not a P-521 key") };
        k.verifying_key().to_sec1_bytes().to_vec()
    }

    pub(crate) fn ed25519() -> Self {
        Self::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der("keys/ed25519.pem")).unwrap())
    }

    pub(crate) fn rsa2048() -> Self {
        Self::Rsa(RsaKeyPair::from_pkcs8(&pem_der("keys/rsa2048.pem")).unwrap())
    }

    pub(crate) fn alg(&self) -> &'static str {
        match self {
            Self::P256(_) => "ES256",
            Self::P384(_) => "ES384",
            Self::P521(_) => "ES512",
            Self::Ed25519(_) => "EdDSA",
            Self::Rsa(_) => "RS256",
        }
    }

    pub(crate) fn jwk(&self) -> Value {
        match self {
            Self::P256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty":"EC","crv":"P-256","x":b64(&p[1..33]),"y":b64(&p[33..])})
            }
            Self::P384(k) => {
                let p = k.public_key().as_ref();
                json!({"kty":"EC","crv":"P-384","x":b64(&p[1..49]),"y":b64(&p[49..])})
            }
            Self::P521(_) => {
                let p = self.p521_point();
                json!({"kty":"EC","crv":"P-521","x":b64(&p[1..67]),"y":b64(&p[67..])})
            }
            Self::Ed25519(k) => {
                json!({"kty":"OKP","crv":"Ed25519","x":b64(k.public_key().as_ref())})
            }
            Self::Rsa(k) => {
                let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty":"RSA","n":b64(&c.n),"e":b64(&c.e)})
            }
        }
    }

    pub(crate) fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = match jwk["kty"].as_str().unwrap() {
            "EC" => format!(r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#, jwk["crv"], jwk["x"], jwk["y"]),
            "OKP" => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#, jwk["x"]),
            _ => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, jwk["e"], jwk["n"]),
        };
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            Self::P256(k) | Self::P384(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Self::P521(k) => {
                let sig: p521::ecdsa::Signature = p521::ecdsa::signature::Signer::sign(k.as_ref(), msg);
                sig.to_bytes().to_vec()
            }
            Self::Ed25519(k) => k.sign(msg).as_ref().to_vec(),
            Self::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                sig
            }
        }
    }
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    pub(crate) fn location(&self) -> String {
        self.header("location").expect("Location header")
    }

    /// Asserts an ACME problem of `short_type` with `status`.
    pub(crate) fn assert_problem(&self, status: u16, short_type: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type").as_deref(), Some("application/problem+json"));
        assert_eq!(self.json()["type"], format!("urn:ietf:params:acme:error:{short_type}"), "{}", self.text);
        assert!(self.header("replay-nonce").is_some(), "problem without a Replay-Nonce");
    }
}

/// The JWS header fields a test may override.
#[derive(Default, Clone)]
pub(crate) struct Overrides {
    pub alg: Option<String>,
    pub nonce: Option<Option<String>>,
    pub url: Option<String>,
    pub jwk: Option<Value>,
    pub kid: Option<Option<String>>,
    pub extra: Option<(String, Value)>,
    /// Leaves `url` out of the protected header.
    pub no_url: bool,
}

/// The raw client: one account key, optionally an account URL (`kid`).
pub(crate) struct RawClient {
    pub http: reqwest::Client,
    pub dir: Value,
    pub key: Key,
    pub kid: Option<String>,
    /// Sent as `Authorization: Bearer` when set.
    pub bearer: Option<String>,
}

impl RawClient {
    pub(crate) async fn new(server: &TestServer, key: Key) -> Self {
        let cert = reqwest::Certificate::from_pem(server.root_pem().as_bytes()).unwrap();
        let http = reqwest::Client::builder().tls_certs_only([cert]).build().unwrap();
        let dir: Value = http.get(server.directory_url()).send().await.unwrap().json().await.unwrap();
        Self { http, dir, key, kid: None, bearer: None }
    }

    pub(crate) fn url(&self, name: &str) -> String {
        self.dir[name].as_str().unwrap().to_owned()
    }

    pub(crate) async fn nonce(&self) -> String {
        let r = self.http.head(self.url("newNonce")).send().await.unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    /// Builds a flattened JWS; `payload` None is POST-as-GET.
    pub(crate) async fn jws(&self, url: &str, payload: Option<&Value>, o: &Overrides) -> Value {
        let mut header = json!({"alg": o.alg.clone().unwrap_or_else(|| self.key.alg().to_owned()), "url": o.url.clone().unwrap_or_else(|| url.to_owned())});
        let nonce = match &o.nonce {
            Some(n) => n.clone(),
            None => Some(self.nonce().await),
        };
        if let Some(n) = nonce {
            header["nonce"] = json!(n);
        }
        let kid = match &o.kid {
            Some(k) => k.clone(),
            None => self.kid.clone(),
        };
        match (&o.jwk, kid) {
            (Some(jwk), kid) => {
                header["jwk"] = jwk.clone();
                if let Some(k) = kid {
                    header["kid"] = json!(k);
                }
            }
            (None, Some(k)) => header["kid"] = json!(k),
            (None, None) => header["jwk"] = self.key.jwk(),
        }
        if let Some((k, v)) = &o.extra {
            header[k.as_str()] = v.clone();
        }
        if o.no_url
            && let Some(h) = header.as_object_mut()
        {
            h.remove("url");
        }
        let protected = b64(header.to_string());
        let payload = payload.map(|p| b64(p.to_string())).unwrap_or_default();
        let sig = self.key.sign(format!("{protected}.{payload}").as_bytes());
        json!({"protected": protected, "payload": payload, "signature": b64(sig)})
    }

    pub(crate) async fn send(&self, url: &str, body: impl Into<reqwest::Body>, content_type: &str) -> Resp {
        let mut r = self.http.post(url).header("content-type", content_type).body(body);
        if let Some(t) = &self.bearer {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Resp { status, headers, text }
    }

    pub(crate) async fn post_with(&self, url: &str, payload: Option<&Value>, o: &Overrides) -> Resp {
        let jws = self.jws(url, payload, o).await;
        self.send(url, jws.to_string(), "application/jose+json").await
    }

    pub(crate) async fn post(&self, url: &str, payload: Option<&Value>) -> Resp {
        self.post_with(url, payload, &Overrides::default()).await
    }

    /// newAccount; remembers the account URL.
    pub(crate) async fn register(&mut self) -> Resp {
        let url = self.url("newAccount");
        let r =
            self.post(&url, Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:a@example.com"]}))).await;
        if r.status == 201 || r.status == 200 {
            self.kid = Some(r.location());
        }
        r
    }

    pub(crate) async fn new_order(&self, names: &[&str]) -> Resp {
        let ids: Vec<Value> = names.iter().map(|n| json!({"type":"dns","value":n})).collect();
        self.post(&self.url("newOrder"), Some(&json!({ "identifiers": ids }))).await
    }

    /// Serves and answers every challenge of an order, waits until it is ready.
    pub(crate) async fn validate_order(&self, server: &TestServer, order: &Value) {
        for authz_url in order["authorizations"].as_array().unwrap() {
            let authz = self.post(authz_url.as_str().unwrap(), None).await.json();
            let ch = authz["challenges"].as_array().unwrap().iter().find(|c| c["type"] == "http-01").unwrap();
            let token = ch["token"].as_str().unwrap();
            server.challenges.set(token, &format!("{token}.{}", self.key.thumbprint()));
            let r = self.post(ch["url"].as_str().unwrap(), Some(&json!({}))).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    }

    /// Orders, validates (http-01) and finalizes `names` with `csr_der`; returns the order
    /// URL, the certificate URL and the chain.
    pub(crate) async fn issue(&self, server: &TestServer, names: &[&str], csr_der: &[u8]) -> (String, String, String) {
        let order = self.new_order(names).await;
        assert_eq!(order.status, 201, "{}", order.text);
        let order_url = order.location();
        self.validate_order(server, &order.json()).await;
        assert_eq!(self.poll(&order_url).await["status"], "ready");
        let fin = self.post(order.json()["finalize"].as_str().unwrap(), Some(&json!({"csr": b64(csr_der)}))).await;
        assert_eq!(fin.status, 200, "{}", fin.text);
        let cert_url = fin.json()["certificate"].as_str().unwrap().to_owned();
        let chain = self.post(&cert_url, None).await.text;
        (order_url, cert_url, chain)
    }

    /// Polls `url` (POST-as-GET) until `status` is not pending/processing.
    pub(crate) async fn poll(&self, url: &str) -> Value {
        for _ in 0..100 {
            let v = self.post(url, None).await.json();
            if v["status"] != "pending" && v["status"] != "processing" {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{url} stayed pending");
    }
}

/// A CSR for `names` with a fresh P-256 key.
pub(crate) fn csr(names: &[&str]) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    (params.serialize_request(&key).unwrap().der().to_vec(), key)
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// `params` as a CSR for a P-521 `key`, signed with ecdsa-with-SHA512 (what Wire's cipher
/// suite 5 sends). rcgen on ring cannot make one, so the request rcgen writes for a
/// placeholder key gets the P-521 key put in and is signed again here.
pub(crate) fn p521_csr(params: &rcgen::CertificateParams, key: &Key) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let Key::P521(signing) = key else { panic!("not a P-521 key") };
    let placeholder = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let draft = params.serialize_request(&placeholder).unwrap().der().to_vec();
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&draft).unwrap();
    let info = &csr.certification_request_info;
    // CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes }
    let (subject, spki) = (info.subject.as_raw(), info.subject_pki.raw);
    let content = &info.raw[header_len(info.raw)..];
    let after_spki = {
        let spki_at = content.windows(spki.len()).position(|w| w == spki).unwrap();
        &content[spki_at + spki.len()..]
    };
    let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let secp521r1 = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
    let mut bits = vec![0u8];
    bits.extend(key.p521_point());
    let new_spki = der(0x30, &[der(0x30, &[&ec_public_key[..], &secp521r1[..]].concat()), der(0x03, &bits)].concat());
    let cri = der(0x30, &[&[0x02, 0x01, 0x00][..], subject, &new_spki, after_spki].concat());
    let sig: p521::ecdsa::Signature = p521::ecdsa::signature::Signer::sign(signing.as_ref(), &cri);
    let ecdsa_with_sha512 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    let mut sig_bits = vec![0u8];
    sig_bits.extend(sig.to_der().to_bytes().iter());
    der(0x30, &[cri, der(0x30, &ecdsa_with_sha512), der(0x03, &sig_bits)].concat())
}

/// The length of a DER TLV's tag and length bytes.
fn header_len(tlv: &[u8]) -> usize {
    match tlv[1] {
        n if n < 0x80 => 2,
        n => 2 + (n & 0x7f) as usize,
    }
}
