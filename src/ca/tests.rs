use super::*;
use crate::model::{Der, Revocation};
use x509_parser::prelude::*;

const NOW: UnixTime = 1_800_000_000;

fn ca() -> (Ca, CaMaterial) {
    let m = Ca::generate("idca", &super::NameConstraints::default(), NOW).unwrap();
    (Ca::load(&m, Some("https://ca.test/crl".into())).unwrap(), m)
}

fn leaf_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

#[test]
fn root_and_intermediate_are_cas_with_pathlen_zero() {
    let (ca, m) = ca();
    let (_, root) = X509Certificate::from_der(&m.root_cert).unwrap();
    let (_, int) = X509Certificate::from_der(&m.intermediate_cert).unwrap();
    assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    let bc = int.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    int.verify_signature(Some(root.public_key())).unwrap();
    assert!(ca.root_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
}

#[test]
fn leaf_takes_only_the_key_and_has_chosen_names() {
    let (ca, m) = ca();
    let key = leaf_key();
    let names = vec!["a.example".to_owned()];
    let ips = vec!["127.0.0.1".parse().unwrap()];
    let leaf = ca
        .issue(&LeafRequest {
            spki_der: &key.subject_public_key_info(),
            key_type: KeyType::P256,
            dns_names: &names,
            ip_addresses: &ips,
            uris: &[],
            emails: &[],
            subject: None,
            not_before: NOW,
            not_after: NOW + 90 * 86_400,
            usage: Usage::TlsServer,
        })
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&leaf.der).unwrap();
    let (_, int) = X509Certificate::from_der(&m.intermediate_cert).unwrap();
    cert.verify_signature(Some(int.public_key())).unwrap();
    assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names.len(), 2);
    assert!(cert.extended_key_usage().unwrap().unwrap().value.server_auth);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    assert_eq!(cert.validity().not_before.timestamp(), NOW);
    // AKI equals the intermediate's SKI.
    let ski = int
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(authority_key_id(&leaf.der).unwrap(), ski);
    assert_eq!(cert.raw_serial().len(), 16);
    assert_eq!(leaf.serial.0, cert.raw_serial_as_string().replace(':', ""));
    assert!(leaf.chain_pem.ends_with(ca.intermediate_pem()));
}

#[test]
fn same_key_twice_gets_distinct_serials() {
    let (ca, _) = ca();
    let key = leaf_key();
    let names = vec!["a.example".to_owned()];
    let req = LeafRequest {
        spki_der: &key.subject_public_key_info(),
        key_type: KeyType::P256,
        dns_names: &names,
        ip_addresses: &[],
        uris: &[],
        emails: &[],
        subject: None,
        not_before: NOW,
        not_after: NOW + 86_400,
        usage: Usage::TlsServer,
    };
    assert_ne!(ca.issue(&req).unwrap().serial, ca.issue(&req).unwrap().serial);
}

#[test]
fn rejects_mismatched_material() {
    let (_, a) = ca();
    let (_, b) = ca();
    let mixed = CaMaterial { intermediate_key: b.intermediate_key.clone(), ..a.clone() };
    assert!(matches!(Ca::load(&mixed, None), Err(CaError::Material(m)) if m.contains("does not match")));
    let foreign =
        CaMaterial { intermediate_cert: b.intermediate_cert.clone(), intermediate_key: b.intermediate_key, ..a };
    assert!(matches!(Ca::load(&foreign, None), Err(CaError::Material(m)) if m.contains("not signed by the root")));
}

