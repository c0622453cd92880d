//! The content of each kind: how it is validated, hashed and turned into a push.

use meridian_model::{ValidConfig, validate_global};
use meridian_sync::protocol::DrainsContent;
use sha2::{Digest, Sha256};

/// A drain switch target: a whole region, or one service in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Region(String),
    Service { service: String, region: String },
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

impl Target {
    /// `REGION` or `SERVICE@REGION`.
    pub fn parse(s: &str) -> Option<Target> {
        match s.split_once('@') {
            None if is_name(s) => Some(Target::Region(s.to_string())),
            Some((service, region)) if is_name(service) && is_name(region) => {
                Some(Target::Service { service: service.to_string(), region: region.to_string() })
            }
            _ => None,
        }
    }

    /// Whether the config names this region (and service).
    pub fn exists_in(&self, config: &ValidConfig) -> bool {
        let c = config.config();
        let region_ok = |r: &str| c.regions.iter().any(|x| x.name == r);
        match self {
            Target::Region(r) => region_ok(r),
            Target::Service { service, region } => {
                region_ok(region) && c.services.iter().any(|s| &s.name == service)
            }
        }
    }
}

/// Puts a drains content in canonical form: sorted, deduplicated, no empty service lists.
pub fn normalize_drains(mut d: DrainsContent) -> DrainsContent {
    d.regions.sort();
    d.regions.dedup();
    for v in d.services.values_mut() {
        v.sort();
        v.dedup();
    }
    d.services.retain(|_, v| !v.is_empty());
    d
}

/// Sets or clears a switch; returns whether anything changed.
pub fn set_drain(d: &mut DrainsContent, target: &Target, drained: bool) -> bool {
    let before = d.clone();
    match target {
        Target::Region(r) => {
            d.regions.retain(|x| x != r);
            if drained {
                d.regions.push(r.clone());
            }
        }
        Target::Service { service, region } => {
            let list = d.services.entry(region.clone()).or_default();
            list.retain(|x| x != service);
            if drained {
                list.push(service.clone());
            }
        }
    }
    *d = normalize_drains(std::mem::take(d));
    *d != normalize_drains(before)
}

/// Whether a target is drained.
pub fn is_drained(d: &DrainsContent, target: &Target) -> bool {
    match target {
        Target::Region(r) => d.regions.contains(r),
        Target::Service { service, region } => d.services.get(region).is_some_and(|v| v.contains(service)),
    }
}

/// Canonical JSON and its SHA-256 (hex) of a drains content.
pub fn drains_canonical(d: &DrainsContent) -> (String, String) {
    let json = serde_json::to_string(&normalize_drains(d.clone())).unwrap_or_else(|_| "{}".into());
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    (json, hash)
}

/// Re-validates a stored config content (canonical JSON).
pub fn config_from_canonical(json: &str) -> Result<ValidConfig, String> {
    let c = serde_json::from_str(json).map_err(|e| e.to_string())?;
    validate_global(c).map_err(|e| e.to_string())
}

/// Re-parses a stored drains content.
pub fn drains_from_canonical(json: &str) -> Result<DrainsContent, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_switches() {
        assert_eq!(Target::parse("eu-west-1"), Some(Target::Region("eu-west-1".into())));
        let t = Target::parse("orders@eu-west-1").unwrap();
        assert!(
            Target::parse("a@").is_none() && Target::parse("").is_none() && Target::parse("a b").is_none()
        );
        let mut d = DrainsContent::default();
        assert!(set_drain(&mut d, &t, true));
        assert!(!set_drain(&mut d, &t, true));
        assert!(is_drained(&d, &t));
        let (_, h1) = drains_canonical(&d);
        assert!(set_drain(&mut d, &t, false));
        assert!(d.services.is_empty());
        assert_ne!(drains_canonical(&d).1, h1);
    }
}
