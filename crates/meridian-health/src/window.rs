//! The sliding window the circuit breaker measures failure rates over, without locks.
//!
//! The window is split into [`BUCKETS`] buckets; each is one `AtomicU64` holding which bucket
//! period it counts (low 24 bits of the period number), its requests and its failures (20 bits
//! each). A request updates one bucket with a compare-and-swap; a bucket still holding an older
//! period is restarted in the same swap. The totals cover the current bucket and the
//! `BUCKETS - 1` before it, so between 90 % and 100 % of the window.
//!
//! A bucket saturates at about a million requests, which keeps the failure *rate* of the first
//! million as a sample. A bucket untouched for exactly 2^24 periods could be mistaken for a
//! current one; with a 10s window that takes 194 days of silence, and it skews one window.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Buckets per window.
pub(crate) const BUCKETS: u64 = 10;
const TAG_BITS: u32 = 24;
const COUNT_BITS: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

pub(crate) struct Window {
    /// Width of one bucket in milliseconds (≥ 1).
    bucket_ms: u64,
    buckets: [AtomicU64; BUCKETS as usize],
}

fn pack(tag: u64, requests: u64, failures: u64) -> u64 {
    tag << (2 * COUNT_BITS) | requests << COUNT_BITS | failures
}

fn unpack(w: u64) -> (u64, u64, u64) {
    (w >> (2 * COUNT_BITS), (w >> COUNT_BITS) & COUNT_MAX, w & COUNT_MAX)
}

impl Window {
    /// A window of `window_ms` milliseconds.
    pub fn new(window_ms: u64) -> Self {
        Window { bucket_ms: (window_ms / BUCKETS).max(1), buckets: Default::default() }
    }

    /// Counts one request at `now` (ticks).
    pub fn record(&self, failed: bool, now: u64) {
        let period = now / self.bucket_ms;
        let tag = period & TAG_MASK;
        let bucket = &self.buckets[(period % BUCKETS) as usize];
        // `Err` only when saturated: then the request is left out on purpose.
        let _ = bucket.fetch_update(Relaxed, Relaxed, |w| {
            let (t, r, f) = unpack(w);
            let (r, f) = if t == tag { (r, f) } else { (0, 0) };
            (r < COUNT_MAX).then(|| pack(tag, r + 1, f + u64::from(failed)))
        });
    }

    /// (requests, failures) in the window ending at `now` (ticks).
    pub fn totals(&self, now: u64) -> (u64, u64) {
        let tag = (now / self.bucket_ms) & TAG_MASK;
        self.buckets.iter().fold((0, 0), |(req, fail), b| {
            let (t, r, f) = unpack(b.load(Relaxed));
            // Age in periods; a bucket from the "future" (a caller with an older `now`)
            // wraps to a huge age and is left out.
            if tag.wrapping_sub(t) & TAG_MASK < BUCKETS { (req + r, fail + f) } else { (req, fail) }
        })
    }

    /// Forgets everything (the breaker closed again).
    pub fn clear(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_bucket_by_bucket() {
        let w = Window::new(10_000);
        w.record(true, 1);
        w.record(false, 1_500);
        assert_eq!(w.totals(1_500), (2, 1));
        // At 10.5s the bucket of 0–1s has left the window, the one of 1–2s has not.
        assert_eq!(w.totals(10_500), (1, 0));
        assert_eq!(w.totals(11_500), (0, 0));
        // A caller with a slightly older `now` lands in its own, earlier bucket.
        w.record(true, 20_000);
        w.record(true, 19_000);
        assert_eq!(w.totals(20_000), (2, 2));
        w.clear();
        assert_eq!(w.totals(20_000), (0, 0));
    }

    #[test]
    fn a_reused_bucket_restarts() {
        let w = Window::new(1_000);
        for _ in 0..5 {
            w.record(true, 50);
        }
        w.record(false, 1_050); // same bucket index, next lap
        assert_eq!(w.totals(1_050), (1, 0));
    }
}
