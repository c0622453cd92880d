//! The lab config: which regions run on which loopback addresses, and which demo services run
//! in every region. Strict YAML (unknown keys are errors); [`LabConfig::default`] is the
//! built-in lab that `meridian up` runs without `-f` (written out in
//! `examples/lab/default.yaml`).
//!
//! Addresses follow from a region's loopback octet N and a service's position k (1-based):
//!
//! | what | address |
//! |---|---|
//! | gateway public listener | 127.0.N.1:8080 |
//! | gateway admin | 127.0.N.1:9901 |
//! | gateway peer listener (mutual TLS) | 127.0.N.1:9443 |
//! | service k, instance i (1-based): the endpoint in the config (the lab's relay) | 127.0.N.(10+k):(8999+i) |
//! | the demo process behind that relay | 127.0.N.(10+k):(18999+i) |
//! | `meridian lab curl` client source address | 127.0.N.250 |

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::LabError;

/// A whole lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabConfig {
    /// Regions, each on its own loopback addresses 127.0.N.x.
    pub regions: Vec<LabRegion>,
    /// Demo services; every service runs in every region.
    pub services: Vec<LabService>,
}

/// One region of the lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabRegion {
    /// Region name, e.g. `eu-west-1`.
    pub name: String,
    /// The third octet N of the region's loopback addresses 127.0.N.x, 1 to 254, unique.
    pub octet: u8,
    /// Where the region pretends to be (decimal degrees); orders failover by distance when the
    /// built-in latency table does not know a pair of regions.
    pub location: LabLocation,
}

/// A point on the globe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabLocation {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

/// A demo service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabService {
    /// Service name, e.g. `orders`.
    pub name: String,
    /// Path prefix routed to the service, e.g. `/orders`.
    pub path: String,
    /// Instances per region, 1 to 9. Default 1.
    #[serde(default = "one")]
    pub instances: u8,
}

fn one() -> u8 {
    1
}

/// The most services a lab may have: service k uses host 10+k, and .250 is the client address.
pub const MAX_SERVICES: usize = 200;

impl Default for LabConfig {
    fn default() -> Self {
        let region = |name: &str, octet, lat, lon| LabRegion {
            name: name.into(),
            octet,
            location: LabLocation { lat, lon },
        };
        let service = |name: &str| LabService { name: name.into(), path: format!("/{name}"), instances: 1 };
        LabConfig {
            regions: vec![
                region("us-east-1", 1, 38.9, -77.4),
                region("eu-west-1", 2, 53.3, -6.3),
                region("ap-southeast-2", 3, -33.9, 151.2),
            ],
            services: vec![service("orders"), service("users"), service("catalog")],
        }
    }
}

impl LabConfig {
    /// Parses and checks a lab config document.
    pub fn parse(yaml: &str) -> Result<LabConfig, LabError> {
        let lab: LabConfig = serde_saphyr::from_str(yaml).map_err(|e| LabError::Config(e.to_string()))?;
        lab.check()?;
        Ok(lab)
    }

    /// The config as YAML (as the run directory's `lab.yaml` holds it).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }

    /// Checks the rules the types cannot express; every problem is listed.
    pub fn check(&self) -> Result<(), LabError> {
        let mut errs = Vec::new();
        if self.regions.is_empty() {
            errs.push("regions: at least one region is needed".to_string());
        }
        for (i, r) in self.regions.iter().enumerate() {
            if !is_name(&r.name) {
                errs.push(format!("regions[{i}].name: {:?} must be lowercase letters, digits and -", r.name));
            }
            if r.octet == 0 || r.octet == 255 {
                errs.push(format!("regions[{i}].octet: {} must be 1 to 254", r.octet));
            }
            if self.regions[..i].iter().any(|o| o.name == r.name) {
                errs.push(format!("regions[{i}].name: duplicate region {:?}", r.name));
            }
            if self.regions[..i].iter().any(|o| o.octet == r.octet) {
                errs.push(format!("regions[{i}].octet: {} is already used", r.octet));
            }
            if !(-90.0..=90.0).contains(&r.location.lat) || !(-180.0..=180.0).contains(&r.location.lon) {
                errs.push(format!("regions[{i}].location: out of range"));
            }
        }
        if self.services.len() > MAX_SERVICES {
            errs.push(format!("services: at most {MAX_SERVICES} services"));
        }
        for (i, s) in self.services.iter().enumerate() {
            if !is_name(&s.name) {
                errs.push(format!(
                    "services[{i}].name: {:?} must be lowercase letters, digits and -",
                    s.name
                ));
            }
            if self.services[..i].iter().any(|o| o.name == s.name) {
                errs.push(format!("services[{i}].name: duplicate service {:?}", s.name));
            }
            if !s.path.starts_with('/') || s.path.len() < 2 {
                errs.push(format!("services[{i}].path: {:?} must start with / and name a prefix", s.path));
            }
            if !(1..=9).contains(&s.instances) {
                errs.push(format!("services[{i}].instances: {} must be 1 to 9", s.instances));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(LabError::Config(errs.join("\n"))) }
    }

    pub fn region(&self, name: &str) -> Option<&LabRegion> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// Position (0-based) of a service.
    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl LabRegion {
    /// The gateway's address: 127.0.N.1.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.octet, 1)
    }
    pub fn public(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.gateway_ip(), 8080))
    }
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.gateway_ip(), 9901))
    }
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.gateway_ip(), 9443))
    }
    /// Where `meridian lab curl` binds its client socket: 127.0.N.250.
    pub fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.octet, 250)
    }
    /// Node id of the region's gateway.
    pub fn gateway_id(&self) -> String {
        format!("gw-{}-1", self.name)
    }
    /// Address of service `k` (0-based) in this region: 127.0.N.(11+k).
    pub fn service_ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.octet, 11 + k as u8)
    }
    /// The endpoint of instance `i` (0-based) of service `k` (0-based): the relay's address.
    pub fn endpoint(&self, k: usize, i: u8) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.service_ip(k), 9000 + u16::from(i)))
    }
    /// Where the demo process behind that relay listens.
    pub fn backend(&self, k: usize, i: u8) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.service_ip(k), 19000 + u16::from(i)))
    }
}

