use super::*;
use crate::store::SledStore;
use serde_json::json;

/// RFC 9449 §4.1, the example proof (ES256, `iat` 1562262616).
const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
const RFC_NOW: i64 = 1_562_262_616;

fn verifier() -> DpopVerifier {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    DpopVerifier::new(
        store,
        DpopNonces::new(b"0123456789abcdef0123456789abcdef"),
        Duration::from_secs(300),
        JsonDepth::default(),
    )
}

fn at_token() -> Expected<'static> {
    Expected { htm: "POST", htu: "https://server.example.com/token", access_token: None }
}

#[tokio::test]
async fn rfc9449_example_proof_verifies_once() {
    let v = verifier();
    let p = v.verify(RFC_PROOF, &at_token(), false, RFC_NOW).await.unwrap();
    assert_eq!(p.jkt.0, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    // §11.1: the same jti again is a replay.
    assert!(
        matches!(v.verify(RFC_PROOF, &at_token(), false, RFC_NOW).await, Err(DpopError::InvalidProof(m)) if m.contains("replay"))
    );
}

#[test]
fn rfc9449_ath_example() {
    assert_eq!(ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
}

#[tokio::test]
async fn rejects_wrong_htm_htu_and_stale_iat() {
    let v = verifier();
    let wrong_htm = Expected { htm: "GET", ..at_token() };
    assert!(
        matches!(v.verify(RFC_PROOF, &wrong_htm, false, RFC_NOW).await, Err(DpopError::InvalidProof(m)) if m.contains("htm"))
    );
    let wrong_htu = Expected { htu: "https://server.example.com/other", ..at_token() };
    assert!(
        matches!(v.verify(RFC_PROOF, &wrong_htu, false, RFC_NOW).await, Err(DpopError::InvalidProof(m)) if m.contains("htu"))
    );
    assert!(
        matches!(v.verify(RFC_PROOF, &at_token(), false, RFC_NOW + 3600).await, Err(DpopError::InvalidProof(m)) if m.contains("iat"))
    );
    assert!(
        matches!(v.verify(RFC_PROOF, &at_token(), false, RFC_NOW - 3600).await, Err(DpopError::InvalidProof(m)) if m.contains("iat"))
    );
    // The normalised htu still matches: default port, case, query.
    let same = Expected { htu: "HTTPS://Server.Example.com:443/token?x=1", ..at_token() };
    v.verify(RFC_PROOF, &same, false, RFC_NOW).await.unwrap();
}

#[tokio::test]
async fn requires_the_nonce_once_asked_and_ath_at_resources() {
    let v = verifier();
    assert!(matches!(v.verify(RFC_PROOF, &at_token(), true, RFC_NOW).await, Err(DpopError::UseNonce(_))));
    let resource = Expected { access_token: Some("some.access.token"), ..at_token() };
    assert!(
        matches!(v.verify(RFC_PROOF, &resource, false, RFC_NOW).await, Err(DpopError::InvalidProof(m)) if m.contains("ath"))
    );
}

fn tampered(header: serde_json::Value) -> String {
    let parts: Vec<&str> = RFC_PROOF.split('.').collect();
    format!("{}.{}.{}", b64_encode(header.to_string()), parts[1], parts[2])
}

#[tokio::test]
async fn rejects_bad_typ_alg_private_jwk_and_signature() {
    let v = verifier();
    let jwk = json!({"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"});
    let mut private = jwk.clone();
    private["d"] = json!("AAAA");
    for (header, why) in [
        (json!({"typ":"JWT","alg":"ES256","jwk":jwk}), "typ"),
        (json!({"typ":"dpop+jwt","alg":"none","jwk":jwk}), "algorithm"),
        (json!({"typ":"dpop+jwt","alg":"HS256","jwk":jwk}), "algorithm"),
        (json!({"typ":"dpop+jwt","alg":"ES256","jwk":private}), "jwk"),
        (json!({"typ":"dpop+jwt","alg":"ES256"}), "jwk"),
        (json!({"typ":"dpop+jwt","alg":"EdDSA","jwk":jwk}), "alg"),
        // A header change breaks the signature.
        (json!({"typ":"dpop+jwt","alg":"ES256","jwk":jwk,"x":1}), "signature"),
    ] {
        let err = v.verify(&tampered(header), &at_token(), false, RFC_NOW).await.unwrap_err();
        assert!(matches!(&err, DpopError::InvalidProof(m) if m.contains(why)), "{why}: {err:?}");
    }
    assert!(matches!(v.verify("a.b", &at_token(), false, RFC_NOW).await, Err(DpopError::InvalidProof(_))));
}

#[test]
fn htu_normalisation() {
    assert_eq!(normalize_htu("HTTPS://A.example:443/p?q#f").as_deref(), Some("https://a.example/p"));
    assert_eq!(normalize_htu("http://a.example:80").as_deref(), Some("http://a.example/"));
    assert_eq!(normalize_htu("https://a.example:8443/p").as_deref(), Some("https://a.example:8443/p"));
    assert_eq!(normalize_htu("ftp://a.example/p"), None);
    assert_eq!(normalize_htu("https://user@a.example/p"), None);
}

/// Wire's golden vector (fixtures/wire/golden.json, from rusty-jwt-tools).
fn golden() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/wire/golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn golden_expected(v: &serde_json::Value) -> (WireExpected<'_>, i64) {
    let now = v["now"].as_i64().unwrap();
    let s = |k: &str| v[k].as_str().unwrap();
    (
        WireExpected {
            client_id: s("client_id"),
            nonce: s("nonce"),
            htu: s("htu"),
            handle: s("handle"),
            team: s("team"),
            name: s("name"),
            max_exp: now + 3600,
            max_skew_secs: 1,
            depth: JsonDepth::default(),
        },
        now,
    )
}

#[test]
fn wire_golden_proof_verifies() {
    let v = golden();
    let (expected, now) = golden_expected(&v);
    let p = verify_wire_proof(v["proof"].as_str().unwrap(), &expected, now).unwrap();
    assert_eq!(p.jkt.0, v["dpop_jkt"].as_str().unwrap());
    // An exp up to the skew (1 s, brig's) past the allowed lifetime is clock skew, not a
    // long-lived proof.
    let skewed = WireExpected { max_exp: 1_763_133_147 - 1, ..expected.clone() };
    assert!(verify_wire_proof(v["proof"].as_str().unwrap(), &skewed, now).is_ok());
    assert_eq!(p.chal, v["chal"].as_str().unwrap());
    assert_eq!(p.aud, v["aud"].as_str().unwrap());
}

#[test]
fn wire_golden_proof_rejects_each_changed_binding() {
    let v = golden();
    let proof = v["proof"].as_str().unwrap();
    let (good, now) = golden_expected(&v);
    let other_htu = "https://wire.com/clients/9ff0457928ebe5f4/access-token";
    let cases: Vec<(&str, WireExpected<'_>, i64)> = vec![
        ("client id", WireExpected { client_id: "wireapp://yRbSiljXSnCl77-QkM634g!1@wire.com", ..good.clone() }, now),
        ("nonce", WireExpected { nonce: "AAAAAAAAAAAAAAAAAAAAAA", ..good.clone() }, now),
        ("htu", WireExpected { htu: other_htu, ..good.clone() }, now),
        ("handle", WireExpected { handle: "wireapp://%40bob@wire.com", ..good.clone() }, now),
        ("team", WireExpected { team: "other", ..good.clone() }, now),
        ("name", WireExpected { name: "Alice", ..good.clone() }, now),
        ("lives too long", WireExpected { max_exp: now + 60, ..good.clone() }, now),
        // The golden proof's exp is 1_763_133_147; 1 s of skew and one more second.
        ("lives too long", WireExpected { max_exp: 1_763_133_147 - 2, ..good.clone() }, now),
        ("expired by more than the skew", good.clone(), 1_763_133_147 + 2),
        ("expired", good.clone(), now + 86_400),
        ("not yet valid", good.clone(), 1_763_125_947 - 3600),
    ];
    for (why, expected, at) in cases {
        assert!(verify_wire_proof(proof, &expected, at).is_err(), "{why}");
    }
    // One changed character anywhere in the payload breaks the signature.
    let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value = serde_json::from_slice(&crate::jose::b64_decode(&parts[1]).unwrap()).unwrap();
    payload["team"] = serde_json::json!("wirf");
    parts[1] = b64_encode(payload.to_string());
    assert!(verify_wire_proof(&parts.join("."), &good, now).is_err());
}

#[test]
fn wire_golden_access_token_is_signed_by_its_header_key() {
    let v = golden();
    let jws = CompactJws::parse(v["access_token"].as_str().unwrap(), JsonDepth::default()).unwrap();
    assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
    let key = Jwk::from_value(jws.header.jwk.as_ref().unwrap()).unwrap();
    let claims: serde_json::Value = jws.verify(&key).unwrap();
    assert_eq!(claims["cnf"]["kid"], v["dpop_jkt"]);
    assert_eq!(claims["proof"], v["proof"]);
}

/// A Wire-profile proof signed with a fresh key, with `edit` applied to its claims.
fn fresh_wire_proof(edit: impl FnOnce(&mut serde_json::Value)) -> (String, i64) {
    let now = 1_800_000_000;
    let key = crate::jose::SigningKey::from_pkcs8(&crate::jose::SigningKey::generate_pkcs8().unwrap()).unwrap();
    let mut claims = serde_json::json!({"sub": "wireapp://u!1@wire.test", "aud": "https://acme.test/chal/1",
        "iat": now, "nbf": now, "exp": now + 60, "jti": "j", "nonce": "n", "htm": "POST",
        "htu": "https://idca.test/clients/1/access-token", "chal": "c",
        "handle": "wireapp://%40alice@wire.test", "team": "wire", "name": "Alice"});
    edit(&mut claims);
    (key.sign_embedding_jwk("dpop+jwt", &claims).unwrap(), now)
}

fn fresh_expected(team: &str) -> WireExpected<'_> {
    WireExpected {
        client_id: "wireapp://u!1@wire.test",
        nonce: "n",
        htu: "https://idca.test/clients/1/access-token",
        handle: "wireapp://%40alice@wire.test",
        team,
        name: "Alice",
        max_exp: 1_800_000_000 + 300,
        max_skew_secs: 1,
        depth: JsonDepth::default(),
    }
}

/// brig's time checks: `iat` and `nbf` in the future by more than the skew are refused,
/// a second of skew is not.
#[test]
fn wire_proofs_issued_in_the_future_are_refused() {
    for (field, offset, ok) in [("iat", 1, true), ("iat", 2, false), ("nbf", 1, true), ("nbf", 2, false)] {
        let (proof, now) = fresh_wire_proof(|c| c[field] = serde_json::json!(c[field].as_i64().unwrap() + offset));
        let r = verify_wire_proof(&proof, &fresh_expected("wire"), now);
        assert_eq!(r.is_ok(), ok, "{field} +{offset}: {r:?}");
        if !ok {
            assert!(matches!(&r, Err(DpopError::InvalidProof(m)) if m.contains(field)), "{r:?}");
        }
    }
}

/// A user without a team: the proof's `team` may be absent, null or empty; a team is
/// refused. A user in a team needs it.
#[test]
fn wire_proofs_of_users_without_a_team() {
    for team in [None, Some(serde_json::Value::Null), Some(serde_json::json!(""))] {
        let (proof, now) = fresh_wire_proof(|c| match &team {
            None => drop(c.as_object_mut().unwrap().remove("team")),
            Some(t) => c["team"] = t.clone(),
        });
        assert!(verify_wire_proof(&proof, &fresh_expected(""), now).is_ok(), "{team:?}");
        assert!(verify_wire_proof(&proof, &fresh_expected("wire"), now).is_err(), "{team:?} for a team user");
    }
    let (proof, now) = fresh_wire_proof(|_| {});
    assert!(verify_wire_proof(&proof, &fresh_expected(""), now).is_err(), "a team for a user without one");
}
