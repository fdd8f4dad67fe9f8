//! Identifiers (RFC 8555 §7.1.4, RFC 8738): parse, normalise, policy; key authorizations.

use std::net::IpAddr;

use super::AcmeError;
use super::wire::IdentifierPayload;
use crate::model::{Identifier, IdentifierKind, check_dns_name};

/// Checks and normalises one requested identifier: DNS names lower-cased, at most 253
/// characters, LDH labels, a wildcard only as the whole leftmost label, no trailing dot;
/// IP addresses in canonical text form (RFC 8738 §3).
pub fn parse_identifier(p: &IdentifierPayload) -> Result<Identifier, AcmeError> {
    match p.kind.as_str() {
        "dns" => {
            let name = p.value.to_ascii_lowercase();
            check_dns_name(&name).map_err(|why| {
                AcmeError::RejectedIdentifier(format!("`{}` is not an acceptable DNS name: {why}", printable(&p.value)))
            })?;
            Ok(Identifier { kind: IdentifierKind::Dns, value: name })
        }
        "ip" => {
            let ip: IpAddr = p
                .value
                .parse()
                .map_err(|_| AcmeError::Malformed(format!("`{}` is not an IP address", printable(&p.value))))?;
            Ok(Identifier { kind: IdentifierKind::Ip, value: ip.to_string() })
        }
        "wireapp-device" | "wireapp-user" => {
            let kind =
                if p.kind == "wireapp-device" { IdentifierKind::WireappDevice } else { IdentifierKind::WireappUser };
            super::identity::wire_identity(kind, &p.value)?;
            Ok(Identifier { kind, value: p.value.clone() })
        }
        other => Err(AcmeError::UnsupportedIdentifier(format!(
            "identifier type `{}` is not supported (dns, ip, wireapp-device, wireapp-user)",
            printable(other)
        ))),
    }
}

fn printable(s: &str) -> String {
    s.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(v: &str) -> Result<Identifier, AcmeError> {
        parse_identifier(&IdentifierPayload { kind: "dns".into(), value: v.into() })
    }

    #[test]
    fn normalises_dns_names() {
        assert_eq!(dns("WWW.Example.COM").unwrap().value, "www.example.com");
        assert_eq!(dns("*.example.com").unwrap().value, "*.example.com");
        assert_eq!(dns("localhost").unwrap().value, "localhost");
    }

    #[test]
    fn rejects_bad_dns_names() {
        for bad in ["", "a..b", "-a.b", "a-.b", "a.b.", "a.*.b", "*a.b", "a_b.c", "1.2.3.4", "é.example", "**.a"] {
            assert!(matches!(dns(bad), Err(AcmeError::RejectedIdentifier(_))), "{bad}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(dns(&long).is_err());
    }

    #[test]
    fn parses_ip_and_refuses_unknown_types() {
        let ip = parse_identifier(&IdentifierPayload { kind: "ip".into(), value: "0:0::1".into() }).unwrap();
        assert_eq!(ip.value, "::1");
        let e = parse_identifier(&IdentifierPayload { kind: "email".into(), value: "a@b".into() }).unwrap_err();
        assert!(matches!(e, AcmeError::UnsupportedIdentifier(_)));
    }
}
