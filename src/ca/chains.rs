//! Alternate issuance chains (Pebble's `PEBBLE_CHAIN_LENGTH` and `PEBBLE_ALTERNATE_ROOTS`).
//!
//! Every chain certifies the same thing: the issuing intermediate's name and key. Chain
//! 0 ends at idca's root; each further chain at a root of its own, which cross-signs the
//! intermediate (directly, or through extra intermediates when `chain_length` > 1). A
//! leaf signed by the intermediate therefore verifies under every chain, and a client
//! picks one (RFC 8555 §7.4.2 `Link: rel="alternate"`; certbot's and lego's
//! `--preferred-chain`). Only certificates are kept: the keys of extra intermediates
//! and alternate roots are dropped once they have signed, so nothing new can be issued
//! under them.

use rcgen::string::{BmpString, UniversalString};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::*;

use super::{CaError, ca_params, random_serial, short_id};
use crate::clock::UnixTime;
use crate::model::{CaChains, CaMaterial, Der, IssuerChain};

const AUTHORITY_KEY_IDENTIFIER: &str = "2.5.29.35";
const NAME_CONSTRAINTS: &str = "2.5.29.30";

/// Whether `stored` was built for `m`'s intermediate with `chain_length`, and has at
/// least `1 + alternate_roots` chains.
pub fn chains_fit(stored: &CaChains, m: &CaMaterial, chain_length: u32, alternate_roots: u32) -> bool {
    stored.intermediate_cert == m.intermediate_cert
        && stored.chain_length == chain_length
        && stored.chains.len() > alternate_roots as usize
}

/// The chains for `m`'s intermediate: chains in `keep` built for the same intermediate
/// and length are kept (a root once handed out stays), the missing ones are built.
/// `chain_length` > 1 needs the root key, to sign the extra intermediates of chain 0.
pub fn build_chains(
    m: &CaMaterial,
    organization: &str,
    (chain_length, alternate_roots): (u32, u32),
    keep: Option<&CaChains>,
    now: UnixTime,
) -> Result<CaChains, CaError> {
    let mut chains: Vec<IssuerChain> = keep
        .filter(|k| k.intermediate_cert == m.intermediate_cert && k.chain_length == chain_length)
        .map(|k| k.chains.clone())
        .unwrap_or_default();
    chains.truncate(1 + alternate_roots as usize);
    let int = Parsed::new(&m.intermediate_cert)?;
    let (_, root) = X509Certificate::from_der(&m.root_cert).map_err(|e| CaError::Material(e.to_string()))?;
    let root_constraints = raw_extension(&root, NAME_CONSTRAINTS);
    let id = short_id();
    for n in chains.len()..=alternate_roots as usize {
        let (root_der, root_issuer) = if n == 0 {
            if chain_length == 1 {
                chains.push(IssuerChain {
                    intermediates: vec![Der(m.intermediate_cert.clone())],
                    root: Der(m.root_cert.clone()),
                });
                continue;
            }
            if m.root_key.is_empty() {
                return Err(CaError::Material(
                    "ca.chain_length above 1 needs the root key, which is kept offline".into(),
                ));
            }
            let key =
                KeyPair::try_from(m.root_key.as_slice()).map_err(|e| CaError::Material(format!("root key: {e}")))?;
            (m.root_cert.clone(), Issuer::from_ca_cert_der(&CertificateDer::from(m.root_cert.as_slice()), key)?)
        } else {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut p = ca_params(
                format!("{organization} Alternate Root CA {n} {id}"),
                organization,
                now - 3600,
                int.not_after.max(now + 3600),
                IsCa::Ca(BasicConstraints::Unconstrained),
            )?;
            p.custom_extensions.extend(root_constraints.clone());
            let cert = p.self_signed(&key)?;
            (cert.der().to_vec(), Issuer::new(p, key))
        };
        let mut issuer = root_issuer;
        // From the root down: extra intermediates, each allowing the CAs below it.
        let mut above = Vec::new();
        for depth in (1..chain_length).rev() {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let suffix = if n == 0 { String::new() } else { format!(" (root {n})") };
            let mut p = ca_params(
                format!("{organization} Intermediate CA {id} #{depth}{suffix}"),
                organization,
                now - 3600,
                int.not_after.max(now + 3600),
                IsCa::Ca(BasicConstraints::Constrained(depth.min(255) as u8)),
            )?;
            p.use_authority_key_identifier_extension = true;
            p.custom_extensions.extend(int.constraints.clone());
            above.push(Der(p.signed_by(&key, &issuer)?.der().to_vec()));
            issuer = Issuer::new(p, key);
        }
        let mut intermediates = vec![Der(int.cross_signed(&issuer)?)];
        intermediates.extend(above.into_iter().rev());
        chains.push(IssuerChain { intermediates, root: Der(root_der) });
    }
    Ok(CaChains { intermediate_cert: m.intermediate_cert.clone(), chain_length, chains })
}

