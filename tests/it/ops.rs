//! Operations surface: Pebble's management API, /healthz, /metrics.

use serde_json::json;

use crate::certs::first_cert_der;
use crate::client::{Key, RawClient, b64, csr};
use crate::harness::start;

#[tokio::test]
async fn management_api_serves_roots_and_certificate_status() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let mgmt = format!("https://localhost:{}", server.server.as_ref().unwrap().management_addr().unwrap().port());
    let get = |path: &str| c.http.get(format!("{mgmt}{path}")).send();
    let root = get("/roots/0").await.unwrap();
    assert_eq!(root.headers()["content-type"], "application/pem-certificate-chain");
    assert_eq!(root.text().await.unwrap(), server.root_pem());
    assert_eq!(get("/roots/1").await.unwrap().status(), 404);
    let int = get("/intermediates/0").await.unwrap().text().await.unwrap();
    assert_eq!(int, std::fs::read_to_string(server.data_dir().join("intermediate.pem")).unwrap());

    let (der, _) = csr(&["status.example.test"]);
    let (_, _, chain) = c.issue(&server, &["status.example.test"], &der).await;
    let leaf = first_cert_der(&chain);
    let serial = {
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        cert.raw_serial_as_string().replace(':', "")
    };
    let status: serde_json::Value =
        get(&format!("/cert-status-by-serial/{serial}")).await.unwrap().json().await.unwrap();
    assert_eq!(status["Status"], "Valid");
    assert_eq!(status["Serial"], serial);
    assert!(chain.starts_with(status["Certificate"].as_str().unwrap()));
    c.post(&c.url("revokeCert"), Some(&json!({"certificate": b64(&leaf), "reason": 4}))).await;
    let status: serde_json::Value =
        get(&format!("/cert-status-by-serial/{serial}")).await.unwrap().json().await.unwrap();
    assert_eq!(status["Status"], "Revoked");
    assert_eq!(status["Reason"], 4);
    assert_eq!(get("/cert-status-by-serial/00").await.unwrap().status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn healthz_and_metrics() {
    let server = start().await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let (der, _) = csr(&["m.example.test"]);
    c.issue(&server, &["m.example.test"], &der).await;
    let base = server.directory_url().replace("/directory", "");
    let health = c.http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let text = c.http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("idca_certificates_issued_total 1"), "{text}");
    assert!(text.contains("idca_validations_total{type=\"http-01\",result=\"valid\"} 1"), "{text}");
    assert!(text.contains("route=\"/acme/order/{id}/finalize\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("idca_http_request_duration_seconds_count{route=\"/acme/new-order\"} 1"), "{text}");
    // Routes are named by their pattern, never by the ids in the path; paths no route
    // takes are all one label.
    // A segment equal to a literal part of its route is still named at its own place;
    // methods HTTP does not define are all `other`.
    for path in ["/acme/chall/a1/b2", "/v5/clients/c3/nonce", "/no/such/x9", "/acme/no-such", "/acme/acct/acct"] {
        c.http.get(format!("{base}{path}")).send().await.unwrap();
    }
    for invented in ["FOO1", "FOO2"] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).unwrap();
        c.http.request(method, format!("{base}/directory")).send().await.unwrap();
    }
    let text = c.http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for label in [
        "route=\"/acme/chall/{authz}/{id}\",status=\"405\"} 1",
        "route=\"/v{api_version}/clients/{cid}/nonce\",status=\"401\"} 1",
        "route=\"unmatched\",status=\"404\"} 2",
        "method=\"GET\",route=\"/acme/acct/{id}\",status=\"405\"} 1",
        "idca_http_requests_total{method=\"other\",",
    ] {
        assert!(text.contains(label), "{label} in {text}");
    }
    assert!(!["a1", "b2", "c3", "x9", "no-such", "FOO"].iter().any(|id| text.contains(id)), "{text}");
    server.stop().await;
}

/// Pebble's management `POST /set-renewal-info/`: off by default; on, a certificate's
/// renewal information is answered with the given text, verbatim (even broken JSON).
#[tokio::test]
async fn set_renewal_info_overrides_the_window_when_switched_on() {
    for on in [false, true] {
        let server = crate::harness::start_with(|c| c.acme.testing.set_renewal_info = on).await;
        let mut c = RawClient::new(&server, Key::p256()).await;
        c.register().await;
        let (der, _) = csr(&["ari.example.test"]);
        let (_, _, chain) = c.issue(&server, &["ari.example.test"], &der).await;
        let (aki, serial) = crate::certs::aki_and_serial(&chain);
        let ari = format!("{}/{}.{}", c.url("renewalInfo"), b64(aki), b64(serial));
        let mgmt = format!("https://localhost:{}", server.server.as_ref().unwrap().management_addr().unwrap().port());
        let set = |body: serde_json::Value| c.http.post(format!("{mgmt}/set-renewal-info/")).json(&body).send();
        let leaf_pem = chain.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap().to_owned();
        let computed: serde_json::Value = c.http.get(&ari).send().await.unwrap().json().await.unwrap();
        assert!(computed["suggestedWindow"]["start"].is_string(), "{computed}");
        let r = set(json!({"certificate": leaf_pem, "ARIResponse": "{not json"})).await.unwrap();
        if !on {
            assert_eq!(r.status(), 404);
            let again: serde_json::Value = c.http.get(&ari).send().await.unwrap().json().await.unwrap();
            assert_eq!(again, computed, "switched off, nothing changes");
            server.stop().await;
            continue;
        }
        assert_eq!(r.status(), 200);
        let answer = c.http.get(&ari).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "{not json");
        // Bad requests change nothing.
        assert_eq!(set(json!({"ARIResponse": "x"})).await.unwrap().status(), 400);
        assert_eq!(set(json!({"Certificate": "junk", "ARIResponse": "x"})).await.unwrap().status(), 400);
        let foreign = rcgen::CertificateParams::new(vec!["x.test".to_owned()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        assert_eq!(set(json!({"CERTIFICATE": foreign.pem(), "ariresponse": "x"})).await.unwrap().status(), 404);
        assert_eq!(c.http.get(&ari).send().await.unwrap().text().await.unwrap(), "{not json");
        server.stop().await;
    }
}
