//! The base URL clients reach idca at.

use super::*;

impl Config {
    /// The base URL clients reach idca at, without a trailing slash: `server.public_url`,
    /// else derived from the bound address. A loopback or unspecified bind advertises
    /// `localhost` only when every address `localhost` resolves to here is one idca
    /// listens on; otherwise the loopback literal of the bound family (`[::1]`,
    /// `127.0.0.1`), so a client never dials an address nothing listens on.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url_with(bound, || {
            use std::net::ToSocketAddrs;
            ("localhost", 0).to_socket_addrs().map(|a| a.map(|a| a.ip()).collect()).unwrap_or_default()
        })
    }

    /// [`Config::public_url`] with `localhost`'s addresses from `resolve_localhost`.
    pub(super) fn public_url_with(&self, bound: SocketAddr, resolve_localhost: impl FnOnce() -> Vec<IpAddr>) -> String {
        if !self.server.public_url.is_empty() {
            return self.server.public_url.clone();
        }
        let scheme = if self.server.tls { "https" } else { "http" };
        let ip = bound.ip();
        let host = if ip.is_loopback() || ip.is_unspecified() {
            let localhost = resolve_localhost();
            // An unspecified IPv6 bind is taken to cover IPv6 only: whether it also
            // accepts IPv4 depends on the host's `bindv6only`.
            let covered = |a: &IpAddr| match ip {
                IpAddr::V4(v4) if v4.is_unspecified() => a.is_ipv4(),
                IpAddr::V6(v6) if v6.is_unspecified() => a.is_ipv6(),
                _ => *a == ip,
            };
            if !localhost.is_empty() && localhost.iter().all(covered) {
                "localhost".to_owned()
            } else if ip.is_ipv6() {
                "[::1]".to_owned()
            } else if ip.is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                ip.to_string()
            }
        } else if bound.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("{scheme}://{host}:{}", bound.port())
    }
}
