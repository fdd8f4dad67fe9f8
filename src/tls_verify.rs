//! A rustls certificate verifier shared by the cores that need one without a chain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::*;

/// Accepts any certificate but still checks the handshake signature against the
/// certificate's key: encryption without authentication, where the peer is checked
/// otherwise (a tls-alpn-01 challenge certificate is self-signed by design, RFC 8737 §3)
/// or not at all (libpq's `sslmode=require`). The key is read with x509-parser, not
/// webpki, because webpki refuses the critical acmeIdentifier extension a challenge
/// certificate must carry.
#[derive(Debug)]
pub(crate) struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl AnyCertificate {
    pub(crate) fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        Self(provider)
    }

    fn verify(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
        let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
        let key = parsed.public_key().subject_public_key.data.as_ref();
        let algs = self
            .0
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or_else(bad)?;
        if algs.iter().any(|alg| alg.verify_signature(key, message, dss.signature()).is_ok()) {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(bad())
        }
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
