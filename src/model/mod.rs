//! Domain records, held by value, with no I/O.

pub mod acme;
pub mod ids;
pub mod names;
pub mod oauth;
pub mod pki;

pub use acme::*;
pub use ids::*;
pub use names::check_dns_name;
pub use pki::*;

/// Lowercase hex of `bytes` (serials, fingerprints, digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address a per-address limit counts by: an IPv4 address, or an IPv6 address's /48
/// (one site's allocation; Boulder counts registrations so).
pub fn address_group(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_group_by_ipv4_or_ipv6_slash_48() {
        let g = |s: &str| address_group(s.parse().unwrap());
        assert_eq!(g("192.0.2.7"), "192.0.2.7");
        assert_eq!(g("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(g("2001:db8:aa:1::1"), g("2001:db8:aa:ffff::2"));
        assert_ne!(g("2001:db8:aa::1"), g("2001:db8:ab::1"));
    }
}
