//! What the policies ask about health, and the checkers' quorum behind it.

use std::sync::Arc;

use meridian_health::{Quorum, QuorumConfig};
use meridian_model::ValidConfig;

/// Something whose health a policy asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthTarget<'a> {
    /// A region (its gateway tier), for members that name a region.
    Region(&'a str),
    /// A member given by literal values: record set name and the member's index in its policy.
    Member { record_set: &'a str, member: usize },
    /// A member whose health check is named in the config (`health_check`, `health_checks`).
    Check(&'a str),
}

/// The director's view of health. Policies call it per query, so it must be cheap.
pub trait HealthView: Send + Sync {
    fn healthy(&self, target: HealthTarget<'_>) -> bool;

    /// Whether any routing control is off now (the policies skip asking per member when not).
    fn controls_active(&self) -> bool {
        false
    }

    /// The routing control (off) that takes `region` out of record set `record_set`
    /// (lowercase, absolute), if any.
    fn switched_off(&self, _record_set: &str, _region: &str) -> Option<String> {
        None
    }
}

/// Every target healthy (tests, and `explain` from a file without a running director).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllHealthy;

impl HealthView for AllHealthy {
    fn healthy(&self, _: HealthTarget<'_>) -> bool {
        true
    }
}

/// The checkers' quorum as the policies see it: a member with a configured check is healthy
/// when that check is; a region member otherwise when the check named like the region is (no
/// such check: healthy); a member given by values without a check is healthy.
#[derive(Clone)]
pub struct QuorumHealth(pub Arc<Quorum>);

impl QuorumHealth {
    /// Follows a new config version's `dns.health`.
    pub fn configure(&self, config: &ValidConfig) {
        let h = config.config().dns.as_ref().and_then(|d| d.health.as_ref());
        self.0.configure(QuorumConfig::from_dns(h));
    }
}

impl HealthView for QuorumHealth {
    fn healthy(&self, target: HealthTarget<'_>) -> bool {
        match target {
            HealthTarget::Region(c) | HealthTarget::Check(c) => self.0.healthy(c).unwrap_or(true),
            HealthTarget::Member { .. } => true,
        }
    }
}
