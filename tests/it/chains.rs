//! Alternate chains (issue 20; Pebble's `PEBBLE_ALTERNATE_ROOTS`, `PEBBLE_CHAIN_LENGTH`):
//! one certificate, downloadable with a chain to each root, every root on the
//! management listener, all of it kept across restarts.

use std::sync::Arc;

use crate::certs::pem_blocks;
use crate::client::{Key, RawClient, csr};
use crate::harness::{TestServer, start_with};

/// webpki's verdict on `chain_pem` for `name`, trusting only `root_pem`.
pub(crate) fn webpki(chain_pem: &str, root_pem: &str, name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem_blocks(root_pem).remove(0))).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots)).build().unwrap();
    let mut blocks: Vec<CertificateDer<'static>> =
        pem_blocks(chain_pem).into_iter().map(CertificateDer::from).collect();
    let leaf = blocks.remove(0);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier.verify_server_cert(&leaf, &blocks, &name, &[], UnixTime::now()).map(|_| ()).map_err(|e| format!("{e:?}"))
}

/// The `Link: rel="alternate"` targets of a response.
pub(crate) fn alternate_links(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|v| v.ends_with(";rel=\"alternate\""))
        .map(|v| v.trim_start_matches('<').split('>').next().unwrap().to_owned())
        .collect()
}

fn mgmt(server: &TestServer) -> String {
    format!("https://localhost:{}", server.server.as_ref().unwrap().management_addr().unwrap().port())
}

fn subject_cn(pem: &str) -> String {
    use x509_parser::prelude::*;
    let der = pem_blocks(pem).remove(0);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    c.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned()
}

#[tokio::test]
async fn certificates_come_with_a_chain_to_each_root() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let config = |alternates: u32| {
        let d = data_dir.clone();
        move |c: &mut idca::config::Config| {
            c.storage.data_dir = d;
            c.ca.alternate_roots = alternates;
            c.ca.chain_length = 2;
        }
    };
    let server = start_with(config(2)).await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let name = "chains.example.test";
    let (der, _) = csr(&[name]);
    let (_, cert_url, chain0) = c.issue(&server, &[name], &der).await;
    assert_eq!(pem_blocks(&chain0).len(), 3, "leaf and two intermediates");
    let first = c.post(&cert_url, None).await;
    assert_eq!(alternate_links(&first.headers), [format!("{cert_url}/alternate/1"), format!("{cert_url}/alternate/2")]);

    // Each root from the management API; each chain verifies to its own root only.
    let http = &c.http;
    let mut roots = Vec::new();
    for n in 0..3 {
        let r = http.get(format!("{}/roots/{n}", mgmt(&server))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let others: Vec<String> = (0..3).filter(|m| *m != n).map(|m| format!("{}/roots/{m}", mgmt(&server))).collect();
        assert_eq!(alternate_links(r.headers()), others);
        roots.push(r.text().await.unwrap());
    }
    assert_eq!(roots[0], server.root_pem());
    assert_eq!(http.get(format!("{}/roots/3", mgmt(&server))).send().await.unwrap().status(), 404);
    let mut chains = vec![chain0.clone()];
    for n in 1..3 {
        let r = c.post(&format!("{cert_url}/alternate/{n}"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("content-type").as_deref(), Some("application/pem-certificate-chain"));
        let mut want = vec![cert_url.clone()];
        want.extend((1..3).filter(|m| *m != n).map(|m| format!("{cert_url}/alternate/{m}")));
        assert_eq!(alternate_links(&r.headers), want);
        assert_eq!(pem_blocks(&r.text)[0], pem_blocks(&chain0)[0], "the same leaf");
        chains.push(r.text);
    }
    for (n, chain) in chains.iter().enumerate() {
        webpki(chain, &roots[n], name).unwrap_or_else(|e| panic!("chain {n}: {e}"));
        assert!(webpki(chain, &roots[(n + 1) % 3], name).is_err(), "chain {n} reached another root");
        // The intermediate in chain n is the issuing one, as /intermediates/n says.
        let int = http.get(format!("{}/intermediates/{n}", mgmt(&server))).send().await.unwrap().text().await.unwrap();
        assert_eq!(pem_blocks(&int)[0], pem_blocks(chain)[1]);
    }
    let root_cns: std::collections::BTreeSet<_> = roots.iter().map(|r| subject_cn(r)).collect();
    assert_eq!(root_cns.len(), 3, "preferred-chain options tell roots apart by name: {root_cns:?}");

    // No such chain; someone else's certificate; a plain GET.
    c.post(&format!("{cert_url}/alternate/3"), None).await.assert_problem(404, "malformed");
    let mut other = RawClient::new(&server, Key::p256()).await;
    other.register().await;
    other.post(&format!("{cert_url}/alternate/1"), None).await.assert_problem(403, "unauthorized");
    let get = c.http.get(format!("{cert_url}/alternate/1")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    // Stopped means closed: the same data directory opens again at once.
    server.stop().await;

    // Restarted with one more alternate root: the roots handed out stay, one is added.
    let server = start_with(config(3)).await;
    let mut again = Vec::new();
    for n in 0..4 {
        let r = c.http.get(format!("{}/roots/{n}", mgmt(&server))).send().await.unwrap();
        assert_eq!(r.status(), 200, "root {n}");
        again.push(r.text().await.unwrap());
    }
    assert_eq!(again[..3], roots[..]);
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let (der, _) = csr(&[name]);
    let (_, cert_url, _) = c.issue(&server, &[name], &der).await;
    let chain3 = c.post(&format!("{cert_url}/alternate/3"), None).await.text;
    webpki(&chain3, &again[3], name).unwrap();
    server.stop().await;
}

/// Without alternate roots the download has no alternate links and `/alternate/1` is 404.
#[tokio::test]
async fn one_chain_means_no_alternates() {
    let server = start_with(|_| {}).await;
    let mut c = RawClient::new(&server, Key::p256()).await;
    c.register().await;
    let (der, _) = csr(&["single.example.test"]);
    let (_, cert_url, chain) = c.issue(&server, &["single.example.test"], &der).await;
    assert_eq!(pem_blocks(&chain).len(), 2);
    assert!(alternate_links(&c.post(&cert_url, None).await.headers).is_empty());
    c.post(&format!("{cert_url}/alternate/1"), None).await.assert_problem(404, "malformed");
    let r = c.post(&format!("{cert_url}/alternate/x"), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    server.stop().await;
}
