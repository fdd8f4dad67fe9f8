//! Which addresses validation may connect to: the defence against server-side request
//! forgery through http-01 and tls-alpn-01 (a client names a host, idca connects to it,
//! and a redirect can name another).
//!
//! Never dialled, whatever the configuration: unspecified, link-local (169.254.0.0/16,
//! where cloud metadata services live, and fe80::/10), multicast and broadcast
//! addresses. Loopback and private addresses (127.0.0.0/8, ::1, RFC 1918, 100.64.0.0/10,
//! fc00::/7) only with `acme.validation.dial_private_addresses` (on by default: a test CA
//! on a developer machine validates servers on the same machine). The operator's own
//! `connect_to` is always dialled.

use std::net::IpAddr;

use super::ValidationError;

/// The address policy of `[acme.validation]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DialPolicy {
    pub private: bool,
}

impl DialPolicy {
    /// `Err` naming the address when validation must not connect to it.
    pub(super) fn check(&self, ip: IpAddr) -> Result<(), ValidationError> {
        let ip = embedded_ipv4(ip);
        let refuse = |why: &str| Err(ValidationError::Connection(format!("idca does not connect to {ip}: {why}")));
        let never = match ip {
            IpAddr::V4(v4) => v4.is_unspecified() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast(),
            IpAddr::V6(v6) => v6.is_unspecified() || v6.is_unicast_link_local() || v6.is_multicast(),
        };
        if never {
            return refuse("an unspecified, link-local, multicast or broadcast address");
        }
        let private = match ip {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                v4.is_loopback() || v4.is_private() || (a == 100 && (64..128).contains(&b))
            }
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
        };
        if private && !self.private {
            return refuse("a loopback or private address (acme.validation.dial_private_addresses = false)");
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address carries and routes to: IPv4-mapped (::ffff:0:0/96),
/// IPv4-compatible (::/96, deprecated) and NAT64 (64:ff9b::/96, RFC 6052).
fn embedded_ipv4(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let low = std::net::Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s[..6] {
        // ::, ::1 stay what they are.
        [0, 0, 0, 0, 0, 0] if !v6.is_unspecified() && !v6.is_loopback() => IpAddr::V4(low),
        [0x64, 0xff9b, 0, 0, 0, 0] => IpAddr::V4(low),
        _ => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: DialPolicy, ip: &str) -> bool {
        p.check(ip.parse().unwrap()).is_ok()
    }

    #[test]
    fn refuses_metadata_and_other_never_addresses_always() {
        for p in [DialPolicy { private: true }, DialPolicy { private: false }] {
            for ip in [
                "169.254.169.254",
                "0.0.0.0",
                "224.0.0.1",
                "255.255.255.255",
                "fe80::1",
                "::",
                "ff02::1",
                "::ffff:169.254.169.254",
                "::169.254.169.254",
                "64:ff9b::169.254.169.254",
            ] {
                assert!(!ok(p, ip), "{ip} with {p:?}");
            }
            for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
                assert!(ok(p, ip), "{ip} with {p:?}");
            }
        }
    }

    #[test]
    fn private_addresses_only_when_allowed() {
        let (open, closed) = (DialPolicy { private: true }, DialPolicy { private: false });
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(ok(open, ip), "{ip}");
            assert!(!ok(closed, ip), "{ip}");
        }
        assert!(ok(closed, "100.128.0.1"), "outside 100.64.0.0/10");
    }
}
