//! The quorum with a manual clock: no sleeps.

use std::sync::Arc;
use std::time::Duration;

use meridian_core::ManualClock;

use super::*;

const STALE: Duration = Duration::from_secs(3);
const FORGET: Duration = Duration::from_secs(30);

fn check(name: &str, region: &str) -> CheckSpec {
    CheckSpec { name: name.into(), region: Some(region.into()), staleness: STALE, calculated: None }
}

fn config(checks: Vec<CheckSpec>) -> QuorumConfig {
    QuorumConfig { share: None, staleness: STALE, forget_after: FORGET, checks }
}

/// A quorum past its warm-up.
fn quorum(checks: Vec<CheckSpec>) -> (Quorum, ManualClock) {
    let (q, clock) = warming(checks);
    clock.advance(STALE);
    (q, clock)
}

fn warming(checks: Vec<CheckSpec>) -> (Quorum, ManualClock) {
    let clock = ManualClock::new();
    (Quorum::new(config(checks), Arc::new(clock.clone())), clock)
}

fn report(checker: &str, region: &str, obs: &[(&str, bool)]) -> Report {
    Report {
        checker: checker.into(),
        region: region.into(),
        observations: obs
            .iter()
            .map(|(c, h)| Observation {
                check: (*c).into(),
                healthy: *h,
                consecutive_passes: u32::from(*h),
                consecutive_failures: u32::from(!*h),
                observed_at_ms: 0,
                error: None,
            })
            .collect(),
    }
}

/// Three regions, one checker each; `us` is the check of region us.
fn three(q: &Quorum, us: bool, eu: bool, ap: bool) {
    q.ingest(report("c-us", "us", &[("us", us)])).unwrap();
    q.ingest(report("c-eu", "eu", &[("us", eu)])).unwrap();
    q.ingest(report("c-ap", "ap", &[("us", ap)])).unwrap();
}

#[test]
fn healthy_before_any_observation_and_unknown_checks_are_none() {
    let (q, _) = quorum(vec![check("us", "us")]);
    assert_eq!(q.healthy("us"), Some(true));
    assert_eq!(q.healthy("nope"), None);
    assert!(!q.partitioned());
}

#[test]
fn a_region_s_observations_of_itself_are_dropped() {
    let (q, _) = quorum(vec![check("us", "us")]);
    // The region itself says down, both others say up: healthy.
    three(&q, false, true, true);
    assert_eq!(q.healthy("us"), Some(true));
    // The region itself says up, both others say down: down.
    three(&q, true, false, false);
    assert_eq!(q.healthy("us"), Some(false));
    let st = q.status();
    let us = st.vantage_points_of("us", "c-us");
    assert!(us.fresh && !us.counted, "{us:?}");
}

#[test]
fn a_majority_of_two_other_vantage_points_decides() {
    let (q, _) = quorum(vec![check("us", "us")]);
    three(&q, true, true, true);
    three(&q, true, false, false);
    assert_eq!(q.healthy("us"), Some(false));
    three(&q, false, true, true);
    assert_eq!(q.healthy("us"), Some(true));
}

#[test]
fn one_checker_alone_saying_down_does_not_flip_a_region() {
    let (q, clock) = warming(vec![check("us", "us")]);
    // During warm-up the first report (eu alone, before ap has reported) does not decide.
    q.ingest(report("c-eu", "eu", &[("us", false)])).unwrap();
    assert_eq!(q.healthy("us"), Some(true));
    assert!(q.status().checks[0].reason.contains("warming up"));
    q.ingest(report("c-ap", "ap", &[("us", true)])).unwrap();
    clock.advance(STALE);
    q.evaluate();
    assert_eq!(q.healthy("us"), Some(true));
    three(&q, true, false, true);
    assert_eq!(q.healthy("us"), Some(true));
    // And once down, one checker alone saying up does not bring it back.
    three(&q, true, false, false);
    three(&q, true, true, false);
    assert_eq!(q.healthy("us"), Some(false));
    assert!(q.status().checks[0].reason.starts_with("kept on the line"), "{:?}", q.status().checks[0]);
}

#[test]
fn five_or_more_vantage_points_use_route_53_s_share() {
    let (q, _) = quorum(vec![check("x", "us")]);
    // Five other vantage points, one says healthy: 1 > 0.18 × 5 = 0.9, healthy.
    for i in 0..5 {
        q.ingest(report(&format!("c{i}"), "eu", &[("x", i == 0)])).unwrap();
    }
    assert_eq!(q.healthy("x"), Some(true));
    q.ingest(report("c0", "eu", &[("x", false)])).unwrap();
    assert_eq!(q.healthy("x"), Some(false));
}

