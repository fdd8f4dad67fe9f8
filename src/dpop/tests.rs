use super::*;
use crate::store::SledStore;
use serde_json::json;

/// RFC 9449 §4.1, the example proof (ES256, `iat` 1562262616).
const RFC_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
const RFC_NOW: i64 = 1_562_262_616;

fn verifier() -> DpopVerifier {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    DpopVerifier::new(store, DpopNonces::new(b"0123456789abcdef0123456789abcdef"), 300)
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
    format!("{}.{}.{}", crate::jose::b64_encode(header.to_string()), parts[1], parts[2])
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
