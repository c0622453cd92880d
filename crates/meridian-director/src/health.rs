//! What the policies ask about health.

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

/// Every target healthy. This is the director's health view until the checkers (next step of
/// issue 5) report observations; the policies' fail-open logic is already in place for them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllHealthy;

impl HealthView for AllHealthy {
    fn healthy(&self, _: HealthTarget<'_>) -> bool {
        true
    }
}
