//! tls-alpn-01 (RFC 8737): a TLS handshake offering only ALPN `acme-tls/1`, with SNI set
//! to the name (or, for an IP, its reverse-DNS name, RFC 8738 §6); the certificate must
//! carry exactly one SAN, equal to the identifier, and a critical `id-pe-acmeIdentifier`
//! extension holding SHA-256 of the key authorization.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_parser::prelude::*;

use super::{KeyAuthorization, ValidationError};
use crate::model::{Identifier, IdentifierKind};
use crate::tls_verify::AnyCertificate;

/// `acme-tls/1` (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// `id-pe-acmeIdentifier` (RFC 8737 §6.1): 1.3.6.1.5.5.7.1.31.
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// The tls-alpn-01 checker.
#[derive(Clone)]
pub struct TlsAlpn01Checker {
    connector: TlsConnector,
    port: u16,
    timeout: Duration,
}

impl std::fmt::Debug for TlsAlpn01Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpn01Checker").field("port", &self.port).finish()
    }
}

/// The SNI for an identifier: the name, or the reverse-DNS name of an IP (RFC 8738 §6).
pub fn sni_for(identifier: &Identifier) -> Result<String, ValidationError> {
    match identifier.kind {
        IdentifierKind::WireappDevice | IdentifierKind::WireappUser => {
            Err(ValidationError::Unsupported("tls-alpn-01 validates names and addresses only".into()))
        }
        IdentifierKind::Dns => Ok(identifier.value.clone()),
        IdentifierKind::Ip => match identifier.value.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => {
                let o = v4.octets();
                Ok(format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]))
            }
            Ok(IpAddr::V6(v6)) => {
                let nibbles: Vec<String> = v6
                    .octets()
                    .iter()
                    .rev()
                    .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
                    .collect();
                Ok(format!("{}.ip6.arpa", nibbles.join(".")))
            }
            Err(_) => Err(ValidationError::Unsupported("bad IP identifier".into())),
        },
    }
}

impl TlsAlpn01Checker {
    pub fn new(port: u16, timeout: Duration) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Ok(Self { connector: TlsConnector::from(Arc::new(config)), port, timeout })
    }

    /// Performs the check against `ip` (the resolved address of the identifier).
    pub async fn check(
        &self,
        ip: IpAddr,
        identifier: &Identifier,
        key_authorization: &KeyAuthorization,
    ) -> Result<(), ValidationError> {
        let sni = sni_for(identifier)?;
        let addr = SocketAddr::new(ip, self.port);
        let server_name = ServerName::try_from(sni.clone())
            .map_err(|_| ValidationError::Unsupported(format!("`{sni}` is not a valid SNI name")))?;
        let handshake = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| ValidationError::Connection(format!("{addr}: cannot connect: {e}")))?;
            self.connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| ValidationError::Tls(format!("{addr}: TLS handshake failed: {e}")))
        };
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .map_err(|_| ValidationError::Connection(format!("{addr}: timed out")))??;
        let (_, conn) = tls.get_ref();
        if conn.alpn_protocol() != Some(ACME_TLS_ALPN) {
            return Err(ValidationError::Tls(format!("{addr} did not negotiate acme-tls/1")));
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| ValidationError::Tls(format!("{addr} sent no certificate")))?;
        check_certificate(leaf.as_ref(), identifier, key_authorization)
    }
}

/// The certificate rules of RFC 8737 §3 and RFC 8738 §6.
pub(super) fn check_certificate(
    der: &[u8],
    identifier: &Identifier,
    key_authorization: &KeyAuthorization,
) -> Result<(), ValidationError> {
    let bad = |m: String| ValidationError::Unauthorized(m);
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| bad("the challenge certificate does not parse".into()))?;
    // Exactly one SAN, equal to the identifier.
    let san = cert
        .subject_alternative_name()
        .map_err(|_| bad("duplicate subjectAltName extensions".into()))?
        .ok_or_else(|| bad("the challenge certificate has no subjectAltName".into()))?;
    let names = &san.value.general_names;
    let matches = match (names.as_slice(), identifier.kind) {
        ([GeneralName::DNSName(d)], IdentifierKind::Dns) => d.eq_ignore_ascii_case(&identifier.value),
        ([GeneralName::IPAddress(b)], IdentifierKind::Ip) => {
            let ip = match b.len() {
                4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                _ => None,
            };
            ip.is_some_and(|ip| Some(ip) == identifier.value.parse().ok())
        }
        _ => false,
    };
    if !matches {
        return Err(bad(format!(
            "the challenge certificate must name exactly {} in its subjectAltName",
            identifier.value
        )));
    }
    // The critical acmeIdentifier extension with SHA-256(key authorization).
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == ACME_IDENTIFIER_OID)
        .ok_or_else(|| bad("the challenge certificate lacks the acmeIdentifier extension".into()))?;
    if !ext.critical {
        return Err(bad("the acmeIdentifier extension must be critical".into()));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_str().as_bytes());
    let mut want = vec![0x04, 0x20];
    want.extend_from_slice(digest.as_ref());
    if !crate::jose::ct_eq(ext.value, &want) {
        return Err(bad("the acmeIdentifier extension does not match this challenge".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::Jkt;

    fn challenge_cert(names: Vec<String>, ka: &KeyAuthorization, critical: bool) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, ka.as_str().as_bytes());
        let mut ext = rcgen::CustomExtension::new_acme_identifier(digest.as_ref());
        ext.set_criticality(critical);
        p.custom_extensions = vec![ext];
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn dns(v: &str) -> Identifier {
        Identifier { kind: IdentifierKind::Dns, value: v.into() }
    }

    #[test]
    fn accepts_the_rfc8737_certificate() {
        let ka = KeyAuthorization::new("tok", &Jkt("jkt".into()));
        check_certificate(&challenge_cert(vec!["a.example".into()], &ka, true), &dns("a.example"), &ka).unwrap();
        let ip = Identifier { kind: IdentifierKind::Ip, value: "127.0.0.1".into() };
        check_certificate(&challenge_cert(vec!["127.0.0.1".into()], &ka, true), &ip, &ka).unwrap();
    }

    #[test]
    fn rejects_wrong_digest_extra_names_and_non_critical() {
        let ka = KeyAuthorization::new("tok", &Jkt("jkt".into()));
        let other = KeyAuthorization::new("tok2", &Jkt("jkt".into()));
        let id = dns("a.example");
        assert!(check_certificate(&challenge_cert(vec!["a.example".into()], &other, true), &id, &ka).is_err());
        assert!(
            check_certificate(&challenge_cert(vec!["a.example".into(), "b.example".into()], &ka, true), &id, &ka)
                .is_err()
        );
        assert!(check_certificate(&challenge_cert(vec!["b.example".into()], &ka, true), &id, &ka).is_err());
        assert!(check_certificate(&challenge_cert(vec!["a.example".into()], &ka, false), &id, &ka).is_err());
    }

    #[test]
    fn reverse_dns_sni_for_ips() {
        let v4 = Identifier { kind: IdentifierKind::Ip, value: "192.0.2.1".into() };
        assert_eq!(sni_for(&v4).unwrap(), "1.2.0.192.in-addr.arpa");
        let v6 = Identifier { kind: IdentifierKind::Ip, value: "2001:db8::1".into() };
        assert!(sni_for(&v6).unwrap().starts_with("1.0.0.0.0.0.0.0"));
        assert!(sni_for(&v6).unwrap().ends_with("8.b.d.0.1.0.0.2.ip6.arpa"));
    }
}
