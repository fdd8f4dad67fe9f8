//! ECDSA P-521 with SHA-512 (ES512, RFC 7518 §3.4), on RustCrypto's `p521`: ring has no
//! P-521. Verification only, of JWS signatures (the fixed 132-byte `r || s`) and of DER
//! signatures (CSRs); and the on-curve check of a public point.

use p521::ecdsa::signature::Verifier;
use p521::ecdsa::{DerSignature, Signature, VerifyingKey};

use super::JoseError;

/// The bytes of one coordinate.
pub(crate) const COORDINATE_LEN: usize = 66;

/// Parses an uncompressed SEC1 point (`04 || x || y`), refusing one not on the curve.
fn key(point: &[u8]) -> Result<VerifyingKey, JoseError> {
    VerifyingKey::from_sec1_bytes(point).map_err(|_| JoseError::BadKey("EC point is not on the curve".into()))
}

/// Whether `point` is on P-521.
pub(crate) fn check_point(point: &[u8]) -> Result<(), JoseError> {
    key(point).map(drop)
}

/// Verifies a JWS ES512 signature (`r || s`, 66 bytes each) over `message`.
pub(crate) fn verify_fixed(point: &[u8], message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
    let signature = Signature::from_slice(signature).map_err(|_| JoseError::BadSignature)?;
    key(point)?.verify(message, &signature).map_err(|_| JoseError::BadSignature)
}

/// Verifies a DER ECDSA signature with SHA-512 (a CSR's `ecdsa-with-SHA512`).
pub(crate) fn verify_der(point: &[u8], message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
    let signature = DerSignature::try_from(signature).map_err(|_| JoseError::BadSignature)?;
    key(point)?.verify(message, &signature).map_err(|_| JoseError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Jwk, b64_decode};

    /// RFC 7515 Appendix A.4: the ES512 example verifies, and a changed byte does not.
    #[test]
    fn rfc7515_es512_example_verifies() {
        let jwk = Jwk::from_value(&serde_json::json!({"kty": "EC", "crv": "P-521",
            "x": "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk",
            "y": "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}))
        .unwrap();
        let input = b"eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA";
        let sig = b64_decode(
            "AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn",
        )
        .unwrap();
        jwk.verify(crate::jose::Algorithm::ES512, input, &sig).unwrap();
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(jwk.verify(crate::jose::Algorithm::ES512, input, &bad).is_err());
        assert!(jwk.verify(crate::jose::Algorithm::ES512, b"eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZB", &sig).is_err());
        assert!(jwk.verify(crate::jose::Algorithm::ES256, input, &sig).is_err(), "the key is for ES512 only");
    }

    #[test]
    fn refuses_points_off_the_curve() {
        let mut point = vec![4u8];
        point.extend([1u8; 2 * COORDINATE_LEN]);
        assert!(check_point(&point).is_err());
    }
}
