//! The PKI around rcgen: a root, a pathlen-0 intermediate, and the certificates they sign.
//!
//! Policy lives here, not in rcgen: every leaf is built from fresh parameters chosen by
//! idca (names, validity, EKU, AKI/SKI, a random 128-bit serial); the only thing taken
//! from a request is its public key. This module does no I/O besides reading PEM files
//! named in the configuration; key material is passed in and returned.

mod chains;
mod constraints;
mod crl;
mod csr;
mod der;
mod error;
mod p521_leaf;
pub mod pkcs12;

pub use chains::{build_chains, chains_fit};
pub use constraints::{IpRange, LOCAL_DOMAINS, LOCAL_IP_RANGES, NameConstraints};
pub use crl::is_revocation_reason;
pub use csr::{CsrInfo, KeyType, modulus_bits, parse_csr, spki_key_type};
pub use error::CaError;

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

use crate::clock::UnixTime;
use crate::model::{CaChains, CaMaterial, Serial, hex};

/// The loaded CA: certificates, and the intermediate's key ready to sign.
pub struct Ca {
    root_der: Vec<u8>,
    root_pem: String,
    /// The intermediate's name constraints (empty: unconstrained).
    constraints: NameConstraints,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    intermediate_ski: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    crl_url: Option<String>,
    /// Issuance chain 0, the default download.
    default_chain: LoadedChain,
    /// Chains 1.. : each ends at an alternate root.
    alternate_chains: Vec<LoadedChain>,
}

/// One issuance chain, ready to append to a leaf.
struct LoadedChain {
    /// What follows the leaf, DER and PEM.
    intermediates: Vec<Vec<u8>>,
    intermediates_pem: String,
    root_pem: String,
}

impl LoadedChain {
    fn new(intermediates: Vec<Vec<u8>>, root: &[u8]) -> Self {
        let intermediates_pem = intermediates.iter().map(|d| cert_pem(d)).collect();
        Self { intermediates, intermediates_pem, root_pem: cert_pem(root) }
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("keys", &"[elided]").finish()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (serverAuth EKU).
    TlsServer,
    /// Client identity (clientAuth EKU), named by URIs.
    ClientIdentity,
}

/// A leaf to issue: names and validity chosen by the caller, key from the CSR.
#[derive(Debug, Clone)]
pub struct LeafRequest<'a> {
    pub spki_der: &'a [u8],
    pub key_type: KeyType,
    pub dns_names: &'a [String],
    pub ip_addresses: &'a [IpAddr],
    /// URI SANs (client identity).
    pub uris: &'a [String],
    /// Email SANs (client certificates).
    pub emails: &'a [String],
    /// `O` and `CN` of the subject; `None`: CN from the first name.
    pub subject: Option<(&'a str, &'a str)>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub usage: Usage,
}

/// A freshly signed leaf.
#[derive(Debug, Clone)]
pub struct IssuedLeaf {
    pub serial: Serial,
    pub der: Vec<u8>,
    /// Leaf then intermediate, PEM.
    pub chain_pem: String,
}

fn datetime(t: UnixTime) -> Result<time::OffsetDateTime, CaError> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| CaError::Material(format!("bad time {t}: {e}")))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A PEM PRIVATE KEY block for a PKCS#8 key.
pub fn key_pem(pkcs8_der: &[u8]) -> String {
    pem("PRIVATE KEY", pkcs8_der)
}

/// A PEM CERTIFICATE block for `der`.
pub fn cert_pem(der: &[u8]) -> String {
    pem("CERTIFICATE", der)
}

fn random_serial() -> (Serial, SerialNumber) {
    let (serial, bytes) = Serial::random();
    (serial, SerialNumber::from_slice(&bytes))
}

