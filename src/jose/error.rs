/// Why a JWS or JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The body is not a flattened JSON JWS (RFC 7515 §7.2.2).
    #[error("request body is not a flattened JWS: {0}")]
    Malformed(String),
    /// A field is not valid unpadded base64url (RFC 7515 §2).
    #[error("invalid base64url")]
    Base64,
    /// The protected header is not valid JSON of the expected shape.
    #[error("invalid protected header: {0}")]
    Header(String),
    /// `alg` is not one of ES256, ES384, EdDSA, RS256 (RFC 8555 §6.2).
    #[error("unsupported JWS algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// The header lists critical extensions we do not understand (RFC 7515 §4.1.11).
    #[error("unsupported critical header parameters")]
    UnsupportedCrit,
    /// The JWK is not a supported public key (RFC 7517 §4, RFC 7518 §6).
    #[error("invalid JWK: {0}")]
    BadKey(String),
    /// The JWK carries private key members (RFC 7517 §9.2).
    #[error("JWK contains private key material")]
    PrivateKey,
    /// The key's type or curve does not match `alg` (RFC 7518 §3.1).
    #[error("JWK type does not match algorithm {0:?}")]
    KeyAlgorithmMismatch(super::Algorithm),
    /// The signature does not verify.
    #[error("JWS signature is invalid")]
    BadSignature,
}
