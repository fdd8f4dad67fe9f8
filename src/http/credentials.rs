//! What a request presents: the `Authorization` header (Bearer, DPoP, Basic), the
//! `DPoP` proofs, cookies, the peer address. Read here only, so every endpoint agrees on
//! what a header that is not visible ASCII means: a malformed request naming the header
//! (RFC 6750 §3.1 `invalid_request`, RFC 9449 §7.1 `invalid_dpop_proof`), never a missing
//! credential.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::config::Cidr;
use crate::oauth::OAuthError;

/// A credential header that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the Authorization header is not ASCII")]
    Authorization,
    #[error("the DPoP header is not ASCII")]
    Dpop,
}

impl From<CredentialError> for OAuthError {
    fn from(e: CredentialError) -> Self {
        match e {
            CredentialError::Authorization => OAuthError::InvalidRequest(e.to_string()),
            CredentialError::Dpop => OAuthError::InvalidDpopProof(e.to_string()),
        }
    }
}

/// The `Authorization` header, if any (RFC 9110 §11.6.2).
pub(super) fn authorization(req: &HttpRequest) -> Result<Option<&str>, CredentialError> {
    req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().map_err(|_| CredentialError::Authorization)).transpose()
}

/// The credentials of `Authorization: {scheme} …` (scheme matched without case), if the
/// header names that scheme.
pub(super) fn scheme<'r>(req: &'r HttpRequest, scheme: &str) -> Result<Option<&'r str>, CredentialError> {
    Ok(authorization(req)?.and_then(|v| {
        let (s, rest) = v.split_once(' ')?;
        s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
    }))
}

/// The values of the `DPoP` headers (RFC 9449 §4.1); the core refuses more than one.
pub(super) fn dpop_proofs(req: &HttpRequest) -> Result<Vec<&str>, CredentialError> {
    req.headers().get_all("dpop").map(|v| v.to_str().map_err(|_| CredentialError::Dpop)).collect()
}

/// The value of cookie `name` (RFC 6265 §5.4); a `Cookie` header that is not ASCII
/// carries none of ours and is passed over.
pub(super) fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers().get_all(header::COOKIE).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// The client's address (login and client-authentication limits key on it, RFC 7239):
/// the peer's, unless the peer is one of `trusted` proxies; then the nearest address in
/// `X-Forwarded-For` (else `Forwarded: for=`) that is not itself a trusted proxy, read
/// from the right, as each proxy appends the address it saw. `0.0.0.0` when the
/// transport has none.
pub(super) fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> IpAddr {
    let peer = req.peer_addr().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let headers = req.headers();
    let mut hops: Vec<String> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_owned())
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all(header::FORWARDED)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_owned())
                })
            })
            .collect();
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) if trusted.iter().any(|c| c.contains(ip)) => client = ip,
            Some(ip) => return ip,
            // An unreadable hop (`unknown`, an obfuscated name): the last one believed.
            None => return client,
        }
    }
    client
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]:80`,
/// `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    hop.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use actix_web::test::TestRequest;

    fn non_ascii() -> HeaderValue {
        HeaderValue::from_bytes(b"Bearer \xe9t\xe9").unwrap()
    }

    #[test]
    fn a_non_ascii_authorization_is_malformed_not_missing() {
        let req = TestRequest::default().insert_header((header::AUTHORIZATION, non_ascii())).to_http_request();
        assert_eq!(authorization(&req), Err(CredentialError::Authorization));
        assert_eq!(scheme(&req, "bearer"), Err(CredentialError::Authorization));
        let none = TestRequest::default().to_http_request();
        assert_eq!(authorization(&none), Ok(None));
        assert_eq!(scheme(&none, "bearer"), Ok(None));
    }

    #[test]
    fn schemes_match_without_case() {
        let req = TestRequest::default().insert_header((header::AUTHORIZATION, "bAsIc  abc ")).to_http_request();
        assert_eq!(scheme(&req, "Basic"), Ok(Some("abc")));
        assert_eq!(scheme(&req, "Bearer"), Ok(None));
    }

    #[test]
    fn dpop_headers_and_cookies() {
        let req = TestRequest::default()
            .append_header(("DPoP", "a"))
            .append_header(("DPoP", "b"))
            .append_header((header::COOKIE, "x=1; idca_session=s"))
            .to_http_request();
        assert_eq!(dpop_proofs(&req), Ok(vec!["a", "b"]));
        assert_eq!(cookie(&req, "idca_session").as_deref(), Some("s"));
        assert_eq!(cookie(&req, "y"), None);
        let bad = TestRequest::default().insert_header(("DPoP", non_ascii())).to_http_request();
        assert_eq!(dpop_proofs(&bad), Err(CredentialError::Dpop));
        assert!(matches!(OAuthError::from(CredentialError::Dpop), OAuthError::InvalidDpopProof(_)));
    }

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = |ip: &str| std::net::SocketAddr::new(ip.parse().unwrap(), 4000);
        let req = |from: &str, xff: &str| {
            TestRequest::default()
                .peer_addr(peer(from))
                .insert_header(("X-Forwarded-For", xff.to_owned()))
                .to_http_request()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From a trusted proxy: the nearest untrusted hop, from the right.
        assert_eq!(client_ip(&req("10.0.0.1", "198.51.100.7, 203.0.113.5, 10.0.0.2"), &trusted), ip("203.0.113.5"));
        // From anyone else the header is the client's own say: ignored.
        assert_eq!(client_ip(&req("192.0.2.9", "203.0.113.5"), &trusted), ip("192.0.2.9"));
        assert_eq!(client_ip(&req("10.0.0.1", "203.0.113.5"), &[]), ip("10.0.0.1"));
        // Ports and brackets; an unreadable hop stops at the last believed address.
        assert_eq!(client_ip(&req("10.0.0.1", "[2001:db8::1]:443"), &trusted), ip("2001:db8::1"));
        assert_eq!(client_ip(&req("10.0.0.1", "203.0.113.5:80"), &trusted), ip("203.0.113.5"));
        assert_eq!(client_ip(&req("10.0.0.1", "203.0.113.5, unknown, 10.0.0.3"), &trusted), ip("10.0.0.3"));
        let forwarded = TestRequest::default()
            .peer_addr(peer("10.0.0.1"))
            .insert_header((header::FORWARDED, "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""))
            .to_http_request();
        assert_eq!(client_ip(&forwarded, &trusted), ip("2001:db8:cafe::17"));
    }
}
