//! Region facts the data plane needs: the failover order of a service and drain switches.

use std::collections::{BTreeMap, BTreeSet};

use arc_swap::ArcSwap;
use meridian_model::{Location, Region, Service};
use serde::Serialize;

/// The regions `svc` fails over to from `own`, best first: the service's priority list if it
/// has one, else every other region nearest first (configured latency, then distance between
/// locations, then config order). Only regions in `allowed_regions` (when set) and with a peer
/// address are kept; `own` never is.
pub fn failover_order(own: &str, svc: &Service, regions: &[Region]) -> Vec<String> {
    let f = &svc.failover;
    if !f.enabled {
        return Vec::new();
    }
    let allowed = |r: &str| f.allowed_regions.is_empty() || f.allowed_regions.iter().any(|a| a == r);
    let has_peer = |r: &str| regions.iter().any(|x| x.name == r && x.peer_address.is_some());
    let candidates: Vec<&str> = if f.priority.is_empty() {
        let me = regions.iter().find(|r| r.name == own);
        let mut others: Vec<(usize, &Region)> =
            regions.iter().enumerate().filter(|(_, r)| r.name != own).collect();
        others.sort_by(|(ia, a), (ib, b)| {
            let key = |r: &Region| -> (u64, u64) {
                let lat = me.and_then(|m| m.latency_ms.get(&r.name)).map_or(u64::MAX, |&l| u64::from(l));
                let dist = match (me.and_then(|m| m.location), r.location) {
                    (Some(a), Some(b)) => distance_km(a, b) as u64,
                    _ => u64::MAX,
                };
                (lat, dist)
            };
            key(a).cmp(&key(b)).then(ia.cmp(ib))
        });
        others.into_iter().map(|(_, r)| r.name.as_str()).collect()
    } else {
        f.priority.iter().map(String::as_str).collect()
    };
    candidates.into_iter().filter(|r| *r != own && allowed(r) && has_peer(r)).map(str::to_string).collect()
}

/// Whether `svc` may be served from `region` at all (data residency).
pub fn allowed_in(svc: &Service, region: &str) -> bool {
    svc.failover.allowed_regions.is_empty() || svc.failover.allowed_regions.iter().any(|a| a == region)
}

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: Location, b: Location) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Drain switches: a drained region takes no new traffic (its gateways send every service to
/// peers and refuse peer traffic); a drained service@region likewise for one service.
#[derive(Default)]
pub struct Drains {
    set: ArcSwap<DrainSet>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DrainSet {
    pub regions: BTreeSet<String>,
    /// Drained services by region.
    pub services: BTreeMap<String, BTreeSet<String>>,
}

/// A drain target as written by operators: `REGION` or `SERVICE@REGION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainTarget {
    Region(String),
    Service { service: String, region: String },
}

impl DrainTarget {
    pub fn parse(s: &str) -> Result<DrainTarget, String> {
        let ok =
            |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match s.split_once('@') {
            Some((svc, region)) if ok(svc) && ok(region) => {
                Ok(DrainTarget::Service { service: svc.to_string(), region: region.to_string() })
            }
            None if ok(s) => Ok(DrainTarget::Region(s.to_string())),
            _ => Err(format!("invalid drain target {s:?}: expected REGION or SERVICE@REGION")),
        }
    }
}

impl std::fmt::Display for DrainTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainTarget::Region(r) => f.write_str(r),
            DrainTarget::Service { service, region } => write!(f, "{service}@{region}"),
        }
    }
}

impl Drains {
    #[inline]
    pub fn is_drained(&self, region: &str, service: &str) -> bool {
        let s = self.set.load();
        if s.regions.is_empty() && s.services.is_empty() {
            return false;
        }
        s.regions.contains(region) || s.services.get(region).is_some_and(|svcs| svcs.contains(service))
    }

