//! Retry budgets: retries may add at most a share of a route's recent requests, plus a small
//! floor per second, so a failing upstream is not hammered by a retry storm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meridian_model::RetryPolicy;

/// The window over which requests and retries are counted.
const WINDOW: Duration = Duration::from_secs(10);

pub struct RetryBudget {
    percent: u64,
    floor: u64,
    start: Instant,
    window: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl RetryBudget {
    pub fn new(p: &RetryPolicy) -> Self {
        RetryBudget {
            percent: u64::from(p.budget_percent),
            floor: u64::from(p.min_per_second) * WINDOW.as_secs(),
            start: Instant::now(),
            window: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        }
    }

    fn roll(&self, now: Instant) {
        let w = (now - self.start).as_secs() / WINDOW.as_secs();
        if self.window.load(Ordering::Relaxed) != w && self.window.swap(w, Ordering::Relaxed) != w {
            self.requests.store(0, Ordering::Relaxed);
            self.retries.store(0, Ordering::Relaxed);
        }
    }

    /// Counts one client request.
    pub fn deposit(&self, now: Instant) {
        self.roll(now);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when the budget is spent.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        self.roll(now);
        let allowed = self.floor + self.requests.load(Ordering::Relaxed) * self.percent / 100;
        if self.retries.load(Ordering::Relaxed) >= allowed {
            return false;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// Whether a method may be repeated without the route's permission (RFC 9110 §9.2.2).
pub fn is_idempotent(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(percent: u32, min: u32) -> RetryPolicy {
        RetryPolicy { budget_percent: percent, min_per_second: min, ..RetryPolicy::default() }
    }

    #[test]
    fn budget_allows_a_share_of_requests_plus_the_floor() {
        let b = RetryBudget::new(&policy(20, 0));
        let t = Instant::now();
        for _ in 0..100 {
            b.deposit(t);
        }
        let granted = (0..100).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn floor_allows_retries_with_no_traffic() {
        let b = RetryBudget::new(&policy(0, 1));
        let t = Instant::now();
        let granted = (0..100).filter(|_| b.try_withdraw(t)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn budget_refills_in_the_next_window() {
        let b = RetryBudget::new(&policy(0, 1));
        let t = Instant::now();
        while b.try_withdraw(t) {}
        assert!(b.try_withdraw(t + WINDOW + Duration::from_millis(1)));
    }

    #[test]
    fn idempotent_methods() {
        assert!(is_idempotent(&http::Method::GET));
        assert!(is_idempotent(&http::Method::PUT));
        assert!(!is_idempotent(&http::Method::POST));
        assert!(!is_idempotent(&http::Method::PATCH));
    }
}
