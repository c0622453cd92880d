//! Semantic validation: every error names the path of the offending value.

use crate::bootstrap::Bootstrap;
use crate::global::GlobalConfig;
use crate::valid::ConfigError;

/// All problems in a global config.
pub fn global(c: &GlobalConfig) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let services: std::collections::HashSet<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    for (i, r) in c.routes.iter().enumerate() {
        if !services.contains(r.service.as_str()) {
            errs.push(ConfigError::new(format!("routes[{i}].service"), format!("unknown service {:?}", r.service)));
        }
    }
    errs
}

/// All problems in a bootstrap on its own.
pub fn bootstrap(_b: &Bootstrap) -> Vec<ConfigError> {
    Vec::new()
}

/// Problems of a bootstrap relative to the global config.
pub fn bootstrap_against(b: &Bootstrap, c: &GlobalConfig) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    if !c.regions.iter().any(|r| r.name == b.node.region) {
        errs.push(ConfigError::new("node.region", format!("unknown region {:?}", b.node.region)));
    }
    errs
}
