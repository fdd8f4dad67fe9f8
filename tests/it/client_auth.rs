//! Client authentication with assertions (RFC 7523 §2.2, OIDC Core §9): `private_key_jwt`
//! with keys inline or at a `jwks_uri`, `client_secret_jwt`, from config and from dynamic
//! registration, at the token, introspection, revocation and device endpoints.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Key, b64};
use crate::dpop::{Reply, send};
use crate::oauth::{Browser, oauth_server};

pub(crate) const TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const MAC_SECRET: &str = "a shared secret of at least thirty-two bytes";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The claims a well-made assertion from `client` to `aud` carries.
pub(crate) fn claims(client: &str, aud: &str) -> Value {
    json!({"iss": client, "sub": client, "aud": aud, "exp": now() + 60, "iat": now(), "jti": idca::model::random_token()})
}

/// A compact JWS of `claims` signed by `key` (with `header` fields added).
pub(crate) fn signed(key: &Key, header: Value, claims: &Value) -> String {
    let mut h = json!({"alg": key.alg(), "typ": "JWT"});
    h.as_object_mut().unwrap().extend(header.as_object().unwrap().clone());
    let input = format!("{}.{}", b64(h.to_string()), b64(claims.to_string()));
    format!("{input}.{}", b64(key.sign(input.as_bytes())))
}

/// A compact JWS of `claims` MACed (HS256) with `secret`.
fn maced(secret: &str, claims: &Value) -> String {
    let input = format!("{}.{}", b64(json!({"alg": "HS256", "typ": "JWT"}).to_string()), b64(claims.to_string()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("{input}.{}", b64(ring::hmac::sign(&key, input.as_bytes())))
}

fn with_kid(key: &Key, kid: &str) -> Value {
    let mut jwk = key.jwk();
    jwk["kid"] = json!(kid);
    jwk
}

async fn token(b: &Browser, assertion: &str) -> Reply {
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "acme"),
        ("client_assertion_type", TYPE),
        ("client_assertion", assertion),
    ];
    send(b.http.post(format!("{}/oauth/token", b.base)).form(&form)).await
}

fn refused(r: &Reply, what: &str) {
    assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{what}: {}", r.body);
}

/// A JWK Set server on loopback (the client's `jwks_uri`), counting fetches.
#[derive(Clone)]
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<Mutex<usize>>,
}

impl JwksServer {
    async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let s = Self { url, body: Arc::new(Mutex::new(jwks.to_string())), fetches: Arc::default() };
        let served = s.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                *served.fetches.lock().unwrap() += 1;
                let body = served.body.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        s
    }
}

