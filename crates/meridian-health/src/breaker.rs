//! The circuit breaker of one service in one region.
//!
//! Closed → Open when, in the window, the failure rate reaches `failure_rate_percent` with at
//! least `min_requests` requests, or `consecutive_failures` requests failed in a row. Open →
//! HalfOpen once `open_for` has passed: `half_open_requests` probe requests are admitted.
//! HalfOpen → Closed when they all succeed; → Open again on the first failure.
//!
//! The state, when it began, and the half-open probe counts share one `AtomicU64`, so every
//! transition is a single compare-and-swap and no probe is admitted twice. A probe that never
//! reports (its request was cancelled) would keep the breaker half-open forever, so a half-open
//! round older than `open_for` starts over.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use meridian_model::CircuitBreaker;
use serde::Serialize;

use crate::clock::{Epoch, ms};
use crate::window::Window;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused; the service is failed over or answered with 503.
    Open,
    /// A few probe requests are let through to see whether the service recovered.
    HalfOpen,
}

/// Most half-open probes a round can have: the width of the counts in the state word.
const MAX_PROBES: u32 = (1 << 11) - 1;

/// The state word: [state: 2][issued: 11][succeeded: 11][since, ticks: 40].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Word {
    state: BreakerState,
    issued: u32,
    succeeded: u32,
    since: u64,
}

impl Word {
    fn pack(self) -> u64 {
        let s = match self.state {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        s << 62 | u64::from(self.issued) << 51 | u64::from(self.succeeded) << 40 | self.since & SINCE_MASK
    }
    fn unpack(w: u64) -> Word {
        let state = match w >> 62 {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        };
        let count = |shift: u32| ((w >> shift) & u64::from(MAX_PROBES)) as u32;
        Word { state, issued: count(51), succeeded: count(40), since: w & SINCE_MASK }
    }
    fn at(state: BreakerState, issued: u32, since: u64) -> u64 {
        Word { state, issued, succeeded: 0, since }.pack()
    }
}

/// 2^40 ms is 34 years of uptime.
const SINCE_MASK: u64 = (1 << 40) - 1;

/// Service and region, for log lines.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub service: Arc<str>,
    pub region: Arc<str>,
}

/// A circuit breaker per service per region; see the module docs for the rules.
pub struct Breaker {
    enabled: bool,
    failure_rate_percent: u64,
    min_requests: u64,
    consecutive_limit: u32,
    open_for_ms: u64,
    probes: u32,
    epoch: Epoch,
    word: AtomicU64,
    window: Window,
    consecutive: AtomicU32,
    names: Names,
}

impl Breaker {
    /// A closed breaker. Times are stored relative to `epoch` (see [`crate::ServiceHealth::new`]).
    /// Thresholds of 0 count as 1; more than 2047 half-open probes count as 2047.
    pub(crate) fn new(cfg: &CircuitBreaker, names: Names, epoch: Instant) -> Self {
        Breaker {
            enabled: cfg.enabled,
            failure_rate_percent: u64::from(cfg.failure_rate_percent.max(1)),
            min_requests: u64::from(cfg.min_requests.max(1)),
            consecutive_limit: cfg.consecutive_failures.max(1),
            open_for_ms: ms(cfg.open_for.get()),
            probes: cfg.half_open_requests.clamp(1, MAX_PROBES),
            epoch: Epoch::new(epoch),
            word: AtomicU64::new(Word::at(BreakerState::Closed, 0, 0)),
            window: Window::new(ms(cfg.window.get())),
            consecutive: AtomicU32::new(0),
            names,
        }
    }

