//! Trusted proxies: the peers whose forwarding headers are believed.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;
use meridian_model::ConfigError;

use super::X_FORWARDED_FOR;

/// Addresses (CIDRs) whose `X-Forwarded-For`/`Forwarded` headers are believed
/// (`bootstrap.trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) and single addresses (`192.0.2.7`, `::1`).
    /// Errors name `trusted_proxies[i]`.
    pub fn parse(list: &[String]) -> Result<Self, Vec<ConfigError>> {
        let mut nets = Vec::with_capacity(list.len());
        let mut errs = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let s = s.trim();
            let net = s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
            match net {
                // Canonical form so that `contains` compares like with like.
                Some(n) => nets.push(n.trunc()),
                None => errs.push(ConfigError::new(
                    format!("trusted_proxies[{i}]"),
                    format!("invalid address or CIDR {s:?}"),
                )),
            }
        }
        if errs.is_empty() { Ok(TrustedProxies { nets }) } else { Err(errs) }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client behind a trusted `peer`: the rightmost untrusted address of
    /// `X-Forwarded-For`, the leftmost address if all are trusted. An entry that is not an
    /// address stops the walk; the last trusted hop is then the best-known client.
    pub(super) fn client_from_xff(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let mut last = peer;
        for v in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(s) = v.to_str() else { return last };
            for part in s.rsplit(',') {
                let Some(ip) = parse_hop(part.trim()) else { return last };
                if !self.contains(ip) {
                    return ip;
                }
                last = ip;
            }
        }
        last
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let host = match s.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => s.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}
