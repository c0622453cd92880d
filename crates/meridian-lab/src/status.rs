//! What `meridian lab status` shows: the JSON the control API answers, and its table form.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The whole lab, now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabStatus {
    /// `ip:port` of the lab control API.
    pub control: String,
    /// The run directory.
    pub dir: String,
    /// Regions are isolated: a region's service endpoints accept only its own addresses.
    pub isolated: bool,
    pub regions: Vec<RegionStatus>,
    pub services: Vec<ServiceStatus>,
    /// The control plane, the DNS director and the health checkers.
    #[serde(default)]
    pub components: Vec<ComponentStatus>,
}

/// A process of the lab that is neither a gateway nor a service instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// `control`, `director`, `chk-<region>-1`: also its fault target.
    pub name: String,
    /// What it is and where it listens.
    pub what: String,
    /// `up`, `killed`, `stopped` or `blackholed`.
    pub state: String,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegionStatus {
    pub name: String,
    /// `up`, `killed`, `stopped` or `blackholed` (of its gateway).
    pub state: String,
    pub gateways: Vec<GatewayStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub id: String,
    /// `http://ip:port` of the public listener.
    pub public_url: String,
    /// `http://ip:port` of the admin endpoints.
    pub admin_url: String,
    /// `ip:port` of the mutual-TLS peer listener.
    pub peer_address: String,
    pub state: String,
    pub pid: Option<u32>,
    /// Live: the gateway's `/-/ready` answered 200.
    pub ready: bool,
    /// The `/-/ready` answer or the error reaching it.
    pub ready_detail: String,
    /// The gateway's `/-/status` JSON, when it answers one.
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Path prefix routed to it.
    pub path: String,
    /// Per region, in the lab's region order.
    pub regions: Vec<ServiceRegion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRegion {
    pub region: String,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Instance name, as its answers report it (`orders-us-east-1-1`).
    pub instance: String,
    /// The endpoint in the global config (the relay).
    pub endpoint: String,
    /// Where the demo process listens behind the relay.
    pub backend: String,
    /// `up`, `killed`, `stopped` or `blackholed`.
    pub state: String,
    pub pid: Option<u32>,
    /// Delay the relay adds to every chunk the instance sends, milliseconds.
    pub delay_ms: u64,
    /// Chunks the relay has held back so far.
    pub delayed_chunks: u64,
}

impl LabStatus {
    pub fn region(&self, name: &str) -> Option<&RegionStatus> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The instances of `service` in `region`.
    pub fn instances(&self, service: &str, region: &str) -> Option<&[InstanceStatus]> {
        let s = self.services.iter().find(|s| s.name == service)?;
        s.regions.iter().find(|r| r.region == region).map(|r| r.instances.as_slice())
    }

    /// The human form of `meridian lab status`.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let w = &mut t;
        let _ = writeln!(
            w,
            "{:<16} {:<11} {:<24} {:<24} {:<16} READY",
            "REGION", "STATE", "GATEWAY", "ADMIN", "PEER"
        );
        for r in &self.regions {
            for g in &r.gateways {
                let ready =
                    if g.ready { "ready".to_string() } else { format!("not ready ({})", g.ready_detail) };
                let _ = writeln!(
                    w,
                    "{:<16} {:<11} {:<24} {:<24} {:<16} {ready}",
                    r.name, g.state, g.public_url, g.admin_url, g.peer_address
                );
            }
        }
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "{:<12} {:<12} {:<16} {:<20} {:<11} {:<10} PID",
            "SERVICE", "PATH", "REGION", "ENDPOINT", "STATE", "DELAY"
        );
        for s in &self.services {
            for r in &s.regions {
                for i in &r.instances {
                    let pid = i.pid.map_or("-".to_string(), |p| p.to_string());
                    let delay = if i.delay_ms > 0 { format!("{}ms", i.delay_ms) } else { "-".into() };
                    let _ = writeln!(
                        w,
                        "{:<12} {:<12} {:<16} {:<20} {:<11} {:<10} {pid}",
                        s.name, s.path, r.region, i.endpoint, i.state, delay
                    );
                }
            }
        }
        if !self.components.is_empty() {
            let _ = writeln!(w);
            let _ = writeln!(w, "{:<24} {:<11} {:<8} WHAT", "COMPONENT", "STATE", "PID");
            for c in &self.components {
                let pid = c.pid.map_or("-".to_string(), |p| p.to_string());
                let _ = writeln!(w, "{:<24} {:<11} {:<8} {}", c.name, c.state, pid, c.what);
            }
        }
        let _ = writeln!(w, "\nlab control API http://{}   files {}", self.control, self.dir);
        if self.isolated {
            let _ =
                writeln!(w, "regions isolated: a region's service endpoints accept only its own addresses");
        }
        t
    }
}
