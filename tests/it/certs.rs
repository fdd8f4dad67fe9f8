//! Certificate helpers shared by the tests.

/// The DER of the first certificate in a PEM chain.
pub(crate) fn first_cert_der(pem: &str) -> Vec<u8> {
    pem_blocks(pem).remove(0)
}

pub(crate) fn pem_blocks(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| {
            let body: String = b.split("-----END CERTIFICATE-----").next().unwrap().split_whitespace().collect();
            base64::engine::general_purpose::STANDARD.decode(body).unwrap()
        })
        .collect()
}

/// The subjectAltNames of the first certificate of a PEM chain, sorted, as text.
pub(crate) fn leaf_sans(chain: &str) -> Vec<String> {
    use x509_parser::prelude::*;
    let der = first_cert_der(chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
            GeneralName::IPAddress(b) => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    names.sort();
    names
}

/// The (authority key identifier, DER serial) of the first certificate of a PEM chain:
/// the two halves of an RFC 9773 CertID.
pub(crate) fn aki_and_serial(chain: &str) -> (Vec<u8>, Vec<u8>) {
    use x509_parser::prelude::*;
    let der = first_cert_der(chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    (idca::ca::authority_key_id(&der).expect("an authority key identifier"), cert.raw_serial().to_vec())
}
