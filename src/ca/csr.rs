//! Certificate signing requests (RFC 2986): parse, check the signature, read the names.
//!
//! Nothing the CSR asks for is copied into a certificate except its public key; this
//! module only reports what was asked, so `acme::finalize` can compare it with the order.

use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use super::CaError;

/// Key types accepted in CSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    P256,
    P384,
    /// P-521: accepted in CSRs (Wire's cipher suite 5), verified with RustCrypto's
    /// `p521`; idca does not make P-521 keys.
    P521,
    Rsa(usize),
}

/// What a verified CSR asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    /// The DER SubjectPublicKeyInfo: the only thing a certificate takes from the CSR.
    pub spki_der: Vec<u8>,
    pub key_type: KeyType,
    /// Subject common name, if any (lower-cased).
    pub common_name: Option<String>,
    /// DNS names from the subjectAltName extension (lower-cased).
    pub dns_names: Vec<String>,
    /// IP addresses from the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    /// URIs from the subjectAltName extension (client identity).
    pub uris: Vec<String>,
    /// Subject organization (`O`) values.
    pub organizations: Vec<String>,
    /// Subject display names (LDAP `displayName`, OID 2.16.840.1.113730.3.1.241): where a
    /// client identity CSR carries the user's name (Wire's core-crypto, step-ca).
    pub display_names: Vec<String>,
}

/// LDAP `displayName` (RFC 2798 §2.3), as Netscape's OID.
const OID_DISPLAY_NAME: &[u64] = &[2, 16, 840, 1, 113730, 3, 1, 241];

fn bad(msg: impl Into<String>) -> CaError {
    CaError::BadCsr(msg.into())
}

/// Parses a DER CSR and checks it: one of the allowed signature algorithms (no SHA-1,
/// no MD5), a valid self-signature, an allowed key type (P-256, P-384, Ed25519, RSA
/// 2048-4096), no request for CA rights, and no SAN kinds other than DNS, IP and URI.
pub fn parse_csr(der: &[u8]) -> Result<CsrInfo, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|_| bad("CSR is not valid DER"))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the CSR"));
    }
    // 1. Signature algorithm allow-list, before verifying (x509-parser accepts SHA-1).
    let sig_alg = &csr.signature_algorithm.algorithm;
    let allowed = [
        OID_SIG_ECDSA_WITH_SHA256,
        OID_SIG_ECDSA_WITH_SHA384,
        OID_SIG_ECDSA_WITH_SHA512,
        OID_SIG_ED25519,
        OID_PKCS1_SHA256WITHRSA,
        OID_PKCS1_SHA384WITHRSA,
        OID_PKCS1_SHA512WITHRSA,
    ];
    if !allowed.contains(sig_alg) {
        return Err(bad(format!("CSR signature algorithm {sig_alg} is not accepted")));
    }
    // 3. Key type policy (before the signature: P-521 is verified here, not by ring).
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key_type = key_type_of(spki)?;
    // 2. The self-signature proves possession of the key.
    if key_type == KeyType::P521 {
        if *sig_alg != OID_SIG_ECDSA_WITH_SHA512 {
            return Err(bad("a P-521 CSR is signed with ecdsa-with-SHA512"));
        }
        crate::jose::p521::verify_der(&spki.subject_public_key.data, info.raw, &csr.signature_value.data)
            .map_err(|_| bad("CSR signature is invalid"))?;
    } else {
        csr.verify_signature().map_err(|_| bad("CSR signature is invalid"))?;
    }
    // 4. Names and requested extensions.
    let common_name = match info.subject.iter_common_name().next() {
        Some(cn) => Some(cn.as_str().map_err(|_| bad("CSR common name is not a string"))?.to_ascii_lowercase()),
        None => None,
    };
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str().map(str::to_owned).map_err(|_| bad("a CSR subject attribute is not a string"))
    };
    let organizations = info.subject.iter_organization().map(text).collect::<Result<Vec<_>, _>>()?;
    let display_names = info
        .subject
        .iter_attributes()
        .filter(|a| a.attr_type().iter().is_some_and(|arcs| arcs.eq(OID_DISPLAY_NAME.iter().copied())))
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut uris = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => dns_names.push(d.to_ascii_lowercase()),
                        GeneralName::IPAddress(bytes) => ip_addresses.push(ip_from_bytes(bytes)?),
                        GeneralName::URI(u) => uris.push((*u).to_owned()),
                        other => {
                            return Err(bad(format!("CSR asks for an unsupported name {other}")));
                        }
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) if bc.ca => {
                return Err(bad("CSR asks for a CA certificate"));
            }
            ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. } => {}
            _ => {}
        }
    }
    Ok(CsrInfo {
        spki_der: spki.raw.to_vec(),
        key_type,
        common_name,
        dns_names,
        ip_addresses,
        uris,
        organizations,
        display_names,
    })
}

