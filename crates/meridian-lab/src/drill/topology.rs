//! What a drill probes: every region's gateway (public and admin addresses) and every service
//! with a path that routes to it. From a running lab, or from a file for a real deployment.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::config::LabConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub regions: Vec<DrillRegion>,
    pub services: Vec<DrillService>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillRegion {
    pub name: String,
    /// The region's gateway, `ip:port` (client traffic).
    pub gateway: SocketAddr,
    /// The gateway's admin address (`/-/health/services/…`, `/-/drains/…`).
    pub admin: SocketAddr,
    /// Probes are sent from this source address (a client "in" the region). Default: any.
    #[serde(default)]
    pub client_source: Option<IpAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DrillService {
    pub name: String,
    /// A path routed to the service (probed with GET).
    pub path: String,
}

impl Topology {
    /// The lab's topology.
    pub fn from_lab(lab: &LabConfig) -> Topology {
        Topology {
            regions: lab
                .regions
                .iter()
                .map(|r| DrillRegion {
                    name: r.name.clone(),
                    gateway: r.public(),
                    admin: r.admin(),
                    client_source: Some(IpAddr::V4(r.client_ip())),
                })
                .collect(),
            services: lab
                .services
                .iter()
                .map(|s| DrillService { name: s.name.clone(), path: s.path.clone() })
                .collect(),
        }
    }

    /// A topology file (YAML), for drills against a real deployment by drain switch.
    pub fn parse(yaml: &str) -> Result<Topology, LabError> {
        let t: Topology =
            serde_saphyr::from_str(yaml).map_err(|e| LabError::Config(format!("drill topology: {e}")))?;
        if t.regions.len() < 2 {
            return Err(LabError::Config("drill topology: at least two regions are needed".into()));
        }
        if t.services.is_empty() {
            return Err(LabError::Config("drill topology: no services".into()));
        }
        Ok(t)
    }
}