/// What a cross-certificate copies from the issuing intermediate.
struct Parsed {
    params: CertificateParams,
    spki: Vec<u8>,
    not_after: UnixTime,
    /// Its name constraints, raw, for the extra intermediates above it.
    constraints: Option<CustomExtension>,
}

impl Parsed {
    fn new(der: &[u8]) -> Result<Self, CaError> {
        let (_, x) = X509Certificate::from_der(der).map_err(|e| CaError::Material(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(x.subject())?;
        params.not_before = x.validity().not_before.to_datetime();
        params.not_after = x.validity().not_after.to_datetime();
        // Every extension as it is (its subjectKeyIdentifier, basicConstraints, key
        // usage, name constraints...), but the authority key identifier, which names
        // the new signer. `NoCa` keeps rcgen from adding its own.
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
        for ext in x.extensions() {
            if ext.oid.to_id_string() != AUTHORITY_KEY_IDENTIFIER {
                params.custom_extensions.push(copy(ext)?);
            }
        }
        Ok(Self {
            params,
            spki: x.public_key().raw.to_vec(),
            not_after: x.validity().not_after.timestamp(),
            constraints: raw_extension(&x, NAME_CONSTRAINTS),
        })
    }

    /// The intermediate's name, key and extensions, certified by `signer`.
    fn cross_signed(&self, signer: &Issuer<'_, KeyPair>) -> Result<Vec<u8>, CaError> {
        let mut p = self.params.clone();
        p.serial_number = Some(random_serial().1);
        let spki = rcgen::SubjectPublicKeyInfo::from_der(&self.spki)
            .map_err(|e| CaError::Material(format!("intermediate key: {e}")))?;
        Ok(p.signed_by(&spki, signer)?.der().to_vec())
    }
}

fn copy(ext: &X509Extension<'_>) -> Result<CustomExtension, CaError> {
    let oid: Vec<u64> = ext
        .oid
        .iter()
        .ok_or_else(|| CaError::Material(format!("extension {} has an oversized OID arc", ext.oid)))?
        .collect();
    let mut c = CustomExtension::from_oid_content(&oid, ext.value.to_vec());
    c.set_criticality(ext.critical);
    Ok(c)
}

fn raw_extension(x: &X509Certificate<'_>, oid: &str) -> Option<CustomExtension> {
    x.extensions().iter().find(|e| e.oid.to_id_string() == oid).and_then(|e| copy(e).ok())
}

/// `name` as rcgen re-encodes it when it signs under that name (string types kept), so
/// a cross-certificate's subject is byte for byte the issuer name of the leaves.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, CaError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let bad = || CaError::Material("the intermediate's subject cannot be re-encoded".into());
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(bad());
        };
        let oid: Vec<u64> = attr.attr_type().iter().ok_or_else(bad)?.collect();
        let data = attr.attr_value().data;
        let text = || std::str::from_utf8(data).map_err(|_| bad());
        let value = match attr.attr_value().header.tag() {
            Tag::BmpString => DnValue::BmpString(BmpString::from_utf16be(data.to_vec())?),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into()?),
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into()?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into()?),
            Tag::UniversalString => DnValue::UniversalString(UniversalString::from_utf32be(data.to_vec())?),
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            _ => return Err(bad()),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}
