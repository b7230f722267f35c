//! Which address an audit event names as the client (SPEC §6).
//!
//! The socket peer is the only address the server can verify. A reverse proxy in front of the
//! server makes every peer the proxy, so `X-Real-IP` (or the rightmost untrusted hop of
//! `X-Forwarded-For`) is believed — but only when the peer is one of the configured trusted
//! proxies; from anybody else those headers are just text a client chose to send.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An IP network in CIDR form (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address, host bits cleared.
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a
    /// dual-stack listener reports for IPv4 clients) match the IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    /// Accepts `a.b.c.d`, `a.b.c.d/n`, `x:y::z` and `x:y::z/n`. Host bits after the prefix are
    /// cleared (`10.1.2.3/8` is `10.0.0.0/8`), as Go's `net.ParseCIDR` does.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(prefix)).into()),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses the trusted-proxies setting: a comma-separated list of addresses and CIDR networks;
/// empty (or only commas and spaces) trusts nobody.
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(IpNet::from_str)
        .collect()
}

/// The client address of a request: the peer, or what a trusted proxy says the client was.
pub fn client_ip(
    peer: IpAddr,
    x_real_ip: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.iter().any(|net| net.contains(peer)) {
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
        if !trusted.iter().any(|net| net.contains(addr)) {
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
        assert!(nets[0].contains(ip("10.255.0.1")));
        assert!(!nets[0].contains(ip("11.0.0.1")));
        assert!(nets[0].contains(ip("::ffff:10.1.1.1")));
        assert!(nets[1].contains(ip("192.168.1.7")));
        assert!(!nets[1].contains(ip("192.168.1.8")));
        assert!(nets[2].contains(ip("fd12::1")));
        assert!(!nets[2].contains(ip("fe80::1")));
        assert_eq!(
            "10.1.2.3/8".parse::<IpNet>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!("::/0".parse::<IpNet>().unwrap().contains(ip("2001:db8::1")));
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