/// The type of a public key, within policy: P-256, P-384, P-521, Ed25519, RSA 2048-4096.
pub fn spki_key_type(spki_der: &[u8]) -> Result<KeyType, CaError> {
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| bad("not a DER public key"))?;
    key_type_of(&spki)
}

fn key_type_of(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyType, CaError> {
    Ok(if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => KeyType::P256,
            Some(c) if c == OID_NIST_EC_P384 => KeyType::P384,
            Some(c) if c == OID_NIST_EC_P521 => KeyType::P521,
            _ => {
                return Err(bad("the key is on an unsupported curve (P-256, P-384 and P-521 accepted)"));
            }
        }
    } else if spki.algorithm.algorithm == OID_SIG_ED25519 {
        KeyType::Ed25519
    } else if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => 0,
        };
        if !(2048..=4096).contains(&bits) {
            return Err(bad(format!("the RSA key has {bits} bits (2048-4096 accepted)")));
        }
        KeyType::Rsa(bits)
    } else {
        return Err(bad("the key type is not accepted (P-256, P-384, P-521, Ed25519, RSA)"));
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr, CaError> {
    match bytes.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(bytes);
            Ok(IpAddr::from(a))
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            Ok(IpAddr::from(a))
        }
        _ => Err(bad("CSR has a malformed IP address")),
    }
}

/// Bits in an RSA modulus, ignoring leading zero bytes.
pub fn modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus.iter().position(|b| *b != 0).unwrap_or(modulus.len());
    let trimmed = modulus.get(start..).unwrap_or_default();
    match trimmed.first() {
        Some(first) => (trimmed.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

    fn csr(params: &CertificateParams, key: &KeyPair) -> Vec<u8> {
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_names_and_key_type() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = CertificateParams::new(vec!["A.example".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "a.example");
        let info = parse_csr(&csr(&p, &key)).unwrap();
        assert_eq!(info.key_type, KeyType::Ed25519);
        assert_eq!(info.dns_names, vec!["a.example"]);
        assert_eq!(info.ip_addresses, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.common_name.as_deref(), Some("a.example"));
    }

    /// A client identity CSR's subject, as Wire's core-crypto writes it: `O` and the LDAP
    /// `displayName` (UTF-8).
    #[test]
    fn reads_the_organization_and_display_name() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::OrganizationName, "wire.test");
        let oid = rcgen::DnType::CustomDnType(OID_DISPLAY_NAME.to_vec());
        p.distinguished_name.push(oid, rcgen::DnValue::Utf8String("Zoë Smith".into()));
        let info = parse_csr(&csr(&p, &key)).unwrap();
        assert_eq!((info.organizations, info.display_names), (vec!["wire.test".into()], vec!["Zoë Smith".into()]));
        assert_eq!(info.common_name, None);
    }

    #[test]
    fn rejects_ca_request() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        assert!(matches!(parse_csr(&csr(&p, &key)), Err(CaError::BadCsr(m)) if m.contains("CA")));
    }

    #[test]
    fn rejects_tampered_signature() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        let mut der = csr(&p, &key);
        let pos = der.windows(9).position(|w| w == b"a.example").unwrap();
        der[pos] = b'b';
        assert!(matches!(parse_csr(&der), Err(CaError::BadCsr(m)) if m.contains("signature")));
    }

    #[test]
    fn rejects_email_san() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        p.subject_alt_names.push(SanType::Rfc822Name("x@a.example".try_into().unwrap()));
        assert!(matches!(parse_csr(&csr(&p, &key)), Err(CaError::BadCsr(_))));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_csr(b"\x30\x03abc"), Err(CaError::BadCsr(_))));
    }
}
