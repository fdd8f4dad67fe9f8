//! TLS to PostgreSQL on idca's rustls and ring (no OpenSSL), with libpq's `sslmode`
//! meanings (libpq §34.19): `disable`; `prefer` (the default) and `require` encrypt and,
//! given a root (`sslrootcert`, PGSSLROOTCERT), verify the chain as `verify-ca` does;
//! `verify-ca` verifies the chain to the root; `verify-full` the chain and the host name.
//! tokio-postgres knows only disable/prefer/require, so the verifying modes and
//! `sslrootcert` are read here and taken out of the string it parses.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::StoreError;
use crate::tls_verify::AnyCertificate;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    /// Encrypted, the certificate not checked (libpq `prefer`/`require` without a root).
    Nothing,
    /// The chain to the root (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// The TLS options of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsOptions {
    pub mode: SslMode,
    pub verify: Verify,
    pub root: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of `url` (libpq words or a URL's query); the
/// rest is what tokio-postgres parses.
pub(super) fn split_options(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, TlsOptions), StoreError> {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            root = Some(value.to_owned());
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| kv.split_once('=').is_none_or(|(k, v)| !take(k, &percent_decode(v))))
                    .collect();
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
            None => url.to_owned(),
        }
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|word| word.split_once('=').is_none_or(|(k, v)| !take(k.trim(), v.trim())))
            .collect();
        kept.join(" ")
    };
    let mode = mode.or_else(|| env("PGSSLMODE")).unwrap_or_else(|| "prefer".into());
    let root = root.or_else(|| env("PGSSLROOTCERT")).filter(|r| !r.is_empty()).map(PathBuf::from);
    let bad = |m: String| StoreError::Backend(format!("storage.url: {m}"));
    let (mode, verify) = match (mode.as_str(), &root) {
        ("disable", _) => (SslMode::Disable, Verify::Nothing),
        ("allow" | "prefer", None) => (SslMode::Prefer, Verify::Nothing),
        ("allow" | "prefer", Some(_)) => (SslMode::Prefer, Verify::Chain),
        ("require", None) => (SslMode::Require, Verify::Nothing),
        ("require" | "verify-ca", Some(_)) => (SslMode::Require, Verify::Chain),
        ("verify-full", Some(_)) => (SslMode::Require, Verify::ChainAndName),
        ("verify-ca" | "verify-full", None) => {
            return Err(bad(format!("sslmode={mode} needs sslrootcert (or PGSSLROOTCERT): the root to verify with")));
        }
        (other, _) => return Err(bad(format!("unknown sslmode `{other}`"))),
    };
    Ok((rest, TlsOptions { mode, verify, root }))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match (b, s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The chain to the root, whatever name the certificate carries (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls client configuration for `options`.
pub(super) fn client_config(options: &TlsOptions) -> Result<ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bad = |m: String| StoreError::Backend(format!("database TLS: {m}"));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let Some(root) = options.root.as_ref().filter(|_| options.verify != Verify::Nothing) else {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
            .with_no_client_auth());
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).map_err(|e| bad(format!("{}: {e}", root.display())))? {
        roots.add(cert.map_err(|e| bad(format!("{}: {e}", root.display())))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{} holds no certificate", root.display())));
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(match options.verify {
        Verify::ChainAndName => builder.dangerous().with_custom_certificate_verifier(webpki).with_no_client_auth(),
        Verify::Chain | Verify::Nothing => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(webpki))).with_no_client_auth()
        }
    })
}

/// tokio-postgres's TLS hook over tokio-rustls.
#[derive(Clone)]
pub(super) struct RustlsConnect(pub Arc<ClientConfig>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for RustlsConnect {
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsTlsConnect;
    type Error = io::Error;

    /// Called for every connection, Unix sockets too (with no name): those never get as
    /// far as a handshake (the server declines TLS on them).
    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(RustlsTlsConnect { config: self.0.clone(), name: ServerName::try_from(domain.to_owned()).ok() })
    }
}

pub(super) struct RustlsTlsConnect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for RustlsTlsConnect {
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host name for TLS"))?;
            let tls = tokio_rustls::TlsConnector::from(self.config).connect(name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS connection to the database.
pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// No `tls-server-end-point` binding: SCRAM runs without the `-PLUS` variant.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_forms() {
        let (rest, o) = split_options("host=db.test sslmode=verify-full sslrootcert=/r.pem dbname=ca", &none).unwrap();
        assert_eq!(rest, "host=db.test dbname=ca");
        assert_eq!(
            (o.mode, o.verify, o.root.as_deref()),
            (SslMode::Require, Verify::ChainAndName, Some("/r.pem".as_ref()))
        );
        let (rest, o) =
            split_options("postgres://u@db.test/ca?sslmode=verify-ca&sslrootcert=%2Fr.pem&application_name=x", &none)
                .unwrap();
        assert_eq!(rest, "postgres://u@db.test/ca?application_name=x");
        assert_eq!((o.verify, o.root.as_deref()), (Verify::Chain, Some("/r.pem".as_ref())));
        let (rest, o) = split_options("postgres://u@db.test/ca", &none).unwrap();
        assert_eq!((rest.as_str(), o.mode, o.verify), ("postgres://u@db.test/ca", SslMode::Prefer, Verify::Nothing));
        let (_, o) = split_options("host=x sslmode=require", &none).unwrap();
        assert_eq!((o.mode, o.verify), (SslMode::Require, Verify::Nothing));
        let (_, o) = split_options("host=x", &|k| (k == "PGSSLMODE").then(|| "disable".to_owned())).unwrap();
        assert_eq!(o.mode, SslMode::Disable);
        assert!(split_options("host=x sslmode=verify-full", &none).is_err(), "a verifying mode needs a root");
        assert!(split_options("host=x sslmode=sometimes", &none).is_err());
    }
}
