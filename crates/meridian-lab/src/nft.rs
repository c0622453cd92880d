//! Blackholes with nftables: the lab owns one table, `inet meridian_lab`, and rewrites it whole
//! (atomically, one `nft -f -` transaction) whenever the set of blackholed addresses changes.
//! Packets to a blackholed `ip:port` are dropped in the output hook, which on loopback is where
//! every lab packet passes: new connections hang in SYN retries and established ones stall, so
//! peers see timeouts, not refusals.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use crate::LabError;

/// The lab's nftables table (family `inet`).
pub const TABLE: &str = "meridian_lab";

/// Service endpoint ports of the lab (instances 1 to 9).
pub const ENDPOINT_PORTS: &str = "9000-9008";

/// What a blackhole drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hole {
    /// TCP packets to this `ip:port` (a listener).
    To(SocketAddr),
    /// Every packet from this address (a process that sends from its own source address).
    From(IpAddr),
}

impl std::fmt::Display for Hole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hole::To(a) => write!(f, "{a}"),
            Hole::From(ip) => write!(f, "from {ip}"),
        }
    }
}

/// The nftables program for a set of blackholes and the regions (loopback octets) whose
/// service endpoints only their own region may reach (nothing: just remove the table).
pub fn ruleset(dropped: &BTreeSet<Hole>, isolated: &[u8]) -> String {
    // "add table" then "delete table" makes the delete succeed whether or not it existed.
    let mut s = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
    if dropped.is_empty() && isolated.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "table inet {TABLE} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n"
    ));
    for h in dropped {
        match h {
            Hole::To(a) => {
                let family = if a.is_ipv4() { "ip" } else { "ip6" };
                s.push_str(&format!("    {family} daddr {} tcp dport {} drop\n", a.ip(), a.port()));
            }
            Hole::From(ip) => {
                let family = if ip.is_ipv4() { "ip" } else { "ip6" };
                s.push_str(&format!("    {family} saddr {ip} drop\n"));
            }
        }
    }
    for n in isolated {
        // Region isolation: only sources in 127.0.N.0/24 (the region's gateway, its lab curl
        // clients) reach the region's service endpoints.
        s.push_str(&format!(
            "    ip daddr 127.0.{n}.0/24 tcp dport {ENDPOINT_PORTS} ip saddr != 127.0.{n}.0/24 drop\n"
        ));
    }
    s.push_str("  }\n}\n");
    s
}

/// Replaces the lab's table with one dropping `dropped` and isolating the `isolated` regions
/// (neither: the table is deleted).
pub fn apply(dropped: &BTreeSet<Hole>, isolated: &[u8]) -> Result<(), LabError> {
    run_script(&ruleset(dropped, isolated))
}

/// Deletes the lab's table if it exists.
pub fn reset() -> Result<(), LabError> {
    apply(&BTreeSet::new(), &[])
}

/// Whether the lab's table exists now.
pub fn table_exists() -> Result<bool, LabError> {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map_err(|e| LabError::Nft(format!("cannot run `nft` ({e}); install the nftables package")))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == format!("table inet {TABLE}")))
}

fn run_script(script: &str) -> Result<(), LabError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            LabError::Nft(format!("cannot run `nft` ({e}); install the nftables package (and run as root)"))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| LabError::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| LabError::Nft(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Nft(format!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_drops_each_destination() {
        let set: BTreeSet<Hole> =
            [Hole::To("127.0.2.12:9000".parse().unwrap()), Hole::From("127.0.1.240".parse().unwrap())].into();
        let s = ruleset(&set, &[]);
        assert!(s.contains("ip daddr 127.0.2.12 tcp dport 9000 drop"), "{s}");
        assert!(s.contains("ip saddr 127.0.1.240 drop"), "{s}");
        assert!(s.starts_with("add table inet meridian_lab\ndelete table inet meridian_lab\n"));
        assert!(!ruleset(&BTreeSet::new(), &[]).contains("chain"));
        let s = ruleset(&BTreeSet::new(), &[3]);
        assert!(s.contains("ip daddr 127.0.3.0/24 tcp dport 9000-9008 ip saddr != 127.0.3.0/24 drop"), "{s}");
    }
}
