//! The rule that turns probe results into a verdict: `unhealthy_threshold` failures in a row
//! take an endpoint out, `healthy_threshold` passes in a row bring it back.

use meridian_model::HealthCheck;

use crate::endpoint::ActiveState;

/// The consecutive probe results of one endpoint, kept by its checker task (one writer, so no
/// atomics needed).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeStreak {
    passes: u32,
    failures: u32,
}

/// Thresholds from the config, at least 1 each.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub healthy: u32,
    pub unhealthy: u32,
}

impl From<&HealthCheck> for Thresholds {
    fn from(c: &HealthCheck) -> Self {
        Thresholds { healthy: c.healthy_threshold.max(1), unhealthy: c.unhealthy_threshold.max(1) }
    }
}

impl ProbeStreak {
    /// Counts one probe result for an endpoint currently judged `current`; returns the new
    /// verdict when this result changes it.
    pub fn observe(&mut self, passed: bool, current: ActiveState, t: Thresholds) -> Option<ActiveState> {
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
        }
        match current {
            ActiveState::Unhealthy if self.passes >= t.healthy => Some(ActiveState::Healthy),
            ActiveState::Healthy | ActiveState::Unchecked if self.failures >= t.unhealthy => {
                Some(ActiveState::Unhealthy)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_need_consecutive_results() {
        let t = Thresholds { healthy: 2, unhealthy: 3 };
        let mut s = ProbeStreak::default();
        let h = ActiveState::Healthy;
        assert_eq!(s.observe(false, h, t), None);
        assert_eq!(s.observe(false, h, t), None);
        // A pass in between starts the count again.
        assert_eq!(s.observe(true, h, t), None);
        assert_eq!(s.observe(false, h, t), None);
        assert_eq!(s.observe(false, h, t), None);
        assert_eq!(s.observe(false, h, t), Some(ActiveState::Unhealthy));
        let u = ActiveState::Unhealthy;
        assert_eq!(s.observe(false, u, t), None);
        assert_eq!(s.observe(true, u, t), None);
        assert_eq!(s.observe(false, u, t), None);
        assert_eq!(s.observe(true, u, t), None);
        assert_eq!(s.observe(true, u, t), Some(ActiveState::Healthy));
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let t = Thresholds::from(&HealthCheck {
            healthy_threshold: 0,
            unhealthy_threshold: 0,
            ..Default::default()
        });
        let mut s = ProbeStreak::default();
        assert_eq!(s.observe(false, ActiveState::Healthy, t), Some(ActiveState::Unhealthy));
        assert_eq!(s.observe(true, ActiveState::Unhealthy, t), Some(ActiveState::Healthy));
    }
}