#[test]
fn stale_vantage_points_do_not_count() {
    let (q, clock) = quorum(vec![check("us", "us")]);
    for c in ["a", "b", "c", "d"] {
        q.ingest(report(c, "eu", &[("us", true)])).unwrap();
    }
    clock.advance(STALE - Duration::from_millis(1));
    // Two fresh "down" against two "up" about to go stale: on the line, kept healthy.
    q.ingest(report("e", "ap", &[("us", false)])).unwrap();
    q.ingest(report("f", "ap", &[("us", false)])).unwrap();
    assert_eq!(q.healthy("us"), Some(true));
    q.ingest(report("a", "eu", &[("us", true)])).unwrap();
    q.ingest(report("b", "eu", &[("us", true)])).unwrap();
    // c and d go stale; a, b (up) and e, f (down) are fresh: 2 of 4, kept.
    clock.advance(Duration::from_millis(2));
    q.evaluate();
    assert_eq!(q.healthy("us"), Some(true));
    assert!(!q.partitioned());
    q.ingest(report("a", "eu", &[("us", false)])).unwrap();
    assert_eq!(q.healthy("us"), Some(false));
    let st = q.status();
    assert_eq!((st.vantage_points_known, st.vantage_points_fresh), (6, 4));
    assert!(!st.vantage_points_of("us", "c").fresh);
}

#[test]
fn a_partitioned_director_keeps_its_last_verdicts() {
    let (q, clock) = quorum(vec![check("us", "us"), check("eu", "eu")]);
    let all = |us: bool, eu: bool| {
        q.ingest(report("c-us", "us", &[("us", us), ("eu", eu)])).unwrap();
        q.ingest(report("c-eu", "eu", &[("us", us), ("eu", eu)])).unwrap();
        q.ingest(report("c-ap", "ap", &[("us", us), ("eu", eu)])).unwrap();
    };
    all(true, true);
    // Only the director's own region's checker still gets through, and it sees eu down
    // (the partition): eu must stay healthy.
    clock.advance(STALE + Duration::from_millis(1));
    q.ingest(report("c-us", "us", &[("us", true), ("eu", false)])).unwrap();
    assert!(q.partitioned());
    assert_eq!(q.healthy("eu"), Some(true));
    assert!(q.status().checks[1].reason.starts_with("kept: partitioned"));
    // The others come back: the quorum decides again (two of three fresh is most).
    q.ingest(report("c-ap", "ap", &[("us", true), ("eu", false)])).unwrap();
    assert!(!q.partitioned());
    assert_eq!(q.healthy("eu"), Some(false));
    // Everyone silent: partitioned, verdicts kept.
    clock.advance(STALE + Duration::from_millis(1));
    q.evaluate();
    assert!(q.partitioned());
    assert_eq!((q.healthy("us"), q.healthy("eu")), (Some(true), Some(false)));
}

#[test]
fn calculated_checks_combine_children() {
    let calc = |name: &str, min: usize| CheckSpec {
        name: name.into(),
        region: None,
        staleness: STALE,
        calculated: Some((vec!["a".into(), "b".into(), "c".into()], min)),
    };
    let (q, _) = quorum(vec![
        check("a", "us"),
        check("b", "us"),
        check("c", "us"),
        calc("and", 3),
        calc("or", 1),
        calc("two", 2),
    ]);
    let set = |a: bool, b: bool, c: bool| {
        for (id, r) in [("x", "eu"), ("y", "ap")] {
            q.ingest(report(id, r, &[("a", a), ("b", b), ("c", c)])).unwrap();
        }
        (q.healthy("and").unwrap(), q.healthy("or").unwrap(), q.healthy("two").unwrap())
    };
    assert_eq!(set(true, true, true), (true, true, true));
    assert_eq!(set(true, true, false), (false, true, true));
    assert_eq!(set(true, false, false), (false, true, false));
    assert_eq!(set(false, false, false), (false, false, false));
}

#[test]
fn a_new_config_keeps_verdicts_of_remaining_checks() {
    let (q, _) = quorum(vec![check("us", "us")]);
    q.ingest(report("c-eu", "eu", &[("us", false)])).unwrap();
    assert_eq!(q.healthy("us"), Some(false));
    q.configure(config(vec![check("us", "us"), check("eu", "eu")]));
    assert_eq!((q.healthy("us"), q.healthy("eu")), (Some(false), Some(true)));
    assert_eq!(q.ingest(report("", "eu", &[])), Err(ReportError::Anonymous));
}

