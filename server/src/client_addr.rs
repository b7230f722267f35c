//! Which address a request comes from (docs/audit.md): the socket peer, or — only when the peer is a
//! configured trusted proxy — the client a proxy names. A leaf module: it depends on nothing
//! else in the server.
//!
//! The socket peer is the only address the server can verify. A reverse proxy in front of the
//! server makes every peer the proxy, so `X-Real-IP` (or the rightmost untrusted hop of
//! `X-Forwarded-For`) is believed — but only when the peer is one of the configured trusted
//! proxies; from anybody else those headers are just text a client chose to send.

use std::net::{IpAddr, SocketAddr};

pub use ipnet::IpNet;

/// What a request says about its origin: the socket peer and the proxy headers it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The address of the socket peer: the client itself, or a proxy in front of it.
    pub peer: IpAddr,
    /// The `X-Real-IP` header, if the request carried one; believed only from a trusted peer.
    pub x_real_ip: Option<&'a str>,
    /// The `X-Forwarded-For` header, if the request carried one; believed only from a trusted peer.
    pub x_forwarded_for: Option<&'a str>,
}

impl Origin<'_> {
    /// The client address, believing the headers only from a peer in `trusted`.
    pub fn client(&self, trusted: &[IpNet]) -> IpAddr {
        client_ip(self.peer, self.x_real_ip, self.x_forwarded_for, trusted)
    }
}

/// Whether `ip` lies in `net`. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack
/// listener reports for IPv4 clients) match the IPv4 networks.
fn contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip.to_canonical())
}

/// One entry of the setting: `a.b.c.d`, `a.b.c.d/n`, `x:y::z` or `x:y::z/n`. Host bits after the
/// prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`), as Go's `net.ParseCIDR` does; a bare
/// address is a /32 or /128.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    match text.parse::<IpNet>() {
        Ok(net) => Ok(net.trunc()),
        Err(_)
            if text.contains('/')
                && text
                    .split('/')
                    .next()
                    .is_some_and(|a| a.parse::<IpAddr>().is_ok()) =>
        {
            let max = if text.contains(':') { 128 } else { 32 };
            Err(format!("{text:?}: the prefix length must be 0 to {max}"))
        }
        Err(_) => Err(format!("{text:?} is not an IP address or CIDR network")),
    }
}

/// Parses the trusted-proxies setting: a comma-separated list of addresses and CIDR networks;
/// empty (or only commas and spaces) trusts nobody.
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_net)
        .collect()
}

/// The client address of a request: the peer, or what a trusted proxy says the client was.
fn client_ip(
    peer: IpAddr,
    x_real_ip: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|net| contains(net, peer)) {
        return peer;
    }
    x_real_ip
        .and_then(parse_forwarded_addr)
        .or_else(|| x_forwarded_for.and_then(|v| forwarded_client(v, trusted)))
        .unwrap_or(peer)
}

/// The client named by `X-Forwarded-For`. Each proxy *appends* the address it received the
/// request from, so only the right end of the list is written by proxies we trust; whatever a
/// client sent stands further left. Walking from the right, the first hop that is not a trusted
/// proxy is the client. An unparsable hop ends the walk (nothing left of it can be vouched for).
fn forwarded_client(header: &str, trusted: &[IpNet]) -> Option<IpAddr> {
    let mut client = None;
    for hop in header.rsplit(',') {
        let Some(addr) = parse_forwarded_addr(hop) else {
            break;
        };
        client = Some(addr);
        if !trusted.iter().any(|net| contains(net, addr)) {
            break;
        }
    }
    client
}

/// One address as proxies write it: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, or with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn parse_forwarded_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let nets = parse_list(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,, ").unwrap();
        assert_eq!(
            nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]
        );
        assert!(contains(&nets[0], ip("10.255.0.1")));
        assert!(!contains(&nets[0], ip("11.0.0.1")));
        assert!(contains(&nets[0], ip("::ffff:10.1.1.1")));
        assert!(contains(&nets[1], ip("192.168.1.7")));
        assert!(!contains(&nets[1], ip("192.168.1.8")));
        assert!(contains(&nets[2], ip("fd12::1")));
        assert!(!contains(&nets[2], ip("fe80::1")));
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(contains(&parse_net("0.0.0.0/0").unwrap(), ip("8.8.8.8")));
        assert!(contains(&parse_net("::/0").unwrap(), ip("2001:db8::1")));
        assert!(parse_net("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn bad_networks_are_rejected() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "localhost",
            "10.0.0/8",
            "10.0.0.0/x",
            "1.2.3.4/",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_count_only_from_trusted_peers() {
        let trusted = parse_list("127.0.0.1").unwrap();
        let from = |peer, real, fwd| client_ip(ip(peer), real, fwd, &trusted);
        assert_eq!(from("10.0.0.5", Some("1.2.3.4"), None), ip("10.0.0.5"));
        assert_eq!(from("10.0.0.5", None, Some("1.2.3.4")), ip("10.0.0.5"));
        assert_eq!(
            from("127.0.0.1", Some("1.2.3.4"), Some("5.6.7.8")),
            ip("1.2.3.4")
        );
        assert_eq!(
            from("::ffff:127.0.0.1", Some("1.2.3.4"), None),
            ip("1.2.3.4")
        );
        // The rightmost untrusted hop is the client; what a client prepends cannot spoof it.
        assert_eq!(
            from(
                "127.0.0.1",
                Some("junk"),
                Some("6.6.6.6, 5.6.7.8:99, 9.9.9.9")
            ),
            ip("9.9.9.9")
        );
        assert_eq!(
            from("127.0.0.1", None, Some("6.6.6.6, 5.6.7.8, 127.0.0.1")),
            ip("5.6.7.8")
        );
        assert_eq!(
            from("127.0.0.1", None, Some("5.6.7.8, junk")),
            ip("127.0.0.1")
        );
        assert_eq!(
            from("127.0.0.1", None, Some("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        assert_eq!(
            from("127.0.0.1", Some("[2001:db8::2]"), None),
            ip("2001:db8::2")
        );
        assert_eq!(
            from("127.0.0.1", Some(""), Some("nonsense")),
            ip("127.0.0.1")
        );
        assert_eq!(from("127.0.0.1", None, None), ip("127.0.0.1"));
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), None, None, &[]),
            ip("10.0.0.1")
        );
    }
}
