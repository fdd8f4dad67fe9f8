//! Name constraints (RFC 5280 §4.2.1.10): the names a constrained CA may certify.
//!
//! idca writes only permitted subtrees, of three forms: DNS names, IP ranges and URI
//! hosts. A constraint binds only its own form: with DNS subtrees and no URI subtree,
//! URIs are unconstrained (§4.2.1.10 "restrictions apply only when the specified name
//! form is present"). rcgen's `GeneralSubtree` has no URI form, so the DER is built here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::CaError;
use super::der::tlv;

/// The local names of `idca init --local-pki` (RFC 6761 `localhost`, `test`; RFC 6762
/// `local`; ICANN's reserved `internal`), each with every name under it.
pub const LOCAL_DOMAINS: [&str; 4] = ["localhost", "test", "internal", "local"];

/// An IP range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpRange {
    const fn v4(a: u8, b: u8, prefix: u8) -> Self {
        Self { addr: IpAddr::V4(Ipv4Addr::new(a, b, 0, 0)), prefix }
    }

    fn bytes(addr: &IpAddr) -> Vec<u8> {
        match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// Whether `ip` is in the range (an IPv4 range never holds an IPv6 address).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (net, addr) = (Self::bytes(&self.addr), Self::bytes(ip));
        if net.len() != addr.len() {
            return false;
        }
        let mut bits = u32::from(self.prefix);
        for (n, a) in net.iter().zip(&addr) {
            let take = bits.min(8);
            let mask = if take == 0 { 0 } else { 0xffu8 << (8 - take) };
            if n & mask != a & mask {
                return false;
            }
            bits -= take;
        }
        true
    }

    /// The iPAddress form of a subtree: address then mask (RFC 5280 §4.2.1.10).
    fn der(&self) -> Vec<u8> {
        let addr = Self::bytes(&self.addr);
        let mut mask = vec![0u8; addr.len()];
        let mut bits = u32::from(self.prefix);
        for m in &mut mask {
            let take = bits.min(8);
            *m = if take == 0 { 0 } else { 0xffu8 << (8 - take) };
            bits -= take;
        }
        [addr, mask].concat()
    }

    fn from_der(bytes: &[u8]) -> Option<Self> {
        let half = bytes.len() / 2;
        let (addr, mask) = (bytes.get(..half)?, bytes.get(half..)?);
        let addr = match half {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
            _ => return None,
        };
        Some(Self { addr, prefix: mask.iter().map(|b| b.count_ones() as u8).sum() })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Loopback and private ranges (RFC 1122, RFC 1918, RFC 4193, RFC 4291).
pub const LOCAL_IP_RANGES: [IpRange; 6] = [
    IpRange::v4(127, 0, 8),
    IpRange::v4(10, 0, 8),
    IpRange::v4(172, 16, 12),
    IpRange::v4(192, 168, 16),
    IpRange { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 },
    IpRange { addr: IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), prefix: 7 },
];

/// The permitted subtrees of a CA certificate. An empty list leaves its form free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraints {
    /// DNS names: each permits itself and every name under it.
    pub dns: Vec<String>,
    pub ips: Vec<IpRange>,
    /// URI hosts.
    pub uris: Vec<String>,
}

impl NameConstraints {
    /// The local-PKI constraints: [`LOCAL_DOMAINS`] plus `domains`, [`LOCAL_IP_RANGES`].
    pub fn local(domains: &[String]) -> Result<Self, CaError> {
        let mut dns: Vec<String> = LOCAL_DOMAINS.iter().map(|d| (*d).to_owned()).collect();
        for d in domains {
            let d = d.trim_start_matches('.').to_ascii_lowercase();
            if crate::model::check_dns_name(&d).is_err() || d.starts_with("*.") {
                return Err(CaError::Material(format!("`{d}` is not a domain name")));
            }
            // A top-level domain would let the root vouch for a whole public namespace.
            if !d.contains('.') && !LOCAL_DOMAINS.contains(&d.as_str()) {
                return Err(CaError::Material(format!(
                    "`{d}` is a top-level domain: name a domain of your own (such as corp.example)"
                )));
            }
            if !dns.contains(&d) {
                dns.push(d);
            }
        }
        Ok(Self { dns, ips: LOCAL_IP_RANGES.to_vec(), uris: Vec::new() })
    }

