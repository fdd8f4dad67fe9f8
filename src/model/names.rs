//! DNS names as idca accepts them (RFC 1123 §2.1 LDH labels, RFC 8555 §7.1.3 wildcards).

use std::net::IpAddr;

/// Checks a lower-cased DNS name: at most 253 characters, LDH labels of 1 to 63, a
/// wildcard only as the whole leftmost label, no trailing dot, not an IP address.
pub fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("length must be 1 to 253");
    }
    if name.ends_with('.') {
        return Err("trailing dot");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("an IP address must use the `ip` identifier type");
    }
    let base = name.strip_prefix("*.").unwrap_or(name);
    for label in base.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label must be 1 to 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("only letters, digits, '-' and a leading '*.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("labels may not start or end with '-'");
        }
    }
    if base.contains('*') {
        return Err("a wildcard must be the whole leftmost label");
    }
    // WHATWG URL parsing (and so HTTP clients) reads a host whose last label is a number
    // (`2852039166`, `0xa9fea9fe`, `169.254.43518`) as an IPv4 address: no top-level
    // domain is numeric, so such a name is an address in disguise.
    let last = base.rsplit('.').next().unwrap_or(base);
    if last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() > 2 && last[..2].eq_ignore_ascii_case("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err("the last label may not be a number (that is an IP address)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_parse_as_addresses_are_refused() {
        for name in ["2852039166", "0xa9fea9fe", "169.254.43518", "a.b.123", "0XA9FEA9FE"] {
            assert!(check_dns_name(name).is_err(), "{name}");
        }
        for name in ["a.test", "1a.test", "x.0xnotanumber", "123.example", "*.a.test"] {
            assert!(check_dns_name(name).is_ok(), "{name}");
        }
    }
}
