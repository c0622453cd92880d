//! Passive outlier detection and the status snapshot, with fixed instants.

use std::time::{Duration, Instant};

use meridian_model::{CircuitBreaker, Dur, OutlierDetection};

use super::*;

const S: Duration = Duration::from_secs(1);

fn service(n: usize, t0: Instant, f: impl FnOnce(&mut OutlierDetection)) -> ServiceHealth {
    let mut cfg = OutlierDetection {
        consecutive_5xx: 3,
        consecutive_gateway_failures: 2,
        base_ejection: Dur::from_secs(10),
        max_ejection: Dur::from_secs(25),
        max_ejection_percent: 50,
        ..Default::default()
    };
    f(&mut cfg);
    let labels = Labels {
        service: "orders".into(),
        region: "eu".into(),
        endpoints: (0..n).map(|i| format!("10.0.0.{i}:80")).collect(),
    };
    // A breaker that never opens, so these tests see outlier detection alone.
    let breaker = CircuitBreaker { enabled: false, ..Default::default() };
    ServiceHealth::new(labels, &cfg, &breaker, false, t0)
}

fn record_n(s: &ServiceHealth, i: usize, outcome: Outcome, n: usize, at: Instant) {
    for _ in 0..n {
        s.record(i, outcome, at);
    }
}

#[test]
fn consecutive_5xx_eject_and_a_success_resets_the_count() {
    let t0 = Instant::now();
    let s = service(4, t0, |_| {});
    record_n(&s, 0, Outcome::Http5xx, 2, t0);
    s.record(0, Outcome::Success, t0);
    record_n(&s, 0, Outcome::Http5xx, 2, t0);
    assert!(s.endpoint(0).is_available(t0));
    s.record(0, Outcome::Http5xx, t0);
    assert_eq!(s.endpoint(0).ejected_until(t0), Some(t0 + 10 * S));
    assert_eq!(s.available(t0), (3, 4));
}

#[test]
fn gateway_failures_have_their_own_threshold_and_count_as_5xx() {
    let t0 = Instant::now();
    let s = service(4, t0, |_| {});
    record_n(&s, 0, Outcome::GatewayFailure, 2, t0);
    assert!(!s.endpoint(0).is_available(t0));
    // 5xx, gateway failure, 5xx: three failures in a row, never two gateway failures in a row.
    s.record(1, Outcome::Http5xx, t0);
    s.record(1, Outcome::GatewayFailure, t0);
    assert!(s.endpoint(1).is_available(t0));
    s.record(1, Outcome::Http5xx, t0);
    assert!(!s.endpoint(1).is_available(t0));
}

#[test]
fn ejection_ends_on_time_and_grows_with_each_ejection_up_to_max() {
    let t0 = Instant::now();
    let s = service(2, t0, |_| {});
    let eject = |at: Instant| record_n(&s, 0, Outcome::GatewayFailure, 2, at);
    eject(t0);
    assert!(!s.endpoint(0).is_available(t0 + 10 * S - Duration::from_millis(1)));
    assert!(s.endpoint(0).is_available(t0 + 10 * S));
    let t1 = t0 + 11 * S;
    eject(t1);
    assert_eq!(s.endpoint(0).ejected_until(t1), Some(t1 + 20 * S), "base × 2");
    let t2 = t1 + 21 * S;
    eject(t2);
    assert_eq!(s.endpoint(0).ejected_until(t2), Some(t2 + 25 * S), "capped at max_ejection");
    // Failures of requests sent before the ejection do not extend it.
    eject(t2 + S);
    assert_eq!(s.endpoint(0).ejected_until(t2), Some(t2 + 25 * S));
    // Un-ejected for max_ejection: the streak is over and the next ejection is base again.
    let t3 = t2 + 25 * S + 25 * S;
    eject(t3);
    assert_eq!(s.endpoint(0).ejected_until(t3), Some(t3 + 10 * S));
    assert_eq!(s.status(t3).endpoints[0].ejections, 4);
}

#[test]
fn never_more_than_max_ejection_percent() {
    let t0 = Instant::now();
    let s = service(5, t0, |c| c.max_ejection_percent = 40);
    for i in 0..5 {
        record_n(&s, i, Outcome::GatewayFailure, 2, t0);
    }
    assert_eq!(s.available(t0), (3, 5), "2 of 5 is 40 %, a third would be 60 %");
    // Once one returns, another may go.
    let t1 = t0 + 10 * S;
    assert_eq!(s.available(t1), (5, 5));
    record_n(&s, 4, Outcome::GatewayFailure, 2, t1);
    assert_eq!(s.available(t1), (4, 5));
    // A single endpoint at 50 % is never ejected.
    let one = service(1, t0, |_| {});
    record_n(&one, 0, Outcome::GatewayFailure, 10, t0);
    assert_eq!(one.available(t0), (1, 1));
}

#[test]
fn disabled_detection_never_ejects() {
    let t0 = Instant::now();
    let s = service(2, t0, |c| c.enabled = false);
    record_n(&s, 0, Outcome::GatewayFailure, 10, t0);
    assert_eq!(s.available(t0), (2, 2));
}

#[test]
fn record_feeds_the_breaker() {
    let t0 = Instant::now();
    let labels = Labels { service: "orders".into(), region: "eu".into(), endpoints: vec!["a:1".into()] };
    let breaker = CircuitBreaker { consecutive_failures: 2, ..Default::default() };
    let s = ServiceHealth::new(labels, &OutlierDetection::default(), &breaker, false, t0);
    record_n(&s, 0, Outcome::Http5xx, 2, t0);
    assert!(!s.breaker().try_acquire(t0));
}

#[test]
fn active_verdicts_and_status() {
    let t0 = Instant::now();
    let labels =
        Labels { service: "orders".into(), region: "eu".into(), endpoints: vec!["a:1".into(), "b:1".into()] };
    let s = ServiceHealth::new(labels, &OutlierDetection::default(), &CircuitBreaker::default(), true, t0);
    s.set_active(1, ActiveState::Unhealthy, t0, &"unexpected status 503");
    record_n(&s, 0, Outcome::Http5xx, 2, t0);
    let st = s.status(t0);
    assert_eq!((st.available, st.total), (1, 2));
    assert_eq!(st.endpoints[1].active, ActiveState::Unhealthy);
    assert_eq!(st.endpoints[0].consecutive_5xx, 2);
    let json = serde_json::to_value(&st).expect("serializes");
    assert_eq!(json["circuit"]["state"], "closed");
    assert_eq!(json["endpoints"][1]["active"], "unhealthy");
    assert_eq!(json["endpoints"][1]["address"], "b:1");
}

#[test]
fn racing_ejections_respect_max_ejection_percent() {
    let t0 = Instant::now();
    let s = service(8, t0, |_| {});
    std::thread::scope(|scope| {
        for i in 0..8 {
            let s = &s;
            scope.spawn(move || record_n(s, i, Outcome::GatewayFailure, 2, t0));
        }
    });
    assert_eq!(s.available(t0), (4, 8));
}
