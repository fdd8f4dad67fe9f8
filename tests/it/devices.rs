//! Devices and client-identity access tokens (Wire's `/clients` endpoints).

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use crate::client::b64;
use crate::oauth::{Browser, authorize_with_login, oauth_http, oauth_server, public_client};

/// A logged-in user's (Bearer) access token.
async fn user_token(b: &mut Browser) -> String {
    let cli = public_client(b, "http://127.0.0.1/callback");
    let (code, verifier, _) = authorize_with_login(b, &cli, &["openid"]).await;
    let http = oauth_http(b.http.clone());
    let t = cli
        .client
        .exchange_code(oauth2::AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    oauth2::TokenResponse::access_token(&t).secret().clone()
}

struct DeviceKey(Ed25519KeyPair);

impl DeviceKey {
    fn new() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Self(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn jwk(&self) -> Value {
        json!({"kty":"OKP","crv":"Ed25519","x": b64(self.0.public_key().as_ref())})
    }

    fn jkt(&self) -> String {
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(self.0.public_key().as_ref()));
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
    }

    fn proof(&self, claims: &Value) -> String {
        let header = json!({"alg":"EdDSA","typ":"dpop+jwt","jwk": self.jwk()});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        format!("{input}.{}", b64(self.0.sign(input.as_bytes()).as_ref()))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The claims of a good proof for `device` with `nonce`.
fn claims(base: &str, device: &Value, nonce: &str) -> Value {
    let cid = device["id"].as_str().unwrap();
    json!({
        "sub": device["client_id"], "aud": "https://acme.example.test/acme/chall/abc/def",
        "iat": now(), "nbf": now(), "exp": now() + 120, "jti": idca::model::random_token(), "nonce": nonce,
        "htm": "POST", "htu": format!("{base}/clients/{cid}/access-token"), "chal": "challengetoken123",
        "handle": "wireapp://%40alice_wire@wire.example.test", "team": "wire", "name": "Alice Liddell",
    })
}

struct Fixture {
    b: Browser,
    token: String,
    device: Value,
    server: crate::harness::TestServer,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(configure: impl FnOnce(&mut idca::config::Config)) -> Fixture {
    let server = oauth_server(configure).await;
    let mut b = Browser::new(&server);
    let token = user_token(&mut b).await;
    let r = b
        .http
        .post(format!("{}/clients", b.base))
        .bearer_auth(&token)
        .json(&json!({"label": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let device: Value = r.json().await.unwrap();
    Fixture { b, token, device, server }
}

impl Fixture {
    fn cid(&self) -> &str {
        self.device["id"].as_str().unwrap()
    }

    async fn nonce(&self) -> String {
        let r = self
            .b
            .http
            .head(format!("{}/clients/{}/nonce", self.b.base, self.cid()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    async fn access_token(&self, proof: &str) -> (u16, Value) {
        let r = self
            .b
            .http
            .post(format!("{}/clients/{}/access-token", self.b.base, self.cid()))
            .bearer_auth(&self.token)
            .header("DPoP", proof)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn a_device_gets_a_client_identity_access_token() {
    let f = fixture().await;
    let cid = f.cid().to_owned();
    assert!(cid.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{cid}");
    let client_id = f.device["client_id"].as_str().unwrap().to_owned();
    assert_eq!(client_id, format!("wireapp://{}!{cid}@wire.example.test", idca::oauth::wire_user_id("alice")));
    // HEAD 200 and GET 204, both with a 22-character Replay-Nonce and no caching.
    let head = f.b.http.head(format!("{}/clients/{cid}/nonce", f.b.base)).bearer_auth(&f.token).send().await.unwrap();
    let get = f.b.http.get(format!("{}/clients/{cid}/nonce", f.b.base)).bearer_auth(&f.token).send().await.unwrap();
    assert_eq!((head.status().as_u16(), get.status().as_u16()), (200, 204));
    for r in [&head, &get] {
        assert_eq!(r.headers()["replay-nonce"].len(), 22);
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    // The newest nonce is the one that counts.
    let nonce = get.headers()["replay-nonce"].to_str().unwrap().to_owned();
    let key = DeviceKey::new();
    let c = claims(&f.b.base, &f.device, &nonce);
    let proof = key.proof(&c);
    let (status, body) = f.access_token(&proof).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["type"].as_str(), body["expires_in"].as_u64()), (Some("DPoP"), Some(360)));
    // The token: at+jwt with idca's key in the header, Wire's claims.
    let token = body["token"].as_str().unwrap();
    let jws = idca::jose::CompactJws::parse(token, idca::jose::JsonDepth::default()).unwrap();
    assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
    let jwks: Value = f.b.http.get(format!("{}/oauth/jwks", f.b.base)).send().await.unwrap().json().await.unwrap();
    let mut published = jwks["keys"][0].clone();
    for k in ["kid", "use", "alg"] {
        published.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(jws.header.jwk.clone().unwrap(), published);
    let at: Value = jws.verify(&idca::jose::Jwk::from_value(&published).unwrap()).unwrap();
    assert_eq!(at["api_version"], 5);
    assert_eq!(at["scope"], "wire_client_id");
    assert_eq!(at["cnf"]["kid"], key.jkt());
    assert_eq!((at["sub"].as_str(), at["client_id"].as_str()), (Some(client_id.as_str()), Some(client_id.as_str())));
    assert_eq!(at["iss"], c["htu"]);
    assert_eq!(
        (at["aud"].clone(), at["chal"].clone(), at["nonce"].clone()),
        (c["aud"].clone(), c["chal"].clone(), json!(nonce))
    );
    assert_eq!(at["proof"], proof);
    assert!(at["exp"].as_i64().unwrap() - at["iat"].as_i64().unwrap() == 360);
    f.server.stop().await;
}

/// One change to a good proof's claims.
type ClaimChange = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn rejects_every_broken_binding() {
    let f = fixture().await;
    let key = DeviceKey::new();
    let cases: Vec<(&str, ClaimChange)> = vec![
        ("another client id", Box::new(|c| c["sub"] = json!("wireapp://someone!1@wire.example.test"))),
        ("another handle", Box::new(|c| c["handle"] = json!("wireapp://%40bob@wire.example.test"))),
        ("another team", Box::new(|c| c["team"] = json!("other"))),
        ("another name", Box::new(|c| c["name"] = json!("Alice"))),
        ("wrong htu", Box::new(|c| c["htu"] = json!("https://elsewhere.example/clients/1/access-token"))),
        ("query in htu", Box::new(|c| c["htu"] = json!(format!("{}?x=1", c["htu"].as_str().unwrap())))),
        ("wrong htm", Box::new(|c| c["htm"] = json!("GET"))),
        ("expired", Box::new(|c| c["exp"] = json!(now() - 600))),
        ("lives too long", Box::new(|c| c["exp"] = json!(now() + 3600))),
        ("not yet valid", Box::new(|c| c["nbf"] = json!(now() + 600))),
        ("no chal", Box::new(|c| c.as_object_mut().unwrap().remove("chal").map(|_| ()).unwrap_or(()))),
        ("no exp", Box::new(|c| c.as_object_mut().unwrap().remove("exp").map(|_| ()).unwrap_or(()))),
        ("stale nonce", Box::new(|c| c["nonce"] = json!("AAAAAAAAAAAAAAAAAAAAAA"))),
    ];
    for (why, change) in cases {
        let nonce = f.nonce().await;
        let mut c = claims(&f.b.base, &f.device, &nonce);
        change(&mut c);
        let (status, body) = f.access_token(&key.proof(&c)).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{why}: {body}");
    }
    // A used nonce is gone: the same proof twice fails the second time.
    let nonce = f.nonce().await;
    let good = claims(&f.b.base, &f.device, &nonce);
    assert_eq!(f.access_token(&key.proof(&good)).await.0, 200);
    let (status, body) = f.access_token(&key.proof(&good)).await;
    assert_eq!(status, 400, "{body}");
    // A replayed jti with a fresh nonce.
    let nonce = f.nonce().await;
    let mut replay = claims(&f.b.base, &f.device, &nonce);
    replay["jti"] = good["jti"].clone();
    let (_, body) = f.access_token(&key.proof(&replay)).await;
    assert!(body["error_description"].as_str().unwrap().contains("replay"), "{body}");
    // An RSA or tampered proof.
    let nonce = f.nonce().await;
    let p = key.proof(&claims(&f.b.base, &f.device, &nonce));
    let tampered = format!("{}x", &p[..p.len() - 1]);
    assert_eq!(f.access_token(&tampered).await.0, 400);
    f.server.stop().await;
}

#[tokio::test]
async fn rejects_other_users_devices_and_missing_tokens() {
    let f = fixture().await;
    // No token.
    let r = f.b.http.head(format!("{}/clients/{}/nonce", f.b.base, f.cid())).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = f.b.http.post(format!("{}/clients", f.b.base)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A client-credentials token (not a user) cannot register devices.
    let r =
        f.b.http
            .post(format!("{}/oauth/token", f.b.base))
            .basic_auth("backend", Some("s3cret-s3cret-s3cret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "acme")])
            .send()
            .await
            .unwrap();
    let backend: Value = r.json().await.unwrap();
    let r =
        f.b.http
            .post(format!("{}/clients", f.b.base))
            .bearer_auth(backend["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    // An unknown device.
    let r = f.b.http.head(format!("{}/clients/ffff/nonce", f.b.base)).bearer_auth(&f.token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    f.server.stop().await;
}

/// Field for field: idca's client-identity token has the claims and header members of
/// the token in Wire's golden vector (fixtures/wire/golden.json).
#[tokio::test]
async fn tokens_have_the_fields_of_wires_golden_token() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/wire/golden.json")).unwrap(),
    )
    .unwrap();
    let parts = |t: &str| -> (Value, Value) {
        let mut it = t.split('.');
        let h = serde_json::from_slice(&idca::jose::b64_decode(it.next().unwrap()).unwrap()).unwrap();
        let c = serde_json::from_slice(&idca::jose::b64_decode(it.next().unwrap()).unwrap()).unwrap();
        (h, c)
    };
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let f = fixture().await;
    let nonce = f.nonce().await;
    let (status, body) = f.access_token(&DeviceKey::new().proof(&claims(&f.b.base, &f.device, &nonce))).await;
    assert_eq!(status, 200, "{body}");
    let (ours_h, ours_c) = parts(body["token"].as_str().unwrap());
    let (theirs_h, theirs_c) = parts(golden["access_token"].as_str().unwrap());
    assert_eq!(keys(&ours_c), keys(&theirs_c));
    assert_eq!(keys(&ours_h), keys(&theirs_h));
    assert_eq!(keys(&ours_c["cnf"]), keys(&theirs_c["cnf"]));
    f.server.stop().await;
}

#[tokio::test]
async fn the_account_page_lists_sessions_and_devices_and_takes_each_back() {
    let f = fixture().await;
    let mut b = f.b;
    let mut other = Browser::new(&f.server);
    let _ = user_token(&mut other).await;
    let page = b.get(&format!("{}/oauth/account", b.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("laptop") && page.text.contains(f.device["client_id"].as_str().unwrap()),
        "{}",
        page.text
    );
    assert!(page.text.contains("(this browser)"), "{}", page.text);
    assert_eq!(page.text.matches("name=\"session\"").count(), 2, "{}", page.text);
    let csrf = page.field("csrf");
    let revoke = |b: &Browser, field: &'static str, value: String, csrf: String| {
        b.http
            .post(format!("{}/oauth/account/revoke", b.base))
            .header("cookie", b.cookie.clone().unwrap())
            .form(&[(field, value), ("csrf", csrf)])
            .send()
    };
    // Another browser's session, ended from this one: that browser is signed out.
    let other_cookie = other.cookie.clone().unwrap();
    let other_hash = idca::model::oauth::SecretHash::of(other_cookie.split_once('=').unwrap().1).0;
    assert_eq!(revoke(&b, "session", other_hash.clone(), "forged".into()).await.unwrap().status(), 403);
    assert_eq!(revoke(&b, "session", other_hash, csrf.clone()).await.unwrap().status(), 303);
    assert_eq!(other.get(&format!("{}/oauth/account", other.base)).await.status, 401);
    assert_eq!(b.get(&format!("{}/oauth/account", b.base)).await.status, 200, "this browser stays signed in");
    // The device, removed: it gets no more nonces.
    assert_eq!(revoke(&b, "device", "0123456789abcdef".into(), csrf.clone()).await.unwrap().status(), 403);
    assert_eq!(revoke(&b, "device", f.device["id"].as_str().unwrap().to_owned(), csrf).await.unwrap().status(), 303);
    let r = b
        .http
        .head(format!("{}/clients/{}/nonce", b.base, f.device["id"].as_str().unwrap()))
        .bearer_auth(&f.token)
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "a removed device");
    let page = b.get(&format!("{}/oauth/account", b.base)).await;
    assert!(page.text.contains("No devices."), "{}", page.text);
    f.server.stop().await;
}

/// Device registrations and backend nonces stop at their per-user rates (429
/// temporarily_unavailable with Retry-After).
#[tokio::test]
async fn device_registrations_and_backend_nonces_are_rate_limited_per_user() {
    let f = fixture_with(|c| {
        c.limits.device_registrations_per_minute_per_user = 2;
        c.limits.backend_nonces_per_minute_per_user = 3;
    })
    .await;
    let register = || f.b.http.post(format!("{}/clients", f.b.base)).bearer_auth(&f.token).json(&json!({})).send();
    assert_eq!(register().await.unwrap().status(), 201, "the fixture's device was the first");
    let r = register().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("device_registrations_per_minute_per_user"), "{body}");
    for _ in 0..3 {
        f.nonce().await;
    }
    let r =
        f.b.http.head(format!("{}/clients/{}/nonce", f.b.base, f.cid())).bearer_auth(&f.token).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("replay-nonce").is_none());
    f.server.stop().await;
}
