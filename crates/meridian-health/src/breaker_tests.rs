//! The breaker's rules, each with fixed instants.

use std::time::{Duration, Instant};

use meridian_model::{CircuitBreaker, Dur};

use super::*;

const S: Duration = Duration::from_secs(1);

fn breaker(t0: Instant, f: impl FnOnce(&mut CircuitBreaker)) -> Breaker {
    let mut cfg = CircuitBreaker {
        failure_rate_percent: 50,
        min_requests: 10,
        consecutive_failures: 5,
        window: Dur::from_secs(10),
        open_for: Dur::from_secs(5),
        half_open_requests: 2,
        ..Default::default()
    };
    f(&mut cfg);
    Breaker::new(&cfg, Names { service: "orders".into(), region: "eu".into() }, t0)
}

fn record_n(b: &Breaker, n: usize, success: bool, at: Instant) {
    for _ in 0..n {
        assert!(b.try_acquire(at));
        b.record(success, at);
    }
}

#[test]
fn opens_on_consecutive_failures() {
    let t0 = Instant::now();
    let b = breaker(t0, |_| {});
    record_n(&b, 4, false, t0);
    record_n(&b, 1, true, t0); // a success breaks the run
    record_n(&b, 4, false, t0);
    assert_eq!(b.state(t0), BreakerState::Closed);
    record_n(&b, 1, false, t0);
    assert_eq!(b.state(t0), BreakerState::Open);
    assert!(!b.try_acquire(t0 + 4 * S));
}

#[test]
fn opens_on_failure_rate_only_with_min_requests() {
    let t0 = Instant::now();
    let b = breaker(t0, |c| c.consecutive_failures = 100);
    // 4 failures of 8: 50 %, but fewer than min_requests.
    for _ in 0..4 {
        record_n(&b, 1, true, t0);
        record_n(&b, 1, false, t0);
    }
    assert_eq!(b.state(t0), BreakerState::Closed);
    record_n(&b, 1, true, t0);
    assert_eq!(b.state(t0), BreakerState::Closed, "successes never open it");
    // 10 requests, 5 failed: 50 % reaches the threshold.
    record_n(&b, 1, false, t0);
    assert_eq!(b.state(t0), BreakerState::Open);
}

#[test]
fn below_the_rate_stays_closed() {
    let t0 = Instant::now();
    let b = breaker(t0, |c| c.consecutive_failures = 100);
    record_n(&b, 11, true, t0);
    record_n(&b, 4, false, t0);
    assert_eq!(b.state(t0), BreakerState::Closed);
    assert_eq!(b.status(t0).window_requests, 15);
}

#[test]
fn old_failures_roll_out_of_the_window() {
    let t0 = Instant::now();
    let b = breaker(t0, |c| c.consecutive_failures = 100);
    record_n(&b, 9, false, t0);
    // 11s later the 9 failures are out of the window: 1 request is below min_requests.
    record_n(&b, 1, false, t0 + 11 * S);
    assert_eq!(b.state(t0 + 11 * S), BreakerState::Closed);
    assert_eq!(b.status(t0 + 11 * S).window_requests, 1);
    // Whereas within the window they count.
    let b = breaker(t0, |c| c.consecutive_failures = 100);
    record_n(&b, 9, false, t0);
    record_n(&b, 1, false, t0 + 5 * S);
    assert_eq!(b.state(t0 + 5 * S), BreakerState::Open);
}

#[test]
fn half_open_after_open_for_and_closes_when_every_probe_succeeds() {
    let t0 = Instant::now();
    let b = breaker(t0, |_| {});
    record_n(&b, 5, false, t0);
    let t1 = t0 + 5 * S;
    assert_eq!(b.state(t1 - Duration::from_millis(1)), BreakerState::Open);
    assert_eq!(b.state(t1), BreakerState::HalfOpen);
    assert!(b.try_acquire(t1));
    assert!(b.try_acquire(t1));
    assert!(!b.try_acquire(t1), "only half_open_requests probes");
    b.record(true, t1);
    assert_eq!(b.state(t1), BreakerState::HalfOpen);
    b.record(true, t1);
    assert_eq!(b.state(t1), BreakerState::Closed);
    let st = b.status(t1);
    assert_eq!((st.window_requests, st.consecutive_failures), (0, 0), "history is forgotten");
    assert!(b.try_acquire(t1));
}

#[test]
fn a_failed_probe_opens_it_again() {
    let t0 = Instant::now();
    let b = breaker(t0, |_| {});
    record_n(&b, 5, false, t0);
    let t1 = t0 + 5 * S;
    assert!(b.try_acquire(t1));
    b.record(false, t1);
    assert_eq!(b.state(t1), BreakerState::Open);
    assert!(!b.try_acquire(t1 + 4 * S));
    assert_eq!(b.status(t1 + 4 * S).open_remaining_ms, Some(1000));
    assert!(b.try_acquire(t1 + 5 * S));
}

#[test]
fn late_answers_do_not_decide_and_lost_probes_are_retried() {
    let t0 = Instant::now();
    let b = breaker(t0, |_| {});
    record_n(&b, 5, false, t0);
    // While open, answers to requests sent earlier are ignored.
    b.record(true, t0 + S);
    assert_eq!(b.state(t0 + S), BreakerState::Open);
    let t1 = t0 + 5 * S;
    // Half-open with no probe outstanding: a success is a late answer.
    assert!(b.try_acquire(t1));
    b.record(true, t1);
    b.record(true, t1);
    assert_eq!(b.state(t1), BreakerState::HalfOpen);
    // The second probe never reports; after open_for a new round begins.
    assert!(b.try_acquire(t1));
    assert!(!b.try_acquire(t1 + 4 * S));
    assert!(b.try_acquire(t1 + 5 * S));
}

#[test]
fn disabled_admits_everything() {
    let t0 = Instant::now();
    let b = breaker(t0, |c| c.enabled = false);
    record_n(&b, 50, false, t0);
    assert_eq!(b.state(t0), BreakerState::Closed);
}

#[test]
fn racing_threads_get_exactly_the_half_open_probes() {
    let t0 = Instant::now();
    let b = breaker(t0, |c| c.half_open_requests = 7);
    record_n(&b, 5, false, t0);
    let t1 = t0 + 5 * S;
    let admitted: usize = std::thread::scope(|s| {
        let workers: Vec<_> =
            (0..4).map(|_| s.spawn(|| (0..100).filter(|_| b.try_acquire(t1)).count())).collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    assert_eq!(admitted, 7);
}
