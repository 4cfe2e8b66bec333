//! The client's address: the TCP peer, or, behind proxies we trust, the right-most
//! `X-Forwarded-For` hop that is not one of them; and its anonymized form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::CollectorConfig;

/// An address or a CIDR range, written `10.0.0.0/8`, `fd00::/8` or a bare `192.0.2.7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange(pub IpNet);

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(IpRange(net.trunc()));
        }
        s.parse::<IpAddr>().map(|ip| IpRange(IpNet::from(ip))).map_err(|_| format!("`{s}` is neither an IP address nor a CIDR range"))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for IpRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Loopback and private ranges: where a reverse proxy on the same host or network sits.
pub fn default_trusted_proxies() -> Vec<IpRange> {
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"].iter().filter_map(|s| s.parse().ok()).collect()
}

/// More hops than any real proxy chain; past it the walk stops where it is, so a client cannot
/// make us parse an arbitrarily long header of trusted-looking entries.
const MAX_HOPS: usize = 32;

/// The client's address for `peer`, the TCP peer of the request.
///
/// Without `trust_forwarded_for`, or when the peer is not in `trusted_proxies`, it is the peer.
/// Otherwise `X-Forwarded-For` is walked from the right: each proxy appends the address it received
/// from, so the right-most entries were written by our own proxies and the left-most by whoever
/// connected first, including the client, who can write anything there. The first entry that is not
/// a trusted proxy is the client. When every entry is trusted the left-most is taken; when an entry
/// does not parse, the last trusted hop before it is.
pub fn client_ip(config: &CollectorConfig, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    let peer = peer.ip().to_canonical();
    let trusted = |ip: IpAddr| config.trusted_proxies.iter().any(|r| r.contains(ip));
    if !config.trust_forwarded_for || !trusted(peer) {
        return peer;
    }
    let mut current = peer;
    let mut hops = 0;
    // Several header lines are one list, in order (RFC 9110 §5.3).
    let lines: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            break;
        }
        let Some(ip) = parse_hop(entry) else { break };
        current = ip;
        if !trusted(ip) {
            break;
        }
    }
    current
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// Zeroes the host part of an address: the last octet of IPv4, the last 80 bits of IPv6 (what
/// remains is the /24 or the /48, enough for a country or a network, not a household).
pub fn anonymize_ip(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

/// Anonymizes an address a client wrote in a record. Text that is not an address is dropped: it
/// cannot be shown to hold no full address.
pub fn anonymize_ip_text(s: &str) -> Option<String> {
    parse_hop(s.trim()).map(|ip| anonymize_ip(ip).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cfg(trust: bool, proxies: &[&str]) -> CollectorConfig {
        CollectorConfig {
            trust_forwarded_for: trust,
            trusted_proxies: proxies.iter().map(|p| p.parse().expect("range")).collect(),
            ..CollectorConfig::default()
        }
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().expect("ip"), 40000)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn right_most_untrusted_hop_wins() {
        let c = cfg(true, &["127.0.0.0/8", "10.0.0.0/8"]);
        // The client wrote 6.6.6.6; our proxy appended the address it saw.
        assert_eq!(client_ip(&c, &xff(&["6.6.6.6, 203.0.113.7"]), peer("127.0.0.1")), ip("203.0.113.7"));
        // Two of our proxies in a row.
        assert_eq!(client_ip(&c, &xff(&["6.6.6.6, 203.0.113.7, 10.1.2.3"]), peer("10.0.0.1")), ip("203.0.113.7"));
        // Split over two header lines, with a port and spaces.
        assert_eq!(client_ip(&c, &xff(&["6.6.6.6", " 203.0.113.7:5555 ,10.1.2.3"]), peer("10.0.0.1")), ip("203.0.113.7"));
        assert_eq!(client_ip(&c, &xff(&["[2001:db8::5]:443"]), peer("10.0.0.1")), ip("2001:db8::5"));
        // Everything trusted: the left-most.
        assert_eq!(client_ip(&c, &xff(&["10.9.9.9, 10.1.1.1"]), peer("127.0.0.1")), ip("10.9.9.9"));
        // Garbage left of a trusted hop: that hop.
        assert_eq!(client_ip(&c, &xff(&["unknown, 10.1.1.1"]), peer("127.0.0.1")), ip("10.1.1.1"));
        assert_eq!(client_ip(&c, &xff(&["nonsense"]), peer("127.0.0.1")), ip("127.0.0.1"));
        // No header: the peer.
        assert_eq!(client_ip(&c, &HeaderMap::new(), peer("127.0.0.1")), ip("127.0.0.1"));
    }

    #[test]
    fn untrusted_peer_or_option_off_means_the_peer() {
        let c = cfg(true, &["10.0.0.0/8"]);
        assert_eq!(client_ip(&c, &xff(&["203.0.113.7"]), peer("198.51.100.1")), ip("198.51.100.1"));
        let off = cfg(false, &["127.0.0.0/8"]);
        assert_eq!(client_ip(&off, &xff(&["203.0.113.7"]), peer("127.0.0.1")), ip("127.0.0.1"));
        // An IPv4 peer seen on a dual-stack socket is matched as IPv4.
        assert_eq!(client_ip(&c, &xff(&["203.0.113.7"]), peer("::ffff:10.0.0.1")), ip("203.0.113.7"));
    }

    #[test]
    fn a_long_trusted_chain_stops_at_the_cap() {
        let c = cfg(true, &["10.0.0.0/8"]);
        let chain =
            std::iter::once("203.0.113.7".to_owned()).chain((0..100).map(|i| format!("10.0.0.{}", i % 250))).collect::<Vec<_>>().join(",");
        let got = client_ip(&c, &xff(&[&chain]), peer("10.0.0.1"));
        assert_ne!(got, ip("203.0.113.7"));
        assert!(c.trusted_proxies[0].contains(got));
    }

    #[test]
    fn ranges_parse_bare_addresses_and_cidrs() {
        assert_eq!("192.0.2.7".parse::<IpRange>().expect("ip").to_string(), "192.0.2.7/32");
        assert_eq!("10.1.2.3/8".parse::<IpRange>().expect("cidr").to_string(), "10.0.0.0/8");
        assert!("::1".parse::<IpRange>().expect("v6").contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("proxy.local".parse::<IpRange>().is_err());
    }

    #[test]
    fn anonymize_zeroes_the_host_part() {
        // Same expectations as the redirect's: /24 for IPv4, /48 for IPv6.
        assert_eq!(anonymize_ip(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(anonymize_ip(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1::"));
        assert_eq!(anonymize_ip(ip("::ffff:198.51.100.9")), ip("198.51.100.0"));
        assert_eq!(anonymize_ip_text("198.51.100.23").as_deref(), Some("198.51.100.0"));
        assert_eq!(anonymize_ip_text("[2001:db8:aa:bb::1]:80").as_deref(), Some("2001:db8:aa::"));
        assert_eq!(anonymize_ip_text("my house"), None);
    }
}
