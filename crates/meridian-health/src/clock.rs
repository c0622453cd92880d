//! Instants as integers, so that shared health state fits in atomics.
//!
//! Every time this crate stores is a count of milliseconds since the `epoch` its owner was
//! created at, plus one, so that `0` can mean "never". Milliseconds are ample for ejections,
//! breaker windows and slow start, and 64 bits of them never run out.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The instant stored times count from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(Instant);

impl Epoch {
    pub fn new(at: Instant) -> Self {
        Epoch(at)
    }

    /// `t` as stored ticks; instants before the epoch count as the epoch itself.
    pub fn ticks(self, t: Instant) -> u64 {
        // A proxied request asks for one instant's ticks several times (availability, the
        // breaker, slow start, the outcome), and each conversion is a checked time
        // subtraction: the last one is remembered per thread.
        thread_local! {
            static LAST: Cell<Option<(Instant, Instant, u64)>> = const { Cell::new(None) };
        }
        LAST.with(|last| {
            if let Some((epoch, at, ticks)) = last.get()
                && epoch == self.0
                && at == t
            {
                return ticks;
            }
            let ticks = ms(t.saturating_duration_since(self.0)).saturating_add(1);
            last.set(Some((self.0, t, ticks)));
            ticks
        })
    }

    /// The instant of stored ticks (`ticks` ≥ 1).
    pub fn instant(self, ticks: u64) -> Instant {
        self.0 + Duration::from_millis(ticks.saturating_sub(1))
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_zero_means_never() {
        let t0 = Instant::now();
        let e = Epoch::new(t0);
        assert_eq!(e.ticks(t0), 1);
        assert_eq!(e.ticks(t0 + Duration::from_millis(1500)), 1501);
        assert_eq!(e.instant(1501), t0 + Duration::from_millis(1500));
        assert_eq!(e.ticks(t0.checked_sub(Duration::from_millis(1)).unwrap_or(t0)), 1);
    }
}