#[test]
fn each_check_goes_stale_after_its_own_staleness() {
    // `slow` is probed every 10 s (staleness 30 s), `fast` every second (3 s): between two
    // probes of `slow`, reports carry only `fast`, and the last `slow` observations still count.
    let slow = CheckSpec { staleness: Duration::from_secs(30), ..check("slow", "us") };
    let (q, clock) = warming(vec![check("fast", "us"), slow]);
    assert_eq!(q.staleness(), STALE, "evaluated at the pace of the fastest check");
    clock.advance(Duration::from_secs(30));
    for (id, r) in [("c-eu", "eu"), ("c-ap", "ap")] {
        q.ingest(report(id, r, &[("fast", false), ("slow", false)])).unwrap();
    }
    assert_eq!((q.healthy("fast"), q.healthy("slow")), (Some(false), Some(false)));
    clock.advance(Duration::from_secs(10));
    q.ingest(report("c-eu", "eu", &[("fast", true)])).unwrap();
    q.ingest(report("c-ap", "ap", &[("fast", true)])).unwrap();
    assert_eq!((q.healthy("fast"), q.healthy("slow")), (Some(true), Some(false)));
    let st = q.status();
    let slow = st.vantage_points_of("slow", "c-eu");
    assert!(slow.fresh && slow.counted && slow.age_ms == 10_000, "{slow:?}");
    assert!(!st.partitioned);
    // 30 s after the last `slow` observation it still counts; a moment later it does not, and
    // the checkers that no longer renew it make that check partitioned.
    clock.advance(Duration::from_secs(20));
    q.ingest(report("c-eu", "eu", &[("fast", true)])).unwrap();
    q.ingest(report("c-ap", "ap", &[("fast", true)])).unwrap();
    assert!(q.status().vantage_points_of("slow", "c-eu").fresh);
    clock.advance(Duration::from_millis(1));
    q.evaluate();
    assert!(!q.status().vantage_points_of("slow", "c-eu").fresh);
    assert!(q.partitioned());
    assert_eq!(q.healthy("slow"), Some(false));
}

#[test]
fn a_retired_checker_is_forgotten() {
    let (q, clock) = quorum(vec![check("us", "us")]);
    let round = |ids: &[(&str, &str)]| {
        for (id, region) in ids {
            q.ingest(report(id, region, &[("us", true)])).unwrap();
        }
    };
    let live = [("c-us", "us"), ("c-eu", "eu"), ("c-ap", "ap")];
    // Five checkers; two are retired for good (they stop reporting).
    round(&live);
    round(&[("old-1", "eu"), ("old-2", "ap")]);
    clock.advance(FORGET);
    round(&live);
    let st = q.status();
    assert_eq!((st.vantage_points_known, st.vantage_points_fresh), (5, 3));
    assert_eq!(st.checks[0].vantage_points.len(), 5, "still shown until forget_after has passed");
    clock.advance(Duration::from_millis(1));
    round(&live);
    let st = q.status();
    assert_eq!((st.vantage_points_known, st.vantage_points_fresh), (3, 3));
    let shown: Vec<&str> = st.checks[0].vantage_points.iter().map(|v| v.checker.as_str()).collect();
    assert_eq!(shown, ["c-ap", "c-eu", "c-us"]);
    // Now one more goes quiet: two of three is most, so the quorum still decides (it would
    // have been two of five, partitioned, had the retired ones counted).
    clock.advance(STALE + Duration::from_millis(1));
    q.ingest(report("c-us", "us", &[("us", true)])).unwrap();
    q.ingest(report("c-eu", "eu", &[("us", false)])).unwrap();
    assert!(!q.partitioned());
    assert_eq!(q.healthy("us"), Some(false));
    // A checker that comes back after being forgotten is simply known again.
    q.ingest(report("old-1", "eu", &[("us", false)])).unwrap();
    assert_eq!(q.status().vantage_points_known, 4);
}

#[test]
fn a_partitioned_director_forgets_nothing() {
    let (q, clock) = quorum(vec![check("us", "us"), check("eu", "eu")]);
    for (id, r) in [("c-us", "us"), ("c-eu", "eu"), ("c-ap", "ap")] {
        q.ingest(report(id, r, &[("us", true), ("eu", true)])).unwrap();
    }
    // Cut off with its own region, for far longer than forget_after: the others stay known,
    // so the director stays partitioned and keeps its verdicts whatever its region sees.
    for _ in 0..20 {
        clock.advance(STALE);
        q.ingest(report("c-us", "us", &[("us", true), ("eu", false)])).unwrap();
    }
    let st = q.status();
    assert!(st.partitioned);
    assert_eq!((st.vantage_points_known, st.vantage_points_fresh), (3, 1));
    assert_eq!(q.healthy("eu"), Some(true));
    // The partition heals (c-ap is back): the quorum decides again, and only then is the one
    // still silent for longer than forget_after (c-eu) forgotten.
    q.ingest(report("c-ap", "ap", &[("us", true), ("eu", false)])).unwrap();
    assert!(!q.partitioned());
    assert_eq!(q.healthy("eu"), Some(false));
    assert_eq!(q.status().vantage_points_known, 2);
}

impl QuorumStatus {
    fn vantage_points_of(&self, check: &str, checker: &str) -> VantageStatus {
        let c = self.checks.iter().find(|c| c.name == check).unwrap();
        c.vantage_points.iter().find(|v| v.checker == checker).unwrap().clone()
    }
}
