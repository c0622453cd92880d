//! The health of one endpoint: the active checker's verdict, passive ejection, and the time it
//! last came back (for slow start). Plain atomics, read on every request without locks.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{Epoch, ms};

/// The active health checker's verdict on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActiveState {
    /// Passing probes, or not yet failed enough of them.
    Healthy,
    /// Failed `unhealthy_threshold` probes in a row and not yet passed `healthy_threshold`.
    Unhealthy,
    /// The service has no active health check; only passive detection applies.
    Unchecked,
}

impl ActiveState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ActiveState::Healthy,
            1 => ActiveState::Unhealthy,
            _ => ActiveState::Unchecked,
        }
    }
    fn to_u8(self) -> u8 {
        self as u8
    }
}

/// Slow start never gives a returning endpoint less than this share of its weight, so it gets
/// some traffic to prove itself with (Envoy's default minimum weight percent).
pub const SLOW_START_MIN: f64 = 0.1;

/// Health of one endpoint, shared between the active checker, passive detection and the picker.
pub struct EndpointHealth {
    epoch: Epoch,
    active: AtomicU8,
    /// Ticks until which the endpoint is ejected; after that, when its last ejection ended.
    /// 0: never ejected.
    ejected_until: AtomicU64,
    /// Set while an ejection has not yet been seen to end, so its end is logged once.
    pub(crate) ejection_unlogged: AtomicBool,
    /// Ejections in the current streak: the next one lasts base × (streak + 1).
    pub(crate) streak: AtomicU32,
    /// Ejections ever.
    pub(crate) ejections: AtomicU32,
    /// Ticks when the active verdict last turned healthy again; 0: never.
    recovered_at: AtomicU64,
    pub(crate) consecutive_5xx: AtomicU32,
    pub(crate) consecutive_gateway: AtomicU32,
}

impl EndpointHealth {
    /// A fresh endpoint. With active checks it starts *healthy* and needs `unhealthy_threshold`
    /// failed probes to be taken out: a freshly started or reloaded gateway serves at once, and
    /// passive detection takes out a dead endpoint after a few real failures anyway. Stored
    /// times count from `epoch`; pass the same instant for every endpoint of a service.
    pub fn new(active_checked: bool, epoch: Instant) -> Self {
        let active = if active_checked { ActiveState::Healthy } else { ActiveState::Unchecked };
        EndpointHealth {
            epoch: Epoch::new(epoch),
            active: AtomicU8::new(active.to_u8()),
            ejected_until: AtomicU64::new(0),
            ejection_unlogged: AtomicBool::new(false),
            streak: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            recovered_at: AtomicU64::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
        }
    }

    /// Should requests go here: the active verdict is not unhealthy and it is not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        self.active() != ActiveState::Unhealthy && !self.is_ejected(self.ticks(now))
    }

    /// The active checker's verdict.
    pub fn active(&self) -> ActiveState {
        ActiveState::from_u8(self.active.load(Relaxed))
    }

    /// When the current ejection ends; `None` when not ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        let until = self.ejected_until.load(Relaxed);
        (until > self.ticks(now)).then(|| self.epoch.instant(until))
    }

    /// The share of its weight the endpoint should get at `now`: it ramps linearly from
    /// [`SLOW_START_MIN`] to 1.0 over `slow_start` after the endpoint last became available
    /// again (active verdict back to healthy, or ejection over), like Envoy's slow start.
    /// 1.0 when it was never down or `slow_start` is zero. Meaningful for available endpoints.
    pub fn slow_start_factor(&self, now: Instant, slow_start: Duration) -> f64 {
        let now = self.ticks(now);
        let ejection_end = self.ejected_until.load(Relaxed);
        let back = self.recovered_at.load(Relaxed).max(if ejection_end <= now { ejection_end } else { 0 });
        let window = ms(slow_start);
        if back == 0 || window == 0 {
            return 1.0;
        }
        let elapsed = now.saturating_sub(back);
        if elapsed >= window {
            return 1.0;
        }
        (elapsed as f64 / window as f64).max(SLOW_START_MIN)
    }

    pub(crate) fn ticks(&self, t: Instant) -> u64 {
        self.epoch.ticks(t)
    }

    pub(crate) fn is_ejected(&self, now_ticks: u64) -> bool {
        self.ejected_until.load(Relaxed) > now_ticks
    }

    /// Ticks the last ejection ended (or ends); 0 when never ejected.
    pub(crate) fn ejection_end(&self) -> u64 {
        self.ejected_until.load(Relaxed)
    }

    pub(crate) fn eject_until(&self, until_ticks: u64) {
        self.ejected_until.store(until_ticks, Relaxed);
        self.ejection_unlogged.store(true, Relaxed);
    }

    /// Sets the active verdict; returns the previous one.
    pub(crate) fn set_active(&self, state: ActiveState, now: Instant) -> ActiveState {
        let prev = ActiveState::from_u8(self.active.swap(state.to_u8(), Relaxed));
        if prev == ActiveState::Unhealthy && state == ActiveState::Healthy {
            self.recovered_at.store(self.ticks(now), Relaxed);
        }
        prev
    }

    pub(crate) fn reset_consecutive(&self) {
        reset(&self.consecutive_5xx);
        reset(&self.consecutive_gateway);
    }
}