fn short_id() -> String {
    let mut b = [0u8; 3];
    crate::model::fill_random(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The URI hosts a CA certificate's name constraints permit (empty: none).
pub fn permitted_uri_hosts(cert_der: &[u8]) -> Vec<String> {
    NameConstraints::from_cert(cert_der).map(|c| c.uris).unwrap_or_default()
}

fn ca_params(
    cn: String,
    org: &str,
    not_before: UnixTime,
    not_after: UnixTime,
    is_ca: IsCa,
) -> Result<CertificateParams, CaError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = is_ca;
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = datetime(not_before)?;
    p.not_after = datetime(not_after)?;
    p.serial_number = Some(random_serial().1);
    Ok(p)
}

impl Ca {
    /// Creates a new root (10 years) and intermediate (5 years, pathlen 0), P-256.
    /// `constraints`, when not empty, go into the intermediate; DNS and IP constraints
    /// (a local PKI) into the root as well, so that the root itself, once trusted,
    /// vouches only for those names (verifiers that honour a trust anchor's constraints:
    /// OpenSSL, rustls-webpki, Chromium).
    pub fn generate(organization: &str, constraints: &NameConstraints, now: UnixTime) -> Result<CaMaterial, CaError> {
        const YEAR: i64 = 365 * 86_400;
        let id = short_id();
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut root_params = ca_params(
            format!("{organization} Root CA {id}"),
            organization,
            now - 3600,
            now + 10 * YEAR,
            IsCa::Ca(BasicConstraints::Unconstrained),
        )?;
        if constraints.constrains_tls_names() {
            root_params.custom_extensions.push(constraints.extension());
        }
        let root_cert = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, &root_key);

        let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut int_params = ca_params(
            format!("{organization} Intermediate CA {id}"),
            organization,
            now - 3600,
            now + 5 * YEAR,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        )?;
        int_params.use_authority_key_identifier_extension = true;
        if !constraints.is_empty() {
            int_params.custom_extensions.push(constraints.extension());
        }
        let int_cert = int_params.signed_by(&int_key, &root_issuer)?;
        Ok(CaMaterial {
            root_cert: root_cert.der().to_vec(),
            root_key: root_key.serialize_der(),
            intermediate_cert: int_cert.der().to_vec(),
            intermediate_key: int_key.serialize_der(),
        })
    }

    /// Reads a CA from PEM files (certificates; PKCS#8 keys) and checks that each key
    /// belongs to its certificate and that the intermediate is signed by the root.
    pub fn from_pem_files(
        root_cert: &Path,
        root_key: &Path,
        intermediate_cert: &Path,
        intermediate_key: &Path,
    ) -> Result<CaMaterial, CaError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| CaError::Material(format!("cannot read {}: {e}", p.display())))
        };
        let cert_der = |p: &Path| -> Result<Vec<u8>, CaError> {
            let text = read(p)?;
            let block = pem_block(&text, "CERTIFICATE")
                .ok_or_else(|| CaError::Material(format!("{} holds no CERTIFICATE block", p.display())))?;
            Ok(block)
        };
        let key_der = |p: &Path| -> Result<Vec<u8>, CaError> {
            let text = read(p)?;
            let key = KeyPair::from_pem(&text).map_err(|e| {
                CaError::Material(format!("{}: not a PKCS#8 P-256/P-384/Ed25519 key ({e})", p.display()))
            })?;
            Ok(key.serialize_der())
        };
        let material = CaMaterial {
            root_cert: cert_der(root_cert)?,
            root_key: key_der(root_key)?,
            intermediate_cert: cert_der(intermediate_cert)?,
            intermediate_key: key_der(intermediate_key)?,
        };
        Self::check_material(&material)?;
        Ok(material)
    }

    /// Checks that stored or configured material is coherent.
    pub fn check_material(m: &CaMaterial) -> Result<(), CaError> {
        use x509_parser::prelude::*;
        let parse = |der: &[u8], what: &str| -> Result<(), CaError> {
            X509Certificate::from_der(der)
                .map(|_| ())
                .map_err(|e| CaError::Material(format!("{what} certificate: {e}")))
        };
        parse(&m.root_cert, "root")?;
        parse(&m.intermediate_cert, "intermediate")?;
        let (_, root) = X509Certificate::from_der(&m.root_cert).map_err(|e| CaError::Material(e.to_string()))?;
        let (_, int) = X509Certificate::from_der(&m.intermediate_cert).map_err(|e| CaError::Material(e.to_string()))?;
        int.verify_signature(Some(root.public_key()))
            .map_err(|_| CaError::Material("the intermediate is not signed by the root".into()))?;
        let check_key = |key: &[u8], cert: &X509Certificate<'_>, what: &str| -> Result<(), CaError> {
            let kp = KeyPair::try_from(key).map_err(|e| CaError::Material(format!("{what} key: {e}")))?;
            if kp.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
                return Err(CaError::Material(format!("the {what} key does not match the {what} certificate")));
            }
            Ok(())
        };
        if !m.root_key.is_empty() {
            check_key(&m.root_key, &root, "root")?;
        }
        check_key(&m.intermediate_key, &int, "intermediate")?;
        Ok(())
    }

    /// URI hosts the intermediate's name constraints permit (empty: unconstrained).
    pub fn permitted_uri_hosts(&self) -> &[String] {
        &self.constraints.uris
    }

    /// The intermediate's name constraints (empty: unconstrained).
    pub fn constraints(&self) -> &NameConstraints {
        &self.constraints
    }

    /// Loads material for signing. Leaves name `{crl_base}/{id}` as their CRL
    /// distribution point, where `id` ([`Ca::crl_id`]) names this intermediate, so that
    /// each CA's leaves keep a CRL signed by their own issuer after a root rotation.
    pub fn load(m: &CaMaterial, crl_base: Option<String>) -> Result<Self, CaError> {
        Self::check_material(m)?;
        let intermediate_ski = {
            use x509_parser::prelude::*;
            let (_, int) =
                X509Certificate::from_der(&m.intermediate_cert).map_err(|e| CaError::Material(e.to_string()))?;
            int.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                    _ => None,
                })
                .ok_or_else(|| CaError::Material("the intermediate has no subjectKeyIdentifier".into()))?
        };
        let key = KeyPair::try_from(m.intermediate_key.as_slice())
            .map_err(|e| CaError::Material(format!("intermediate key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(m.intermediate_cert.as_slice()), key)?;
        let crl_url = crl_base.map(|base| format!("{base}/{}", hex(&intermediate_ski)));
        Ok(Self {
            default_chain: LoadedChain::new(vec![m.intermediate_cert.clone()], &m.root_cert),
            alternate_chains: Vec::new(),
            root_pem: cert_pem(&m.root_cert),
            constraints: NameConstraints::from_cert(&m.intermediate_cert)?,
            intermediate_pem: cert_pem(&m.intermediate_cert),
            root_der: m.root_cert.clone(),
            intermediate_der: m.intermediate_cert.clone(),
            intermediate_ski,
            issuer,
            crl_url,
        })
    }

    /// Serves `chains` (built by [`build_chains`] for this intermediate) instead of the
    /// direct one, after checking each path: the first certificate carries the
    /// intermediate's key, each is signed by the next, the last by a self-signed root.
    pub fn with_chains(mut self, chains: &CaChains) -> Result<Self, CaError> {
        use x509_parser::prelude::*;
        if chains.intermediate_cert != self.intermediate_der || chains.chains.is_empty() {
            return Err(CaError::Material("the stored chains were built for another intermediate".into()));
        }
        let parse = |der: &[u8]| -> Result<(Vec<u8>, Vec<u8>), CaError> {
            // (subject public key info, the whole certificate) of one link.
            let (_, c) = X509Certificate::from_der(der).map_err(|e| CaError::Material(format!("chain: {e}")))?;
            Ok((c.public_key().raw.to_vec(), der.to_vec()))
        };
        let (int_spki, _) = parse(&self.intermediate_der)?;
        let mut loaded = Vec::new();
        for (n, chain) in chains.chains.iter().enumerate() {
            let bad = |why: &str| CaError::Material(format!("stored chain {n}: {why}"));
            let first = chain.intermediates.first().ok_or_else(|| bad("empty"))?;
            if parse(&first.0)?.0 != int_spki {
                return Err(bad("does not certify the intermediate's key"));
            }
            let links: Vec<&[u8]> =
                chain.intermediates.iter().map(|d| d.0.as_slice()).chain([chain.root.0.as_slice()]).collect();
            for pair in links.windows(2) {
                let (_, child) = X509Certificate::from_der(pair[0]).map_err(|e| bad(&e.to_string()))?;
                let (_, parent) = X509Certificate::from_der(pair[1]).map_err(|e| bad(&e.to_string()))?;
                child
                    .verify_signature(Some(parent.public_key()))
                    .map_err(|_| bad("a link is not signed by the next"))?;
            }
            let (_, root) = X509Certificate::from_der(&chain.root.0).map_err(|e| bad(&e.to_string()))?;
            root.verify_signature(None).map_err(|_| bad("the root is not self-signed"))?;
            loaded.push(LoadedChain::new(chain.intermediates.iter().map(|d| d.0.clone()).collect(), &chain.root.0));
        }
        let mut loaded = loaded.into_iter();
        if let Some(default) = loaded.next() {
            self.default_chain = default;
        }
        self.alternate_chains = loaded.collect();
        Ok(self)
    }

    /// How many chains a leaf of this CA can be downloaded with (1 + alternate roots).
    pub fn chain_count(&self) -> usize {
        1 + self.alternate_chains.len()
    }

    fn chain(&self, n: usize) -> Option<&LoadedChain> {
        match n {
            0 => Some(&self.default_chain),
            n => self.alternate_chains.get(n - 1),
        }
    }

    /// The root chain `n` ends at, PEM (management `/roots/{n}`).
    pub fn chain_root_pem(&self, n: usize) -> Option<&str> {
        self.chain(n).map(|c| c.root_pem.as_str())
    }

    /// The certificate of the issuing intermediate in chain `n`, PEM (management
    /// `/intermediates/{n}`).
    pub fn chain_intermediate_pem(&self, n: usize) -> Option<String> {
        self.chain(n).and_then(|c| c.intermediates.first()).map(|d| cert_pem(d))
    }

    /// The chains `leaf` can be downloaded with: all of them when this CA's intermediate
    /// signed it, only the one stored with it (chain 0) for a rotated-out CA's leaf.
    pub fn chains_for(&self, leaf: &[u8]) -> usize {
        let ours = authority_key_id(leaf).is_some_and(|aki| aki == self.intermediate_ski);
        if ours { self.chain_count() } else { 1 }
    }

    /// `leaf` followed by chain `n`, PEM, if chain `n` exists; for leaves this CA signed
    /// (see [`Ca::chains_for`]).
    pub fn chain_pem(&self, leaf: &[u8], n: usize) -> Option<String> {
        let chain = self.chain(n)?;
        Some(format!("{}{}", cert_pem(leaf), chain.intermediates_pem))
    }

    /// The root certificate, PEM: what users trust.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediate certificate, PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }

    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The name of this CA's CRL: its intermediate's key identifier, hex.
    pub fn crl_id(&self) -> String {
        hex(&self.intermediate_ski)
    }

    /// The intermediate's subjectKeyIdentifier: the AKI of every leaf (RFC 9773 CertID).
    pub fn intermediate_ski(&self) -> &[u8] {
        &self.intermediate_ski
    }

    /// Signs a leaf. Names, validity, key usage and EKU come from `req`, never from a
    /// CSR (RFC 8555 §7.4, and rcgen's `from_der` copies CA rights: crate-stack §4.14).
    /// Names outside the intermediate's constraints are refused: such a leaf would not
    /// verify anyway.
    pub fn issue(&self, req: &LeafRequest<'_>) -> Result<IssuedLeaf, CaError> {
        self.constraints.check(req.dns_names, req.ip_addresses)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let cn = req
            .dns_names
            .iter()
            .find(|n| n.len() <= 64)
            .cloned()
            .or_else(|| req.ip_addresses.first().map(|ip| ip.to_string()));
        match req.subject {
            Some((org, name)) => {
                dn.push(DnType::OrganizationName, org);
                dn.push(DnType::CommonName, name);
            }
            None => {
                if let Some(cn) = cn {
                    dn.push(DnType::CommonName, cn);
                }
            }
        }
        p.distinguished_name = dn;
        for name in req.dns_names {
            let ia5 = name.as_str().try_into().map_err(|_| CaError::BadCsr(format!("`{name}` is not an IA5 name")))?;
            p.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in req.ip_addresses {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        for uri in req.uris {
            let ia5 = uri.as_str().try_into().map_err(|_| CaError::BadCsr(format!("`{uri}` is not an IA5 URI")))?;
            p.subject_alt_names.push(SanType::URI(ia5));
        }
        for email in req.emails {
            let ia5 =
                email.as_str().try_into().map_err(|_| CaError::BadCsr(format!("`{email}` is not an IA5 address")))?;
            p.subject_alt_names.push(SanType::Rfc822Name(ia5));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if matches!(req.key_type, KeyType::Rsa(_)) {
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        p.extended_key_usages = match req.usage {
            Usage::TlsServer => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::ClientIdentity => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        p.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.crl_url {
            p.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.clone()] }];
        }
        p.not_before = datetime(req.not_before)?;
        p.not_after = datetime(req.not_after)?;
        let (serial, number) = random_serial();
        p.serial_number = Some(number);
        let der = if req.key_type == KeyType::P521 {
            let raw = p521_leaf::RawSpki::from_der(req.spki_der)?;
            let draft = p.signed_by(&raw, &self.issuer)?;
            raw.set_right(draft.der(), self.issuer.key())?
        } else {
            let spki = rcgen::SubjectPublicKeyInfo::from_der(req.spki_der)
                .map_err(|e| CaError::BadCsr(format!("unsupported public key: {e}")))?;
            p.signed_by(&spki, &self.issuer)?.der().to_vec()
        };
        let chain_pem = format!("{}{}", cert_pem(&der), self.default_chain.intermediates_pem);
        Ok(IssuedLeaf { serial, der, chain_pem })
    }

    /// Issues idca's own TLS server certificate with a fresh P-256 key. Returns the
    /// chain (leaf, intermediate) as DER and the PKCS#8 key.
    pub fn issue_server_certificate(
        &self,
        names: &[String],
        now: UnixTime,
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (dns, ips) = split_names(names);
        let spki = key.subject_public_key_info();
        let leaf = self.issue(&LeafRequest {
            spki_der: &spki,
            key_type: KeyType::P256,
            dns_names: &dns,
            ip_addresses: &ips,
            uris: &[],
            emails: &[],
            subject: None,
            not_before: now - 3600,
            not_after: now + 397 * 86_400,
            usage: Usage::TlsServer,
        })?;
        let mut chain = vec![leaf.der];
        chain.extend(self.default_chain.intermediates.iter().cloned());
        Ok((chain, key.serialize_der()))
    }
}

/// The authority key identifier (RFC 5280 §4.2.1.1) of a certificate, if it has one.
pub fn authority_key_id(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(der).ok()?;
    c.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    })
}

/// Names as configured (`ca.server_names`): IP addresses, and DNS names for the rest.
pub fn split_names(names: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in names {
        match n.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(n.clone()),
        }
    }
    (dns, ips)
}

/// Extracts the first PEM block labelled `label` and decodes it.
pub fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text.get(start..)?.find(&end)?;
    let body: String = text.get(start..stop)?.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests;
