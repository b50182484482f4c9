//! The address guard: webhook URLs may not reach the instance's own network. Names are
//! resolved once, every address is checked, and the connection goes only to a checked
//! address (reqwest connects to what this resolver returns; there is no second lookup).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::config::Network;

/// Why an address may not be contacted, or None when it may.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if v6.to_ipv4_mapped().is_some() {
                return Some("an IPv4-mapped IPv6 address");
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("a unique-local (private) address")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 embeds an IPv4 address; judge that one.
                let v4 = Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
                v4_reason(v4)
            } else if seg[0] == 0x2002 {
                let v4 = Ipv4Addr::new((seg[1] >> 8) as u8, seg[1] as u8, (seg[2] >> 8) as u8, seg[2] as u8);
                v4_reason(v4)
            } else {
                None
            }
        }
    }
}

fn v4_reason(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if v4.is_private() {
        Some("a private address")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a carrier-grade NAT address")
    } else if o[0] == 0 || v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
        Some("not a unicast address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol address")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("a benchmarking address")
    } else {
        None
    }
}

#[derive(Clone, Debug, Default)]
pub struct Guard {
    allowed: Vec<Network>,
}

impl Guard {
    pub fn new(allowed: Vec<Network>) -> Self {
        Self { allowed }
    }

    /// None when `ip` may be contacted, else why not.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        let reason = forbidden_reason(ip)?;
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return None;
        }
        Some(format!("refused to connect to {ip}: {reason} (allow it with SENDMUX_WEBHOOK_ALLOWED_NETWORKS)"))
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
            let mut refusals = Vec::new();
            let permitted: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match guard.refusal(a.ip()) {
                    None => true,
                    Some(r) => {
                        refusals.push(r);
                        false
                    }
                })
                .collect();
            if permitted.is_empty() {
                let why = refusals.first().cloned().unwrap_or_else(|| format!("{host} has no address"));
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

    #[test]
    fn private_and_special_addresses_are_refused() {
        let g = Guard::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            assert!(g.refusal(bad.parse().unwrap()).is_some(), "{bad} should be refused");
        }
        for good in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "100.128.0.1"] {
            assert!(g.refusal(good.parse().unwrap()).is_none(), "{good} should pass");
        }
        let allowed = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(allowed.refusal("127.0.0.1".parse().unwrap()).is_none());
        assert!(allowed.refusal("10.0.0.1".parse().unwrap()).is_some());
    }
}