    /// Only URI hosts (client identity certificates, `ca.identity_uri_domains`).
    pub fn uri_hosts(hosts: &[String]) -> Self {
        Self { uris: hosts.to_vec(), ..Self::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ips.is_empty() && self.uris.is_empty()
    }

    /// Whether DNS names (and IP addresses) are constrained: a local-PKI CA.
    pub fn constrains_tls_names(&self) -> bool {
        !self.dns.is_empty() || !self.ips.is_empty()
    }

    /// The constraints in a certificate (none when it has no NameConstraints). Fails
    /// closed: a certificate or extension that cannot be read, or excluded subtrees
    /// (which idca does not check), is an error rather than "unconstrained".
    pub fn from_cert(cert_der: &[u8]) -> Result<Self, CaError> {
        use x509_parser::prelude::*;
        let mut out = Self::default();
        let (_, cert) =
            X509Certificate::from_der(cert_der).map_err(|e| CaError::Material(format!("CA certificate: {e}")))?;
        let nc = match cert.name_constraints() {
            Ok(Some(nc)) => nc,
            Ok(None) => return Ok(out),
            Err(e) => return Err(CaError::Material(format!("unreadable name constraints: {e}"))),
        };
        if nc.value.excluded_subtrees.is_some() {
            return Err(CaError::Material("the CA has excluded name subtrees, which idca does not check".into()));
        }
        for subtree in nc.value.permitted_subtrees.iter().flatten() {
            match subtree.base {
                GeneralName::DNSName(d) => out.dns.push(d.trim_start_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(b) => out.ips.extend(IpRange::from_der(b)),
                GeneralName::URI(u) => out.uris.push(u.to_owned()),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether a DNS name (or a wildcard `*.name`) is within the DNS subtrees.
    pub fn permits_dns(&self, name: &str) -> bool {
        let name = name.trim_start_matches("*.").trim_end_matches('.').to_ascii_lowercase();
        self.dns.is_empty()
            || self.dns.iter().any(|d| name == *d || name.strip_suffix(d.as_str()).is_some_and(|s| s.ends_with('.')))
    }

    pub fn permits_ip(&self, ip: &IpAddr) -> bool {
        self.ips.is_empty() || self.ips.iter().any(|r| r.contains(ip))
    }

    /// Refuses the first DNS name or IP address outside the constraints.
    pub fn check(&self, dns_names: &[String], ips: &[IpAddr]) -> Result<(), CaError> {
        if let Some(name) = dns_names.iter().find(|n| !self.permits_dns(n)) {
            return Err(CaError::NotPermitted(format!(
                "`{name}` is outside this CA's name constraints (permitted: {})",
                self.describe()
            )));
        }
        if let Some(ip) = ips.iter().find(|ip| !self.permits_ip(ip)) {
            return Err(CaError::NotPermitted(format!(
                "{ip} is outside this CA's name constraints (permitted: {})",
                self.describe()
            )));
        }
        Ok(())
    }

    /// One line: the names and ranges permitted.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.dns.iter().map(|d| format!("{d} and *.{d}")).collect();
        parts.extend(self.ips.iter().map(IpRange::to_string));
        parts.extend(self.uris.iter().map(|u| format!("URIs at {u}")));
        if parts.is_empty() { "any name".into() } else { parts.join(", ") }
    }

    /// The critical NameConstraints extension holding these permitted subtrees.
    pub fn extension(&self) -> rcgen::CustomExtension {
        // GeneralSubtree ::= SEQUENCE { base GeneralName }: dNSName [2], URI [6] and
        // iPAddress [7], all primitive.
        let mut subtrees = Vec::new();
        for d in &self.dns {
            subtrees.extend(tlv(0x30, &tlv(0x82, d.as_bytes())));
        }
        for r in &self.ips {
            subtrees.extend(tlv(0x30, &tlv(0x87, &r.der())));
        }
        for u in &self.uris {
            subtrees.extend(tlv(0x30, &tlv(0x86, u.as_bytes())));
        }
        // NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees }.
        let value = tlv(0x30, &tlv(0xA0, &subtrees));
        let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 30], value);
        ext.set_criticality(true);
        ext
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn local_names_and_ranges() {
        let nc = NameConstraints::local(&["corp.example".into()]).unwrap();
        for ok in ["localhost", "app.localhost", "myapp.test", "*.myapp.test", "db.internal", "printer.local"] {
            assert!(nc.permits_dns(ok), "{ok}");
        }
        assert!(nc.permits_dns("api.corp.example") && nc.permits_dns("corp.example"));
        for bad in ["example.com", "localhost.example.com", "notlocalhost", "xtest", "example", "*.com"] {
            assert!(!nc.permits_dns(bad), "{bad}");
        }
        for ok in ["127.0.0.1", "127.9.9.9", "10.1.2.3", "172.31.255.255", "192.168.1.1", "::1", "fd00::5"] {
            assert!(nc.permits_ip(&ok.parse().unwrap()), "{ok}");
        }
        for bad in ["8.8.8.8", "172.32.0.1", "192.169.0.1", "::2", "2001:db8::1", "128.0.0.1"] {
            assert!(!nc.permits_ip(&bad.parse().unwrap()), "{bad}");
        }
        let err = nc.check(&["myapp.test".into(), "example.com".into()], &[]).unwrap_err().to_string();
        assert!(err.contains("`example.com` is outside"), "{err}");
        assert!(NameConstraints::local(&["bad name".into()]).is_err());
        assert!(NameConstraints::local(&["com".into()]).is_err(), "a top-level domain is refused");
    }

    #[test]
    fn empty_forms_are_free() {
        let nc = NameConstraints::uri_hosts(&["wire.test".into()]);
        assert!(nc.permits_dns("example.com") && nc.permits_ip(&"8.8.8.8".parse().unwrap()));
        assert!(!nc.constrains_tls_names());
        assert!(NameConstraints::default().check(&["example.com".into()], &["1.1.1.1".parse().unwrap()]).is_ok());
    }

    #[test]
    fn ip_range_der_round_trips() {
        for r in LOCAL_IP_RANGES {
            assert_eq!(IpRange::from_der(&r.der()), Some(r));
        }
        assert_eq!(IpRange::v4(172, 16, 12).der(), vec![172, 16, 0, 0, 255, 240, 0, 0]);
    }
}