/// What a fault applies to: a whole region, or one service in one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The region's gateway(s) and all its service instances.
    Region(String),
    /// One service's instances in one region.
    Service { service: String, region: String },
    /// The region's gateway alone, named by its node id (`gw-<region>-1`).
    Gateway(String),
    /// The lab's control plane instance (`control`).
    ControlPlane,
    /// The lab's DNS director (`director`).
    Director,
    /// The region's health checker, named by its id (`chk-<region>-1`).
    Checker(String),
}

impl Target {
    /// Parses `REGION`, `SERVICE@REGION`, a gateway id (`gw-REGION-1`) or `control`.
    pub fn parse(s: &str, lab: &LabConfig) -> Result<Target, LabError> {
        if s == "control" {
            return Ok(Target::ControlPlane);
        }
        if s == "director" {
            return Ok(Target::Director);
        }
        if let Some(r) = lab.regions.iter().find(|r| format!("chk-{}-1", r.name) == s) {
            return Ok(Target::Checker(r.name.clone()));
        }
        if let Some(r) = lab.regions.iter().find(|r| r.gateway_id() == s) {
            return Ok(Target::Gateway(r.name.clone()));
        }
        let target = match s.split_once('@') {
            Some((service, region)) => {
                if lab.service_index(service).is_none() {
                    return Err(LabError::Fault(format!("unknown service {service:?} in target {s:?}")));
                }
                Target::Service { service: service.into(), region: region.into() }
            }
            None => Target::Region(s.into()),
        };
        let region = match &target {
            Target::Region(r)
            | Target::Service { region: r, .. }
            | Target::Gateway(r)
            | Target::Checker(r) => r,
            Target::ControlPlane | Target::Director => return Ok(target),
        };
        if lab.region(region).is_none() {
            let known: Vec<&str> = lab.regions.iter().map(|r| r.name.as_str()).collect();
            return Err(LabError::Fault(format!(
                "unknown region {region:?} (regions: {})",
                known.join(", ")
            )));
        }
        Ok(target)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Region(r) => f.write_str(r),
            Target::Service { service, region } => write!(f, "{service}@{region}"),
            Target::Gateway(r) => write!(f, "gw-{r}-1"),
            Target::ControlPlane => f.write_str("control"),
            Target::Director => f.write_str("director"),
            Target::Checker(r) => write!(f, "chk-{r}-1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_yaml_and_addresses_follow_the_octet() {
        let lab = LabConfig::default();
        lab.check().unwrap();
        assert_eq!(LabConfig::parse(&lab.to_yaml()).unwrap(), lab);
        let eu = lab.region("eu-west-1").unwrap();
        assert_eq!(eu.public().to_string(), "127.0.2.1:8080");
        assert_eq!(eu.endpoint(1, 0).to_string(), "127.0.2.12:9000");
        assert_eq!(eu.backend(1, 1).to_string(), "127.0.2.12:19001");
    }

    #[test]
    fn the_example_is_the_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/lab/default.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(LabConfig::parse(&text).unwrap(), LabConfig::default());
    }

    #[test]
    fn strict_and_checked() {
        assert!(LabConfig::parse("regions: []\nservices: []\ncolour: blue\n").is_err());
        let bad = "regions:\n  - {name: a, octet: 1, location: {lat: 0, lon: 0}}\n  - {name: a, octet: 1, location: {lat: 0, lon: 0}}\n\
                   services:\n  - {name: s, path: x, instances: 0}\n";
        let e = LabConfig::parse(bad).unwrap_err().to_string();
        for part in ["regions[1].name", "regions[1].octet", "services[0].path", "services[0].instances"] {
            assert!(e.contains(part), "{e}");
        }
    }

    #[test]
    fn targets() {
        let lab = LabConfig::default();
        assert_eq!(Target::parse("eu-west-1", &lab).unwrap(), Target::Region("eu-west-1".into()));
        assert_eq!(Target::parse("users@eu-west-1", &lab).unwrap().to_string(), "users@eu-west-1");
        assert!(Target::parse("nope", &lab).is_err());
        assert!(Target::parse("nope@eu-west-1", &lab).is_err());
        assert!(Target::parse("users@mars", &lab).is_err());
        assert_eq!(Target::parse("control", &lab).unwrap(), Target::ControlPlane);
        let gw = Target::parse("gw-eu-west-1-1", &lab).unwrap();
        assert_eq!(gw, Target::Gateway("eu-west-1".into()));
        assert_eq!(gw.to_string(), "gw-eu-west-1-1");
        assert_eq!(Target::parse("director", &lab).unwrap(), Target::Director);
        let chk = Target::parse("chk-us-east-1-1", &lab).unwrap();
        assert_eq!(chk, Target::Checker("us-east-1".into()));
        assert_eq!(chk.to_string(), "chk-us-east-1-1");
    }
}