#[test]
fn loads_pem_files() {
    let (ca, m) = ca();
    let dir = std::env::temp_dir().join(format!("idca-ca-test-{}", crate::model::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let rc = write("root.pem", ca.root_pem().to_owned());
    let rk = write("root-key.pem", pem("PRIVATE KEY", &m.root_key));
    let ic = write("int.pem", ca.intermediate_pem().to_owned());
    let ik = write("int-key.pem", pem("PRIVATE KEY", &m.intermediate_key));
    let loaded = Ca::from_pem_files(&rc, &rk, &ic, &ik).unwrap();
    assert_eq!(loaded, m);
    assert!(Ca::from_pem_files(&rc, &ik, &ic, &ik).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn server_certificate_covers_configured_names() {
    let (ca, _) = ca();
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let (chain, key) = ca.issue_server_certificate(&names, NOW).unwrap();
    assert_eq!(chain.len(), 2);
    assert!(KeyPair::try_from(key.as_slice()).is_ok());
    let (_, cert) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(cert.subject_alternative_name().unwrap().unwrap().value.general_names.len(), 3);
}

#[test]
fn leaves_point_at_the_crl_and_the_crl_lists_revocations() {
    let (ca, m) = ca();
    let key = leaf_key();
    let names = vec!["a.example".to_owned()];
    let leaf = ca
        .issue(&LeafRequest {
            spki_der: &key.subject_public_key_info(),
            key_type: KeyType::P256,
            dns_names: &names,
            ip_addresses: &[],
            uris: &[],
            emails: &[],
            subject: None,
            not_before: NOW,
            not_after: NOW + 86_400,
            usage: Usage::TlsServer,
        })
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&leaf.der).unwrap();
    let dp = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(d) => Some(format!("{d:?}")),
            _ => None,
        })
        .unwrap();
    assert!(dp.contains(&format!("https://ca.test/crl/{}", ca.crl_id())), "{dp}");
    let der = ca.crl(&[(leaf.serial.clone(), Revocation { reason: 1, at: NOW + 10 })], NOW + 20, 3600).unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
    let (_, int) = X509Certificate::from_der(&m.intermediate_cert).unwrap();
    crl.verify_signature(int.public_key()).unwrap();
    let serials: Vec<String> =
        crl.iter_revoked_certificates().map(|r| r.raw_serial_as_string().replace(':', "")).collect();
    assert_eq!(serials, vec![leaf.serial.0.clone()]);
    assert!(is_revocation_reason(1) && !is_revocation_reason(7) && !is_revocation_reason(11));
}

#[test]
fn the_intermediate_can_be_name_constrained_to_identity_domains() {
    let m = Ca::generate("idca", &super::NameConstraints::uri_hosts(&["wire.test".to_owned()]), NOW).unwrap();
    let (_, int) = X509Certificate::from_der(&m.intermediate_cert).unwrap();
    let nc = int.extensions().iter().find(|e| e.oid.to_id_string() == "2.5.29.30").unwrap();
    assert!(nc.critical);
    assert_eq!(permitted_uri_hosts(&m.intermediate_cert), vec!["wire.test".to_owned()]);
    assert!(
        permitted_uri_hosts(&Ca::generate("idca", &super::NameConstraints::default(), NOW).unwrap().intermediate_cert)
            .is_empty()
    );
    let ca = Ca::load(&m, None).unwrap();
    let issue = |uri: &str| {
        let key = leaf_key();
        let uris = vec![uri.to_owned()];
        ca.issue(&LeafRequest {
            spki_der: &key.subject_public_key_info(),
            key_type: KeyType::P256,
            dns_names: &[],
            ip_addresses: &[],
            uris: &uris,
            emails: &[],
            subject: Some(("wire.test", "Alice")),
            not_before: NOW - 60,
            not_after: NOW + 86_400,
            usage: Usage::ClientIdentity,
        })
        .unwrap()
        .der
    };
    // OpenSSL (when installed) checks the constraint on a URI's host. It does not skip a
    // userinfo part (`%40alice@`), so Wire's URIs fail its check either way; plain URIs
    // show the encoding is right.
    let inside = issue("https://wire.test/alice");
    let outside = issue("https://other.test/mallory");
    let Ok(probe) = std::process::Command::new("openssl").arg("version").output() else { return };
    if !probe.status.success() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("idca-nc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("root.pem"), cert_pem(&m.root_cert)).unwrap();
    std::fs::write(dir.join("int.pem"), cert_pem(&m.intermediate_cert)).unwrap();
    let verify = |leaf: &[u8]| {
        std::fs::write(dir.join("leaf.pem"), cert_pem(leaf)).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-attime", &(NOW + 3600).to_string(), "-CAfile"])
            .arg(dir.join("root.pem"))
            .arg("-untrusted")
            .arg(dir.join("int.pem"))
            .arg(dir.join("leaf.pem"))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, text) = verify(&inside);
    assert!(ok, "{text}");
    let (ok, text) = verify(&outside);
    assert!(!ok && text.contains("subtree"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// webpki's verdict on `chain_pem` (leaf first) for `name`, trusting only `root_pem`.
fn webpki(chain_pem: &str, root_pem: &str, name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime as Time};
    let blocks = |pem: &str| -> Vec<CertificateDer<'static>> {
        pem.split_inclusive("-----END CERTIFICATE-----\n")
            .filter_map(|b| pem_block(b, "CERTIFICATE"))
            .map(CertificateDer::from)
            .collect()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(blocks(root_pem).remove(0)).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
        .build()
        .unwrap();
    let mut chain = blocks(chain_pem);
    let leaf = chain.remove(0);
    let at = Time::since_unix_epoch(std::time::Duration::from_secs(NOW as u64 + 60));
    verifier
        .verify_server_cert(&leaf, &chain, &ServerName::try_from(name.to_owned()).unwrap(), &[], at)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn tls_leaf(ca: &Ca, name: &str) -> IssuedLeaf {
    let key = leaf_key();
    ca.issue(&LeafRequest {
        spki_der: &key.subject_public_key_info(),
        key_type: KeyType::P256,
        dns_names: &[name.to_owned()],
        ip_addresses: &[],
        uris: &[],
        emails: &[],
        subject: None,
        not_before: NOW,
        not_after: NOW + 86_400,
        usage: Usage::TlsServer,
    })
    .unwrap()
}

/// Issue 20: one leaf verifies under every chain, each to its own root and only to it.
#[test]
fn alternate_chains_each_verify_a_leaf_to_their_own_root() {
    let (_, m) = ca();
    let chains = build_chains(&m, "idca", (2, 2), None, NOW).unwrap();
    assert_eq!(chains.chains.len(), 3);
    assert!(chains.chains.iter().all(|c| c.intermediates.len() == 2));
    let ca = Ca::load(&m, None).unwrap().with_chains(&chains).unwrap();
    assert_eq!(ca.chain_count(), 3);
    let leaf = tls_leaf(&ca, "chain.example");
    assert_eq!(Some(leaf.chain_pem.clone()), ca.chain_pem(&leaf.der, 0), "the stored chain is chain 0");
    let mut root_names = Vec::new();
    for n in 0..3 {
        let pem = ca.chain_pem(&leaf.der, n).unwrap();
        let root = ca.chain_root_pem(n).unwrap();
        webpki(&pem, root, "chain.example").unwrap_or_else(|e| panic!("chain {n}: {e}"));
        let other = ca.chain_root_pem((n + 1) % 3).unwrap();
        assert!(webpki(&pem, other, "chain.example").is_err(), "chain {n} must not reach another root");
        let (_, r) = X509Certificate::from_der(&chains.chains[n].root.0).unwrap();
        root_names.push(r.subject().to_string());
    }
    assert_eq!(chains.chains[0].root.0, m.root_cert, "chain 0 ends at idca's root");
    root_names.dedup();
    assert_eq!(root_names.len(), 3, "{root_names:?}");
    assert!(ca.chain_pem(&leaf.der, 3).is_none());
    assert_eq!(ca.chain_intermediate_pem(1).unwrap(), cert_pem(&chains.chains[1].intermediates[0].0));
    // A leaf of another CA gets no chain here.
    let (other, _) = tests::ca();
    assert_eq!(ca.chains_for(&tls_leaf(&other, "x.example").der), 1);
    assert_eq!(ca.chains_for(&leaf.der), 3);
}

#[test]
fn chains_are_kept_extended_or_rebuilt_as_the_configuration_changes() {
    let (_, m) = ca();
    let one = build_chains(&m, "idca", (1, 1), None, NOW).unwrap();
    assert_eq!(one.chains[0].intermediates, vec![Der(m.intermediate_cert.clone())], "length 1: the direct path");
    assert!(chains_fit(&one, &m, 1, 1) && chains_fit(&one, &m, 1, 0) && !chains_fit(&one, &m, 1, 2));
    let more = build_chains(&m, "idca", (1, 3), Some(&one), NOW).unwrap();
    assert_eq!(more.chains.len(), 4);
    assert_eq!(more.chains[..2], one.chains[..], "roots handed out stay");
    let longer = build_chains(&m, "idca", (3, 1), Some(&more), NOW).unwrap();
    assert_ne!(longer.chains[1], more.chains[1]);
    assert_eq!(longer.chains[1].intermediates.len(), 3);
    let ca = Ca::load(&m, None).unwrap().with_chains(&longer).unwrap();
    let leaf = tls_leaf(&ca, "long.example");
    for n in 0..2 {
        webpki(&ca.chain_pem(&leaf.der, n).unwrap(), ca.chain_root_pem(n).unwrap(), "long.example").unwrap();
    }
    // idca's own TLS chain follows chain 0.
    let (server_chain, _) = ca.issue_server_certificate(&["localhost".into()], NOW).unwrap();
    assert_eq!(server_chain.len(), 4);
}

#[test]
fn chains_refuse_what_they_cannot_build_or_trust() {
    let (_, m) = ca();
    let offline = CaMaterial { root_key: Vec::new(), ..m.clone() };
    let e = build_chains(&offline, "idca", (2, 0), None, NOW).unwrap_err();
    assert!(e.to_string().contains("root key"), "{e}");
    assert_eq!(build_chains(&offline, "idca", (1, 1), None, NOW).unwrap().chains.len(), 2);
    let chains = build_chains(&m, "idca", (1, 2), None, NOW).unwrap();
    let (_, other) = ca();
    assert!(Ca::load(&other, None).unwrap().with_chains(&chains).is_err(), "built for another intermediate");
    let mut swapped = chains.clone();
    swapped.chains[1].root = chains.chains[2].root.clone();
    let e = Ca::load(&m, None).unwrap().with_chains(&swapped).unwrap_err();
    assert!(e.to_string().contains("chain 1"), "{e}");
}
