//! Redirect URIs, checked as RFC 3986, RFC 6749 and RFC 8252 say.

/// A redirect URI (RFC 6749 §3.1.2, RFC 7591 §2): an absolute URI that parses under
/// RFC 3986 §4.3 with a valid port and no fragment, every character allowed there
/// (no spaces, controls, raw non-ASCII, `"` `<` `>` `\\` `{` `}` `|` `^` or backtick),
/// no user information; and then https with a host, http on a loopback address
/// (RFC 8252 §7.3), or a private-use scheme in reverse-domain form (RFC 8252 §7.1).
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > 2000 {
        return Err("a redirect URI is at most 2000 characters");
    }
    if uri.contains('#') {
        return Err("a redirect URI must not have a fragment");
    }
    // RFC 3986 §2: unreserved, sub-delims, `%` (checked below), and the gen-delims
    // `:` `/` `?` `@` (`[` `]` only around an IP literal, checked below).
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:/?@[]".contains(&b);
    if !uri.bytes().all(allowed) {
        return Err("a redirect URI may only hold the characters RFC 3986 allows (no spaces, quotes or non-ASCII)");
    }
    let bytes = uri.as_bytes();
    for (i, _) in uri.match_indices('%') {
        let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !hex(i + 1) || !hex(i + 2) {
            return Err("a `%` must start a percent-encoded octet");
        }
    }
    // §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
    let (scheme, rest) = uri.split_once(':').ok_or("not an absolute URI")?;
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err("not an absolute URI: the scheme is malformed");
    }
    let scheme = scheme.to_ascii_lowercase();
    // §3.2: "//" authority path-abempty; elsewhere no authority, so no `[` `]` either.
    let host = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            let (authority, tail) = after.split_at(end);
            if tail.contains(['[', ']']) {
                return Err("`[` and `]` only enclose an IP literal host");
            }
            Some(authority_host(authority)?)
        }
        None if rest.contains(['[', ']']) => return Err("`[` and `]` only enclose an IP literal host"),
        None => None,
    };
    match (scheme.as_str(), host) {
        ("https", Some(h)) if !h.is_empty() => Ok(()),
        ("https", _) => Err("no host"),
        ("http", Some(h)) if matches!(h.to_ascii_lowercase().as_str(), "127.0.0.1" | "[::1]" | "localhost") => Ok(()),
        ("http", _) => Err("http is only allowed on a loopback address"),
        (s, _) if s.contains('.') => Ok(()),
        _ => Err("not https, loopback http, or a reverse-domain private-use scheme"),
    }
}

/// The host of an RFC 3986 §3.2 authority, after checking it: no user information, an
/// IP literal that parses, a reg-name without `[` `]`, and a port of 1-65535.
fn authority_host(authority: &str) -> Result<&str, &'static str> {
    if authority.contains('@') {
        return Err("a redirect URI must not carry user information");
    }
    let (host, port) = if let Some(literal) = authority.strip_prefix('[') {
        let (inside, after) = literal.split_once(']').ok_or("an IP literal host lacks its `]`")?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the IP literal host is not an IPv6 address");
        }
        let host = authority.get(..inside.len() + 2).ok_or("malformed host")?;
        match after {
            "" => (host, None),
            a => (host, Some(a.strip_prefix(':').ok_or("junk after the IP literal host")?)),
        }
    } else {
        if authority.contains(['[', ']']) {
            return Err("`[` and `]` only enclose an IP literal host");
        }
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) || {
            let n: u32 = port.parse().unwrap_or(0);
            n == 0 || n > 65535
        })
    {
        return Err("the port must be a number from 1 to 65535");
    }
    Ok(host)
}