pub(crate) fn keyed_client(
    id: &str,
    tweak: impl FnOnce(&mut idca::config::ClientConfig),
) -> idca::config::ClientConfig {
    let mut c = idca::config::ClientConfig {
        client_id: id.into(),
        name: id.into(),
        scopes: vec!["acme".into()],
        grant_types: vec!["client_credentials".into(), "urn:ietf:params:oauth:grant-type:device_code".into()],
        ..Default::default()
    };
    tweak(&mut c);
    c
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_and_only_with_the_issuer_as_audience() {
    let key = Key::p256();
    let jwks = json!({"keys": [with_kid(&key, "k1")]});
    let server = oauth_server(|c| {
        // Many refusals in a row: past the default lockout (which has its own tests).
        (c.limits.token_max_failures, c.limits.token_max_failures_per_address) = (100, 100);
        c.oauth.clients.push(keyed_client("keyed", |k| k.jwks = Some(jwks)));
    })
    .await;
    let b = Browser::new(&server);
    let meta = send(b.http.get(format!("{}/.well-known/oauth-authorization-server", b.base))).await.body;
    let issuer = meta["issuer"].as_str().unwrap().to_owned();
    for field in ["token_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"] {
        let methods = &meta[field];
        assert!(methods.as_array().unwrap().contains(&json!("private_key_jwt")), "{field}: {methods}");
        assert!(methods.as_array().unwrap().contains(&json!("client_secret_jwt")), "{field}: {methods}");
    }

    // A good assertion: a token; the same assertion again: refused (jti replay).
    let good = signed(&key, json!({"kid": "k1"}), &claims("keyed", &issuer));
    let r = token(&b, &good).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    refused(&token(&b, &good).await, "replayed jti");

    // The audience-injection rule: only the issuer, as one string.
    let token_url = format!("{}/oauth/token", b.base);
    let mut bad = Vec::new();
    let mut c = claims("keyed", &token_url);
    if token_url == issuer {
        c["aud"] = json!(format!("{issuer}/"));
    }
    bad.push(("aud = the token endpoint", c));
    let mut c = claims("keyed", &issuer);
    c["aud"] = json!([issuer]);
    bad.push(("aud as an array", c));
    let mut c = claims("keyed", &issuer);
    c["exp"] = json!(now() - 120);
    bad.push(("expired", c));
    let mut c = claims("keyed", &issuer);
    c["exp"] = json!(now() + 7200);
    bad.push(("exp two hours ahead", c));
    // The ends of i64: the checks' arithmetic saturates (exp + skew overflowed before).
    let mut c = claims("keyed", &issuer);
    c["exp"] = json!(i64::MAX);
    bad.push(("exp at the end of time", c));
    let mut c = claims("keyed", &issuer);
    c["exp"] = json!(i64::MIN);
    bad.push(("exp at the start of time", c));
    let mut c = claims("keyed", &issuer);
    c.as_object_mut().unwrap().remove("exp");
    bad.push(("no exp", c));
    let mut c = claims("keyed", &issuer);
    c.as_object_mut().unwrap().remove("jti");
    bad.push(("no jti", c));
    let mut c = claims("keyed", &issuer);
    c["iss"] = json!("someone-else");
    bad.push(("iss is not the client", c));
    let mut c = claims("keyed", &issuer);
    c["nbf"] = json!(now() + 600);
    bad.push(("nbf in the future", c));
    for (what, c) in &bad {
        refused(&token(&b, &signed(&key, json!({"kid": "k1"}), c)).await, what);
    }

    // A stranger's key, announced in the header (jwk) or named by a kid: never trusted.
    let mallory = Key::p256();
    let c = claims("keyed", &issuer);
    refused(&token(&b, &signed(&mallory, json!({"jwk": mallory.jwk()}), &c)).await, "header jwk");
    refused(&token(&b, &signed(&mallory, json!({"kid": "k1"}), &c)).await, "stranger's key, right kid");
    // A good signature but a wrong type; and the client's secret methods: refused.
    let good2 = signed(&key, json!({"kid": "k1"}), &claims("keyed", &issuer));
    let form = [("grant_type", "client_credentials"), ("client_assertion_type", "jwt"), ("client_assertion", &good2)];
    refused(&send(b.http.post(&token_url).form(&form)).await, "wrong assertion type");
    let r =
        send(b.http.post(&token_url).basic_auth("keyed", Some("guess")).form(&[("grant_type", "client_credentials")]))
            .await;
    refused(&r, "a secret for a key client");

    // Introspection, revocation and device authorization take assertions too.
    let auth = |claims: &Value| signed(&key, json!({"kid": "k1"}), claims);
    let form = |a: String, extra: (&'static str, String)| {
        vec![("client_assertion_type", TYPE.to_owned()), ("client_assertion", a), (extra.0, extra.1)]
    };
    let r = send(
        b.http
            .post(format!("{}/oauth/introspect", b.base))
            .form(&form(auth(&claims("keyed", &issuer)), ("token", access.clone()))),
    )
    .await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(true)), "{}", r.body);
    let r = send(
        b.http
            .post(format!("{}/oauth/device", b.base))
            .form(&form(auth(&claims("keyed", &issuer)), ("scope", "acme".into()))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["device_code"].is_string());
    let r = b
        .http
        .post(format!("{}/oauth/revoke", b.base))
        .form(&form(auth(&claims("keyed", &issuer)), ("token", access.clone())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = send(
        b.http
            .post(format!("{}/oauth/introspect", b.base))
            .form(&form(auth(&claims("keyed", &issuer)), ("token", access.clone()))),
    )
    .await;
    assert_eq!(r.body["active"], json!(false), "revoked: {}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn one_assertion_sent_sixteen_times_at_once_authenticates_once() {
    let key = Key::ed25519();
    let jwks = json!({"keys": [key.jwk()]});
    let server = oauth_server(|c| {
        (c.limits.token_max_failures, c.limits.token_max_failures_per_address) = (100, 100);
        c.oauth.clients.push(keyed_client("keyed", |k| k.jwks = Some(jwks)));
    })
    .await;
    let b = Arc::new(Browser::new(&server));
    let issuer = b.base.clone();
    let assertion = Arc::new(signed(&key, json!({}), &claims("keyed", &issuer)));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (b, a, barrier) = (b.clone(), assertion.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                token(&b, &a).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 15, "{statuses:?}");
    server.stop().await;
}

#[tokio::test]
async fn client_secret_jwt_checks_the_mac() {
    let server =
        oauth_server(|c| c.oauth.clients.push(keyed_client("mac", |k| k.jwt_secret = MAC_SECRET.into()))).await;
    let b = Browser::new(&server);
    let issuer = b.base.clone();
    let r = token(&b, &maced(MAC_SECRET, &claims("mac", &issuer))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    refused(&token(&b, &maced("another secret of at least thirty-two bytes", &claims("mac", &issuer))).await, "key");
    // A signature instead of a MAC, and a MAC client's assertion for another client id.
    let key = Key::p256();
    refused(&token(&b, &signed(&key, json!({}), &claims("mac", &issuer))).await, "signed, not MACed");
    refused(&token(&b, &maced(MAC_SECRET, &claims("keyed", &issuer))).await, "unknown client");
    server.stop().await;
}

#[tokio::test]
async fn jwks_uri_keys_are_fetched_again_for_a_new_kid() {
    let (k1, k2) = (Key::p256(), Key::rsa2048());
    let jwks = JwksServer::start(json!({"keys": [with_kid(&k1, "k1")]})).await;
    let uri = jwks.url.clone();
    let server = oauth_server(|c| c.oauth.clients.push(keyed_client("remote", |k| k.jwks_uri = uri))).await;
    let b = Browser::new(&server);
    let issuer = b.base.clone();
    let r = token(&b, &signed(&k1, json!({"kid": "k1"}), &claims("remote", &issuer))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = token(&b, &signed(&k1, json!({"kid": "k1"}), &claims("remote", &issuer))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(*jwks.fetches.lock().unwrap(), 1, "cached");
    // The client rotates to k2 (and drops k1); the cache is fresh for ten seconds.
    *jwks.body.lock().unwrap() = json!({"keys": [with_kid(&k2, "k2")]}).to_string();
    refused(&token(&b, &signed(&k2, json!({"kid": "k2"}), &claims("remote", &issuer))).await, "within 10 s");
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let r = token(&b, &signed(&k2, json!({"kid": "k2"}), &claims("remote", &issuer))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(*jwks.fetches.lock().unwrap(), 2);
    refused(&token(&b, &signed(&k1, json!({"kid": "k1"}), &claims("remote", &issuer))).await, "dropped key");
    server.stop().await;
}

#[tokio::test]
async fn registered_clients_authenticate_with_keys_or_a_derived_mac_secret() {
    let server = oauth_server(|_| {}).await;
    let b = Browser::new(&server);
    let issuer = b.base.clone();
    let register = |m: Value| send(b.http.post(format!("{}/oauth/register", b.base)).json(&m));
    let device = |a: String| {
        let form = [("client_assertion_type", TYPE.to_owned()), ("client_assertion", a), ("scope", "openid".into())];
        send(b.http.post(format!("{}/oauth/device", b.base)).form(&form))
    };
    let grant = ["urn:ietf:params:oauth:grant-type:device_code"];

    let key = Key::p384();
    let r = register(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.jwk()]}, "grant_types": grant, "scope": "openid"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.get("client_secret").is_none(), "{}", r.body);
    assert_eq!(r.body["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(r.body["jwks"]["keys"][0]["crv"], "P-384");
    let id = r.body["client_id"].as_str().unwrap().to_owned();
    let r = device(signed(&key, json!({}), &claims(&id, &issuer))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    refused(&device(signed(&Key::p384(), json!({}), &claims(&id, &issuer))).await, "another key");

    let r =
        register(json!({"token_endpoint_auth_method": "client_secret_jwt", "grant_types": grant, "scope": "openid"}))
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (id, secret) =
        (r.body["client_id"].as_str().unwrap().to_owned(), r.body["client_secret"].as_str().unwrap().to_owned());
    let r = device(maced(&secret, &claims(&id, &issuer))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    refused(&device(maced(MAC_SECRET, &claims(&id, &issuer))).await, "a wrong secret");

    for (what, m) in [
        (
            "jwks_uri over http",
            json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://app.example/jwks"}),
        ),
        ("no keys", json!({"token_endpoint_auth_method": "private_key_jwt"})),
        (
            "both",
            json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.jwk()]}, "jwks_uri": "https://app.example/jwks"}),
        ),
        (
            "no usable key",
            json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}}),
        ),
        (
            "keys for a secret client",
            json!({"token_endpoint_auth_method": "client_secret_basic", "jwks": {"keys": [key.jwk()]}}),
        ),
    ] {
        let mut m = m;
        m["grant_types"] = json!(grant);
        let r = register(m).await;
        assert_eq!((r.status, r.body["error"].as_str()), (400, Some("invalid_client_metadata")), "{what}: {}", r.body);
    }
    server.stop().await;
}