    /// May a request go to this service now? Call once per request, before sending it, and
    /// report its outcome with [`Breaker::record`] (or [`crate::ServiceHealth::record`]).
    /// False while open, and while half-open with every probe already admitted.
    pub fn try_acquire(&self, now: Instant) -> bool {
        if !self.enabled {
            return true;
        }
        let now = self.epoch.ticks(now);
        let mut cur = self.word.load(Relaxed);
        loop {
            let w = Word::unpack(cur);
            let next = match w.state {
                BreakerState::Closed => return true,
                BreakerState::Open if now < w.since + self.open_for_ms => return false,
                BreakerState::Open => Word::at(BreakerState::HalfOpen, 1, now),
                BreakerState::HalfOpen if w.issued < self.probes => Word { issued: w.issued + 1, ..w }.pack(),
                // A round whose probes never all reported: start another.
                BreakerState::HalfOpen if now >= w.since + self.open_for_ms => {
                    Word::at(BreakerState::HalfOpen, 1, now)
                }
                BreakerState::HalfOpen => return false,
            };
            match self.word.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => {
                    if w.state == BreakerState::Open {
                        tracing::info!(service = %self.names.service, region = %self.names.region,
                            probes = self.probes, "circuit half-open: letting probe requests through");
                    }
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// The outcome of a request [`Breaker::try_acquire`] admitted. Outcomes arriving while open
    /// (requests sent before it opened) are ignored.
    pub fn record(&self, success: bool, now: Instant) {
        if !self.enabled {
            return;
        }
        let now = self.epoch.ticks(now);
        let mut cur = self.word.load(Relaxed);
        loop {
            let w = Word::unpack(cur);
            let next = match w.state {
                BreakerState::Closed => return self.record_closed(cur, success, now),
                BreakerState::Open => return,
                // A success with no probe outstanding is a late answer from before; skip it.
                BreakerState::HalfOpen if success && w.succeeded >= w.issued => return,
                BreakerState::HalfOpen if success && w.succeeded + 1 >= self.probes => {
                    Word::at(BreakerState::Closed, 0, now)
                }
                BreakerState::HalfOpen if success => Word { succeeded: w.succeeded + 1, ..w }.pack(),
                BreakerState::HalfOpen => Word::at(BreakerState::Open, 0, now),
            };
            match self.word.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return self.entered(Word::unpack(next).state, w.state),
                Err(actual) => cur = actual,
            }
        }
    }

    fn record_closed(&self, cur: u64, success: bool, now: u64) {
        self.window.record(!success, now);
        if success {
            // Only write when needed: a store per success would bounce the cache line.
            if self.consecutive.load(Relaxed) != 0 {
                self.consecutive.store(0, Relaxed);
            }
            return;
        }
        let consecutive = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
        let (requests, failures) = self.window.totals(now);
        let by_rate = requests >= self.min_requests && failures * 100 >= self.failure_rate_percent * requests;
        if consecutive < self.consecutive_limit && !by_rate {
            return;
        }
        let open = Word::at(BreakerState::Open, 0, now);
        // Losing this race means another request already moved the breaker on.
        if self.word.compare_exchange(cur, open, Relaxed, Relaxed).is_ok() {
            tracing::warn!(service = %self.names.service, region = %self.names.region,
                consecutive, requests, failures, open_for_ms = self.open_for_ms, "circuit opened");
        }
    }

    fn entered(&self, state: BreakerState, from: BreakerState) {
        let (service, region) = (&self.names.service, &self.names.region);
        match state {
            BreakerState::Closed => {
                self.window.clear();
                self.consecutive.store(0, Relaxed);
                tracing::info!(%service, %region, "circuit closed: every probe request succeeded");
            }
            BreakerState::Open => {
                tracing::warn!(%service, %region, ?from, "circuit opened again: a probe request failed")
            }
            BreakerState::HalfOpen => {}
        }
    }

    /// The state as a request at `now` would find it: an open breaker whose `open_for` has
    /// passed reports half-open.
    pub fn state(&self, now: Instant) -> BreakerState {
        let w = Word::unpack(self.word.load(Relaxed));
        match w.state {
            BreakerState::Open if self.epoch.ticks(now) >= w.since + self.open_for_ms => {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// Snapshot for the status page.
    pub(crate) fn status(&self, now: Instant) -> BreakerStatus {
        let ticks = self.epoch.ticks(now);
        let w = Word::unpack(self.word.load(Relaxed));
        let (window_requests, window_failures) = self.window.totals(ticks);
        let open_remaining_ms = (w.state == BreakerState::Open)
            .then(|| (w.since + self.open_for_ms).saturating_sub(ticks))
            .filter(|&left| left > 0);
        BreakerStatus {
            enabled: self.enabled,
            state: self.state(now),
            window_requests,
            window_failures,
            consecutive_failures: self.consecutive.load(Relaxed),
            open_remaining_ms,
        }
    }
}

/// A breaker as `/-/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerStatus {
    pub enabled: bool,
    pub state: BreakerState,
    /// Requests and failures counted in the current window.
    pub window_requests: u64,
    pub window_failures: u64,
    pub consecutive_failures: u32,
    /// Milliseconds until an open breaker lets probes through; absent unless open.
    pub open_remaining_ms: Option<u64>,
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
