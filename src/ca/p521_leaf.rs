//! Leaf certificates for P-521 keys (Wire's cipher suite 5), which rcgen on ring cannot
//! write: see [`RawSpki`].

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};

use super::{CaError, der};

/// A P-521 subject public key, which rcgen on ring has no algorithm for: rcgen writes
/// the certificate with P-384's curve OID (the same length) beside the P-521 point, then
/// [`RawSpki::set_right`] puts the P-521 OID back and signs the TBS again with the
/// issuer's key. The subject key identifier is already the true SPKI's.
pub(super) struct RawSpki {
    spki: Vec<u8>,
    key: Vec<u8>,
}

/// The curve OIDs (DER, with tag and length): secp384r1 and secp521r1.
const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

impl RawSpki {
    pub(super) fn from_der(der: &[u8]) -> Result<Self, CaError> {
        use x509_parser::prelude::FromDer;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|_| CaError::BadCsr("not a DER public key".into()))?;
        if !der.windows(P521_OID.len()).any(|w| w == P521_OID) {
            return Err(CaError::BadCsr("not a P-521 public key".into()));
        }
        Ok(Self { spki: der.to_vec(), key: spki.subject_public_key.data.to_vec() })
    }

    /// The SPKI as rcgen writes it from [`PublicKeyData::algorithm`].
    fn as_written(&self) -> Vec<u8> {
        let mut written = self.spki.clone();
        if let Some(at) = written.windows(P521_OID.len()).position(|w| w == P521_OID) {
            written[at..at + P384_OID.len()].copy_from_slice(&P384_OID);
        }
        written
    }

    /// `draft` (rcgen's certificate) with the true SPKI, signed again by `issuer`.
    pub(super) fn set_right(&self, draft: &[u8], issuer: &KeyPair) -> Result<Vec<u8>, CaError> {
        let malformed = || CaError::Material("malformed DER in a certificate being written".into());
        let (_, content) = der::read_tlv(draft).ok_or_else(malformed)?;
        let (tbs, _) = der::read_tlv(content).ok_or_else(malformed)?;
        let (signature_algorithm, _) =
            der::read_tlv(content.get(tbs.len()..).unwrap_or_default()).ok_or_else(malformed)?;
        let written = self.as_written();
        let at = tbs
            .windows(written.len())
            .position(|w| w == written.as_slice())
            .ok_or_else(|| CaError::Material("the P-521 key is not where rcgen wrote it".into()))?;
        let mut tbs = tbs.to_vec();
        tbs[at..at + written.len()].copy_from_slice(&self.spki);
        let signature = rcgen::SigningKey::sign(issuer, &tbs)?;
        let mut bits = vec![0u8];
        bits.extend(signature);
        Ok(der::tlv(0x30, &[tbs.as_slice(), signature_algorithm, &der::tlv(0x03, &bits)].concat()))
    }
}

impl PublicKeyData for RawSpki {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki.clone()
    }

    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    /// What rcgen writes the SPKI's algorithm with: P-384's, set right afterwards.
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}