/// Zeroes a counter, writing only when it is not zero already: on the success path a store per
/// request would bounce the cache line between cores.
pub(crate) fn reset(c: &AtomicU32) {
    if c.load(Relaxed) != 0 {
        c.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn starts_available_and_checked_state_depends_on_config() {
        let t0 = Instant::now();
        let checked = EndpointHealth::new(true, t0);
        assert_eq!(checked.active(), ActiveState::Healthy);
        assert!(checked.is_available(t0));
        let passive = EndpointHealth::new(false, t0);
        assert_eq!(passive.active(), ActiveState::Unchecked);
        assert!(passive.is_available(t0));
        assert_eq!(passive.slow_start_factor(t0, 30 * S), 1.0);
    }

    #[test]
    fn unhealthy_or_ejected_is_unavailable_until_the_ejection_ends() {
        let t0 = Instant::now();
        let e = EndpointHealth::new(true, t0);
        e.set_active(ActiveState::Unhealthy, t0);
        assert!(!e.is_available(t0));
        e.set_active(ActiveState::Healthy, t0 + S);
        assert!(e.is_available(t0 + S));
        e.eject_until(e.ticks(t0 + 10 * S));
        assert_eq!(e.ejected_until(t0 + 2 * S), Some(t0 + 10 * S));
        assert!(!e.is_available(t0 + 2 * S));
        assert_eq!(e.ejected_until(t0 + 10 * S), None);
        assert!(e.is_available(t0 + 10 * S));
    }

    #[test]
    fn slow_start_ramps_after_recovery_and_after_ejection() {
        let t0 = Instant::now();
        let e = EndpointHealth::new(true, t0);
        let ramp = 10 * S;
        e.set_active(ActiveState::Unhealthy, t0);
        e.set_active(ActiveState::Healthy, t0 + 100 * S);
        assert_eq!(e.slow_start_factor(t0 + 100 * S, ramp), SLOW_START_MIN);
        assert_eq!(e.slow_start_factor(t0 + 105 * S, ramp), 0.5);
        assert_eq!(e.slow_start_factor(t0 + 110 * S, ramp), 1.0);
        assert_eq!(e.slow_start_factor(t0 + 105 * S, Duration::ZERO), 1.0);
        // An ejection ending at 200s ramps from 200s, not from when it began.
        e.eject_until(e.ticks(t0 + 200 * S));
        assert_eq!(e.slow_start_factor(t0 + 150 * S, ramp), 1.0);
        assert_eq!(e.slow_start_factor(t0 + 202 * S, ramp), 0.2);
        assert_eq!(e.slow_start_factor(t0 + 210 * S, ramp), 1.0);
    }
}
