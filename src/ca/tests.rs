use super::*;
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
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);
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
