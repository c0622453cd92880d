use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use meridian_model::{HashOn, LoadBalancing};

use super::{Balancer, Ring, hash_bytes, hash_key};

const RR: LoadBalancing = LoadBalancing::RoundRobin;
const LR: LoadBalancing = LoadBalancing::LeastRequest;

fn ch() -> LoadBalancing {
    LoadBalancing::ConsistentHash { hash_on: HashOn::ClientIp }
}

fn none(_: usize) -> bool {
    false
}

fn idle(_: usize) -> u32 {
    0
}

/// How many of `n` picks went to each endpoint.
fn counts(b: &Balancer, endpoints: usize, n: usize, skip: &dyn Fn(usize) -> bool) -> Vec<usize> {
    let mut c = vec![0; endpoints];
    for _ in 0..n {
        c[b.pick(None, &idle, skip).expect("an endpoint")] += 1;
    }
    c
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:8080")).collect()
}

fn keyed(weights: &[u32], keys: &[String]) -> Balancer {
    let k: Vec<&str> = keys.iter().map(String::as_str).collect();
    Balancer::with_keys(&ch(), weights, &k, 7)
}

#[test]
fn no_endpoints_pick_none() {
    for p in [RR, LR, ch()] {
        let b = Balancer::new(&p, &[]);
        assert_eq!(b.pick(Some(1), &idle, &none), None);
        assert_eq!(b.pick(None, &idle, &none), None);
    }
}

#[test]
fn round_robin_is_smooth_and_weighted() {
    let b = Balancer::with_keys(&RR, &[3, 1], &[], 0);
    let seq: Vec<usize> = (0..8).map(|_| b.pick(None, &idle, &none).expect("pick")).collect();
    assert_eq!(seq, [0, 0, 1, 0, 0, 0, 1, 0], "interleaved, not 0 0 0 1");
    assert_eq!(counts(&b, 2, 4000, &none), [3000, 1000]);
    let b = Balancer::new(&RR, &[1, 1, 1]);
    assert_eq!(counts(&b, 3, 300, &none), [100, 100, 100]);
}

#[test]
fn round_robin_scales_down_huge_weight_sums() {
    let weights: Vec<u32> = (0..40).map(|i| if i == 0 { 1000 } else { 999 }).collect();
    let b = Balancer::with_keys(&RR, &weights, &[], 0);
    assert!(b.wrr.schedule.len() <= 4096 + 40);
    let c = counts(&b, 40, 40_000, &none);
    assert!(c.iter().all(|&n| (900..=1100).contains(&n)), "{c:?}");
}

#[test]
fn round_robin_skips() {
    let b = Balancer::new(&RR, &[1, 1, 1]);
    let c = counts(&b, 3, 300, &|i| i == 1);
    assert_eq!(c[1], 0);
    assert_eq!(c[0] + c[2], 300);
    assert_eq!(b.pick(None, &idle, &|_| true), None);
    assert_eq!(b.pick(None, &idle, &|i| i != 2), Some(2));
}

#[test]
fn least_request_prefers_the_less_loaded() {
    let b = Balancer::with_keys(&LR, &[1, 1, 1, 1], &[], 42);
    let load = |i: usize| if i == 0 { 100 } else { 0 };
    let mut c = [0usize; 4];
    for _ in 0..4000 {
        c[b.pick(None, &load, &none).expect("pick")] += 1;
    }
    // Endpoint 0 wins only when drawn twice: about 1/16 of picks.
    assert!(c[0] < 400, "{c:?}");
    assert!(c[1..].iter().all(|&n| n > 1000), "{c:?}");
}

#[test]
fn least_request_follows_weights_when_idle_and_compares_per_weight() {
    let b = Balancer::with_keys(&LR, &[3, 1], &[], 1);
    let c = counts(&b, 2, 8000, &none);
    let share = c[0] as f64 / 8000.0;
    assert!((0.80..0.98).contains(&share), "weight 3 of 4 (plus winning ties): {c:?}");
    let super::Kind::LeastRequest(lr) = &b.kind else { panic!("a least-request balancer") };
    // 5 in flight at weight 3 (2 per unit, counting the new request) beats 2 at weight 1 (3).
    assert!(lr.lighter(0, 1, &|i| if i == 0 { 5 } else { 2 }));
    assert!(!lr.lighter(0, 1, &|i| if i == 0 { 11 } else { 2 }));
}

#[test]
fn least_request_skips() {
    let b = Balancer::with_keys(&LR, &[1; 10], &[], 3);
    for _ in 0..200 {
        let p = b.pick(None, &idle, &|i| i != 7).expect("one left");
        assert_eq!(p, 7);
    }
    assert_eq!(b.pick(None, &idle, &|_| true), None);
    let c = counts(&b, 10, 1000, &|i| i % 2 == 0);
    assert!(c.iter().step_by(2).all(|&n| n == 0), "{c:?}");
}

