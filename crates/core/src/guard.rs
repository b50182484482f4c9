//! The address guard: webhook URLs, SMTP relays and SES endpoints may not reach the
//! instance's own network. Names are resolved once, every address is checked, and the
//! connection goes only to a checked address (reqwest connects to what
//! [`GuardedResolver`] returns, the SMTP client to what [`Guard::resolve`] returns;
//! there is no second lookup).
//!
//! What is refused: every range of the IANA IPv4 and IPv6 special-purpose address
//! registries that is not globally reachable, multicast, IPv6 outside global unicast,
//! and every IPv6 form that carries an IPv4 address inside (mapped, compatible, NAT64,
//! 6to4, Teredo) when that IPv4 address would be refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Network;

/// What a refused address says, to anyone: never the address a name resolved to.
pub const REFUSED: &str = "refused: not a public address";

fn v4_in(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn v6(s: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

/// Why an address may not be contacted, or None when it may.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    // Globally reachable entries inside refused blocks (IANA IPv4 special-purpose
    // registry): PCP and TURN anycast in 192.0.0.0/24, the 6a44 relay in 192.88.99.0/24.
    if [[192, 0, 0, 9], [192, 0, 0, 10], [192, 88, 99, 2]].iter().any(|a| ip == Ipv4Addr::from(*a)) {
        return None;
    }
    const REFUSED_V4: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "\"this network\""),
        ([10, 0, 0, 0], 8, "private-use"),
        ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private-use"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "deprecated 6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private-use"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    REFUSED_V4.iter().find(|(net, prefix, _)| v4_in(ip, *net, *prefix)).map(|(_, _, why)| *why)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    // Forms that carry an IPv4 address: never contacted as such (mapped, compatible,
    // translated), or judged by the address they carry (NAT64, 6to4, Teredo).
    if v6_in(ip, v6([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96) {
        return Some("IPv4-mapped");
    }
    if v6_in(ip, v6([0, 0, 0, 0, 0xffff, 0, 0, 0]), 96) {
        return Some("IPv4-translated");
    }
    if v6_in(ip, Ipv6Addr::UNSPECIFIED, 96) {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d.
        return Some("unspecified, loopback or IPv4-compatible");
    }
    if v6_in(ip, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96) {
        return v4_reason(v4_of(seg[6], seg[7])).map(|_| "NAT64 of a refused IPv4 address");
    }
    if v6_in(ip, v6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        return v4_reason(v4_of(seg[1], seg[2])).map(|_| "6to4 of a refused IPv4 address");
    }
    if v6_in(ip, v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32) {
        // Teredo: the server's IPv4 address, then the client's, bits inverted.
        let server = v4_of(seg[2], seg[3]);
        let client = v4_of(!seg[6], !seg[7]);
        return (v4_reason(server).is_some() || v4_reason(client).is_some())
            .then_some("Teredo of a refused IPv4 address");
    }
    // Globally reachable entries inside refused blocks (IANA IPv6 special-purpose
    // registry): PCP, TURN and DNS-SD SRP anycast, AMT, AS112-v6, ORCHIDv2, DETs.
    const GLOBAL_V6: &[([u16; 8], u32)] = &[
        ([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
        ([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
        ([0x2001, 1, 0, 0, 0, 0, 0, 3], 128),
        ([0x2001, 3, 0, 0, 0, 0, 0, 0], 32),
        ([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        ([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
    ];
    if GLOBAL_V6.iter().any(|(net, prefix)| v6_in(ip, v6(*net), *prefix)) {
        return None;
    }
    const REFUSED_V6: &[([u16; 8], u32, &str)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
        ([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy prefix"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments"),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing SIDs"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    if let Some((_, _, why)) = REFUSED_V6.iter().find(|(net, prefix, _)| v6_in(ip, v6(*net), *prefix)) {
        return Some(why);
    }
    // Everything else outside global unicast (2000::/3) is unassigned or reserved.
    if !v6_in(ip, v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3) {
        return Some("not global unicast");
    }
    None
}

/// Why a host or address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It is, or resolves to, an address the guard refuses.
    NotPublic,
    /// The name does not resolve (or not in time).
    Unresolved,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotPublic => f.write_str(REFUSED),
            Refusal::Unresolved => f.write_str("the host name does not resolve"),
        }
    }
}

/// The address a host string names when it is an IP literal in any form a resolver
/// would take: dotted, decimal, hex or octal IPv4 (WHATWG host rules), IPv6 with or
/// without brackets.
pub fn literal(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    match url::Host::parse(host).ok()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// How long a name may take to resolve.
const RESOLVE_FOR: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default)]
pub struct Guard {
    allowed: Vec<Network>,
}

impl Guard {
    pub fn new(allowed: Vec<Network>) -> Self {
        Self { allowed }
    }

    /// True when `ip` may be contacted.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if forbidden_reason(ip).is_none() {
            return true;
        }
        let embedded = match ip {
            IpAddr::V6(v6) => v6.to_ipv4().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allowed.iter().any(|n| n.contains(ip) || embedded.is_some_and(|e| n.contains(e)))
    }

    /// None when `ip` may be contacted, else why not (the same words for every
    /// address, so a refusal never tells what a name resolved to).
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        (!self.permits(ip)).then(|| REFUSED.to_owned())
    }

    /// Resolves `host` once and returns its addresses, all of them permitted; a host
    /// with any refused address is refused. Connect to what this returns, never to
    /// `host` again.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let addrs: Vec<SocketAddr> = match literal(host) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => match tokio::time::timeout(RESOLVE_FOR, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => return Err(Refusal::Unresolved),
            },
        };
        if addrs.is_empty() {
            return Err(Refusal::Unresolved);
        }
        if addrs.iter().any(|a| !self.permits(a.ip())) {
            return Err(Refusal::NotPublic);
        }
        Ok(addrs)
    }

    /// The check when a host is saved: refused when it is, or resolves to, a refused
    /// address. A name that does not resolve now passes (the connection checks again).
    pub async fn check_host(&self, host: &str, port: u16) -> Result<(), Refusal> {
        match self.resolve(host, port).await {
            Err(Refusal::NotPublic) => Err(Refusal::NotPublic),
            _ => Ok(()),
        }
    }
}

/// reqwest's resolver: resolve, keep only permitted addresses, or fail with the reason.
pub struct GuardedResolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let any = !addrs.is_empty();
            let permitted: Vec<SocketAddr> = addrs.into_iter().filter(|a| guard.permits(a.ip())).collect();
            if permitted.is_empty() {
                let why = if any { REFUSED.to_owned() } else { format!("{host} has no address") };
                return Err(why.into());
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a URL whose host is an IP literal (no resolver runs for those).
pub fn literal_refusal(guard: &Guard, url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(v4) => guard.refusal(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => guard.refusal(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per entry of the IANA IPv4 Special-Purpose Address Registry (plus
    /// multicast and the cloud metadata addresses): an address in it, and whether the
    /// registry calls it globally reachable (`true` = allowed).
    const IANA_V4: &[(&str, &str, bool)] = &[
        ("0.0.0.0/8 this network", "0.1.2.3", false),
        ("0.0.0.0/32 this host", "0.0.0.0", false),
        ("10.0.0.0/8 private-use", "10.20.30.40", false),
        ("100.64.0.0/10 shared address space", "100.127.255.254", false),
        ("127.0.0.0/8 loopback", "127.0.0.1", false),
        ("169.254.0.0/16 link local", "169.254.1.1", false),
        ("172.16.0.0/12 private-use", "172.31.255.1", false),
        ("192.0.0.0/24 IETF protocol assignments", "192.0.0.100", false),
        ("192.0.0.0/29 IPv4 service continuity", "192.0.0.1", false),
        ("192.0.0.8/32 IPv4 dummy address", "192.0.0.8", false),
        ("192.0.0.9/32 PCP anycast", "192.0.0.9", true),
        ("192.0.0.10/32 TURN anycast", "192.0.0.10", true),
        ("192.0.0.170/32 NAT64/DNS64 discovery", "192.0.0.170", false),
        ("192.0.0.171/32 NAT64/DNS64 discovery", "192.0.0.171", false),
        ("192.0.2.0/24 documentation (TEST-NET-1)", "192.0.2.1", false),
        ("192.31.196.0/24 AS112-v4", "192.31.196.1", true),
        ("192.52.193.0/24 AMT", "192.52.193.1", true),
        ("192.88.99.0/24 deprecated 6to4 relay anycast (N/A)", "192.88.99.1", false),
        ("192.88.99.2/32 6a44-relay anycast", "192.88.99.2", true),
        ("192.168.0.0/16 private-use", "192.168.1.1", false),
        ("192.175.48.0/24 AS112 direct delegation", "192.175.48.1", true),
        ("198.18.0.0/15 benchmarking", "198.19.0.1", false),
        ("198.51.100.0/24 documentation (TEST-NET-2)", "198.51.100.7", false),
        ("203.0.113.0/24 documentation (TEST-NET-3)", "203.0.113.9", false),
        ("240.0.0.0/4 reserved", "240.0.0.1", false),
        ("255.255.255.255/32 limited broadcast", "255.255.255.255", false),
        ("224.0.0.0/4 multicast (not in the registry)", "239.1.2.3", false),
        ("cloud metadata", "169.254.169.254", false),
        ("cloud metadata (Alibaba)", "100.100.100.200", false),
        ("public", "8.8.8.8", true),
        ("public", "1.1.1.1", true),
        ("public, next to CGNAT", "100.128.0.1", true),
        ("public, next to 172.16/12", "172.32.0.1", true),
        ("public, next to 198.18/15", "198.20.0.1", true),
    ];

    /// One row per entry of the IANA IPv6 Special-Purpose Address Registry, plus the
    /// IPv4-in-IPv6 forms and multicast.
    const IANA_V6: &[(&str, &str, bool)] = &[
        ("::1/128 loopback", "::1", false),
        ("::/128 unspecified", "::", false),
        ("::ffff:0:0/96 IPv4-mapped", "::ffff:8.8.8.8", false),
        ("::ffff:0:0/96 IPv4-mapped of loopback", "::ffff:127.0.0.1", false),
        ("64:ff9b::/96 NAT64 of a public address", "64:ff9b::808:808", true),
        ("64:ff9b::/96 NAT64 of loopback", "64:ff9b::7f00:1", false),
        ("64:ff9b::/96 NAT64 of metadata", "64:ff9b::a9fe:a9fe", false),
        ("64:ff9b:1::/48 local-use translation", "64:ff9b:1::808:808", false),
        ("100::/64 discard-only", "100::1", false),
        ("100:0:0:1::/64 dummy prefix", "100:0:0:1::1", false),
        ("2001::/23 IETF protocol assignments", "2001:1ff::1", false),
        ("2001::/32 Teredo of public addresses", "2001:0:808:808::f7f7:f7f7", true),
        ("2001::/32 Teredo with a loopback client", "2001:0:808:808::80ff:fffe", false),
        ("2001::/32 Teredo with a private server", "2001:0:a00:1::f7f7:f7f7", false),
        ("2001:1::1/128 PCP anycast", "2001:1::1", true),
        ("2001:1::2/128 TURN anycast", "2001:1::2", true),
        ("2001:1::3/128 DNS-SD SRP anycast", "2001:1::3", true),
        ("2001:2::/48 benchmarking", "2001:2::1", false),
        ("2001:3::/32 AMT", "2001:3::1", true),
        ("2001:4:112::/48 AS112-v6", "2001:4:112::1", true),
        ("2001:10::/28 deprecated ORCHID (N/A)", "2001:10::1", false),
        ("2001:20::/28 ORCHIDv2", "2001:20::1", true),
        ("2001:30::/28 drone remote ID DETs", "2001:30::1", true),
        ("2001:db8::/32 documentation", "2001:db8::1", false),
        ("2002::/16 6to4 of a public address", "2002:808:808::1", true),
        ("2002::/16 6to4 of loopback", "2002:7f00:1::1", false),
        ("2002::/16 6to4 of private", "2002:c0a8:101::1", false),
        ("2620:4f:8000::/48 AS112 direct delegation", "2620:4f:8000::1", true),
        ("3fff::/20 documentation", "3fff::1", false),
        ("5f00::/16 segment routing SIDs", "5f00::1", false),
        ("fc00::/7 unique-local", "fd00:ec2::254", false),
        ("fc00::/7 unique-local", "fc00::1", false),
        ("fe80::/10 link-local", "fe80::1", false),
        ("ff00::/8 multicast (not in the registry)", "ff02::1", false),
        ("::/96 IPv4-compatible (deprecated)", "::7f00:1", false),
        ("::/96 IPv4-compatible of a public address", "::808:808", false),
        ("::ffff:0:0:0/96 IPv4-translated", "::ffff:0:a00:1", false),
        ("fec0::/10 deprecated site-local", "fec0::1", false),
        ("outside 2000::/3", "4000::1", false),
        ("public", "2606:4700:4700::1111", true),
        ("public", "2a00:1450:4001:80b::200e", true),
    ];

    #[test]
    fn every_special_purpose_range_is_judged_as_the_registry_says() {
        let g = Guard::default();
        for (entry, addr, allowed) in IANA_V4.iter().chain(IANA_V6) {
            let ip: IpAddr = addr.parse().unwrap_or_else(|_| panic!("{entry}: {addr} is not an address"));
            assert_eq!(
                g.refusal(ip).is_none(),
                *allowed,
                "{entry}: {addr} should be {}",
                if *allowed { "allowed" } else { "refused" }
            );
        }
    }

    #[test]
    fn allowed_networks_exempt_and_refusals_name_no_address() {
        let allowed = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(allowed.refusal("127.0.0.1".parse().unwrap()).is_none());
        assert!(allowed.refusal("::ffff:127.0.0.1".parse().unwrap()).is_none());
        assert_eq!(allowed.refusal("10.0.0.1".parse().unwrap()).as_deref(), Some(REFUSED));
    }

    #[test]
    fn literals_in_every_form_are_found() {
        for (host, ip) in [
            ("127.0.0.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
        ] {
            assert_eq!(literal(host), Some(ip.parse().unwrap()), "{host}");
        }
        assert_eq!(literal("smtp.example.com"), None);
    }

    #[tokio::test]
    async fn resolve_refuses_literals_and_returns_the_checked_address() {
        let g = Guard::default();
        assert_eq!(g.resolve("2130706433", 25).await, Err(Refusal::NotPublic));
        assert_eq!(g.resolve("[::1]", 25).await, Err(Refusal::NotPublic));
        assert_eq!(g.resolve("8.8.8.8", 25).await, Ok(vec!["8.8.8.8:25".parse().unwrap()]));
        let loopback_ok = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(loopback_ok.resolve("0x7f000001", 2525).await, Ok(vec!["127.0.0.1:2525".parse().unwrap()]));
    }
}
