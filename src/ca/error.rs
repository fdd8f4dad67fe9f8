/// Why the CA refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CSR is unacceptable (RFC 8555 §7.4 `badCSR`); the message is for the client.
    #[error("{0}")]
    BadCsr(String),
    /// A name the CA's name constraints do not permit (RFC 5280 §4.2.1.10).
    #[error("{0}")]
    NotPermitted(String),
    /// Configured or stored CA material cannot be used; the message names the problem.
    #[error("CA material: {0}")]
    Material(String),
    /// Building or signing a certificate failed (our fault, not the client's).
    #[error("certificate generation failed: {0}")]
    Signing(#[from] rcgen::Error),
}