    /// Sets or clears a drain switch; returns whether anything changed.
    pub fn set(&self, target: &DrainTarget, drained: bool) -> bool {
        let mut next = (**self.set.load()).clone();
        let changed = match (target, drained) {
            (DrainTarget::Region(r), true) => next.regions.insert(r.clone()),
            (DrainTarget::Region(r), false) => next.regions.remove(r),
            (DrainTarget::Service { service, region }, true) => {
                next.services.entry(region.clone()).or_default().insert(service.clone())
            }
            (DrainTarget::Service { service, region }, false) => {
                let removed = next.services.get_mut(region).is_some_and(|s| s.remove(service));
                next.services.retain(|_, s| !s.is_empty());
                removed
            }
        };
        if changed {
            tracing::info!(target = %target, drained, "drain switch changed");
            self.set.store(std::sync::Arc::new(next));
        }
        changed
    }

    /// Replaces every drain switch at once (a drains snapshot from the control plane).
    pub fn replace(&self, next: DrainSet) {
        if **self.set.load() != next {
            tracing::info!(regions = ?next.regions, services = ?next.services, "drain switches replaced");
        }
        self.set.store(std::sync::Arc::new(next));
    }

    pub fn snapshot(&self) -> DrainSet {
        (**self.set.load()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<Region> {
        let r = |name: &str, lat: f64, lon: f64| Region {
            name: name.into(),
            public_addresses: vec![],
            peer_address: Some("127.0.0.1:1".into()),
            location: Some(Location { lat, lon }),
            latency_ms: BTreeMap::new(),
        };
        vec![r("us-east-1", 38.9, -77.0), r("ap-southeast-2", -33.9, 151.2), r("eu-west-1", 53.3, -6.3)]
    }

    fn service(yaml: &str) -> Service {
        let doc = format!(
            "regions: [{{name: us-east-1}}, {{name: eu-west-1}}, {{name: ap-southeast-2}}]\nservices:\n  - name: s\n{yaml}"
        );
        meridian_model::parse_global(&doc).unwrap().config().services[0].clone()
    }

    #[test]
    fn nearest_first_without_a_priority_list() {
        let svc = service("");
        assert_eq!(failover_order("us-east-1", &svc, &regions()), ["eu-west-1", "ap-southeast-2"]);
    }

    #[test]
    fn configured_latency_beats_distance() {
        let mut rs = regions();
        rs[0].latency_ms.insert("ap-southeast-2".into(), 10);
        rs[0].latency_ms.insert("eu-west-1".into(), 80);
        assert_eq!(failover_order("us-east-1", &service(""), &rs), ["ap-southeast-2", "eu-west-1"]);
    }

    #[test]
    fn priority_and_residency_are_obeyed() {
        let svc = service("    failover: { priority: [ap-southeast-2, eu-west-1] }\n");
        assert_eq!(failover_order("us-east-1", &svc, &regions()), ["ap-southeast-2", "eu-west-1"]);
        let svc = service("    failover: { allowed_regions: [us-east-1, eu-west-1] }\n");
        assert_eq!(failover_order("us-east-1", &svc, &regions()), ["eu-west-1"]);
        assert!(!allowed_in(&svc, "ap-southeast-2"));
        let svc = service("    failover: { enabled: false }\n");
        assert!(failover_order("us-east-1", &svc, &regions()).is_empty());
    }

    #[test]
    fn drains_by_region_and_service() {
        let d = Drains::default();
        assert!(!d.is_drained("eu-west-1", "orders"));
        assert!(d.set(&DrainTarget::parse("orders@eu-west-1").unwrap(), true));
        assert!(d.is_drained("eu-west-1", "orders"));
        assert!(!d.is_drained("eu-west-1", "users"));
        assert!(d.set(&DrainTarget::parse("us-east-1").unwrap(), true));
        assert!(d.is_drained("us-east-1", "users"));
        assert!(d.set(&DrainTarget::parse("orders@eu-west-1").unwrap(), false));
        assert!(!d.is_drained("eu-west-1", "orders"));
        assert!(DrainTarget::parse("a@b@c").is_err());
        assert!(DrainTarget::parse("").is_err());
    }

    #[test]
    fn distances_are_plausible() {
        let d = distance_km(Location { lat: 38.9, lon: -77.0 }, Location { lat: 53.3, lon: -6.3 });
        assert!((5000.0..6000.0).contains(&d), "{d}");
    }
}
