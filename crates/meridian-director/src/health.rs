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
}

/// The director's view of health. Policies call it per query, so it must be cheap.
pub trait HealthView: Send + Sync {
    fn healthy(&self, target: HealthTarget<'_>) -> bool;
}

/// Every target healthy (tests, and `explain` from a file without a running director).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllHealthy;

impl HealthView for AllHealthy {
    fn healthy(&self, _: HealthTarget<'_>) -> bool {
        true
    }
}

/// The checkers' quorum as the policies see it: a region is healthy when the check named
/// like it is (no such check: healthy). Members given by values have no check yet: healthy.
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
            HealthTarget::Region(r) => self.0.healthy(r).unwrap_or(true),
            HealthTarget::Member { .. } => true,
        }
    }
}