#[test]
fn consistent_hash_is_sticky_and_falls_back_without_a_key() {
    let b = keyed(&[1, 1, 1, 1], &keys(4));
    for k in 0..1000u64 {
        let h = hash_bytes(&k.to_be_bytes());
        let first = b.pick(Some(h), &idle, &none);
        assert_eq!(b.pick(Some(h), &|_| 50, &none), first);
    }
    let c = counts(&b, 4, 400, &none);
    assert_eq!(c, [100, 100, 100, 100], "no key: weighted round robin");
}

#[test]
fn consistent_hash_removal_moves_only_the_removed_endpoints_keys() {
    let all = keys(5);
    let before = keyed(&[1; 5], &all);
    let mut fewer = all.clone();
    fewer.remove(2);
    let after = keyed(&[1; 4], &fewer);
    let n = 20_000u64;
    let (mut moved, mut on_removed) = (0, 0);
    for k in 0..n {
        let h = hash_bytes(&k.to_le_bytes());
        let a = &all[before.pick(Some(h), &idle, &none).expect("pick")];
        let b = &fewer[after.pick(Some(h), &idle, &none).expect("pick")];
        if a == &all[2] {
            on_removed += 1;
        } else {
            assert_eq!(a, b, "a key not on the removed endpoint moved");
        }
        moved += usize::from(a != b);
    }
    assert_eq!(moved, on_removed);
    let frac = moved as f64 / n as f64;
    assert!((0.14..0.26).contains(&frac), "≈1/5 of keys move, got {frac}");
}

#[test]
fn consistent_hash_skip_moves_only_the_skipped_endpoints_keys() {
    let b = keyed(&[1; 4], &keys(4));
    let mut moved_to = [0usize; 4];
    for k in 0..8000u64 {
        let h = hash_bytes(&k.to_le_bytes());
        let home = b.pick(Some(h), &idle, &none).expect("pick");
        let alt = b.pick(Some(h), &idle, &|i| i == 1).expect("pick");
        if home == 1 {
            assert_ne!(alt, 1);
            moved_to[alt] += 1;
        } else {
            assert_eq!(alt, home);
        }
    }
    // The skipped endpoint's keys spread over the others rather than all landing on one.
    assert!(moved_to.iter().enumerate().filter(|&(i, _)| i != 1).all(|(_, &n)| n > 200), "{moved_to:?}");
    assert_eq!(b.pick(Some(5), &idle, &|_| true), None);
    assert_eq!(b.pick(Some(5), &idle, &|i| i != 3), Some(3));
}

#[test]
fn consistent_hash_share_follows_weights() {
    let b = keyed(&[1, 2, 5], &keys(3));
    let mut c = [0usize; 3];
    let n = 40_000u64;
    for k in 0..n {
        c[b.pick(Some(hash_bytes(&k.to_le_bytes())), &idle, &none).expect("pick")] += 1;
    }
    for (i, w) in [1.0, 2.0, 5.0].iter().enumerate() {
        let share = c[i] as f64 / n as f64;
        let want = w / 8.0;
        assert!((share - want).abs() < want * 0.25, "endpoint {i}: {share} vs {want} ({c:?})");
    }
}

#[test]
fn ring_size_is_capped() {
    let r = Ring::new(&[1000; 200], &[]);
    assert!(r.len() <= 1 << 17, "{}", r.len());
    assert_eq!(Ring::new(&[1, 2], &[]).len(), 480);
}

#[test]
fn hash_keys() {
    let ip: IpAddr = "192.0.2.1".parse().expect("ip");
    let mut h = HeaderMap::new();
    let header = HashOn::Header("X-User".into());
    let cookie = HashOn::Cookie("session".into());
    assert_eq!(hash_key(&header, &h, ip), None);
    assert_eq!(hash_key(&cookie, &h, ip), None);
    h.insert("x-user", HeaderValue::from_static("alice"));
    h.append("cookie", HeaderValue::from_static("a=1; sessionx=no"));
    h.append("cookie", HeaderValue::from_static("b=2; session = s1 ;c=3"));
    assert_eq!(hash_key(&header, &h, ip), Some(hash_bytes(b"alice")));
    assert_eq!(hash_key(&cookie, &h, ip), Some(hash_bytes(b"s1")));
    assert_eq!(hash_key(&HashOn::ClientIp, &h, ip), Some(hash_bytes(&[192, 0, 2, 1])));
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
    assert_eq!(hash_key(&HashOn::ClientIp, &h, mapped), hash_key(&HashOn::ClientIp, &h, ip));
    assert_ne!(
        hash_key(&HashOn::ClientIp, &h, "192.0.2.2".parse().expect("ip")),
        hash_key(&HashOn::ClientIp, &h, ip)
    );
}

#[test]
fn hash_is_stable_across_builds() {
    // Fixed values: a change here silently reshuffles every sticky session.
    assert_eq!(hash_bytes(b""), super::mix64(0xcbf2_9ce4_8422_2325));
    assert_eq!(hash_bytes(b"alice"), 0x1a046f573e1e5475);
    assert_ne!(hash_bytes(b"alice"), hash_bytes(b"alicf"));
}
