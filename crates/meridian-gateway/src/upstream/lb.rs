//! Load balancing: weighted round robin, least-request (P2C), consistent hash.
//!
//! A [`Balancer`] is built once per endpoint list and picks with `&self` using atomics only:
//! - round robin walks a precomputed smooth-WRR schedule (nginx's interleaving, so weight 3:1
//!   gives `a a b a`, not `a a a b`) with an atomic cursor;
//! - least-request samples two endpoints by weight and keeps the one with the lower
//!   `in_flight / weight` (power of two choices, as Envoy);
//! - consistent hash looks the key up on a ketama ring (up to 160 points per unit of weight);
//!   a skipped endpoint's keys go to the next distinct endpoint on the ring, the rest stay put.
//!
//! Weights of 0 count as 1 (the model allows 1 to 1000).

mod ring;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use http::HeaderMap;
use http::header::COOKIE;
use meridian_model::{HashOn, LoadBalancing};

use ring::Ring;

/// Longest round-robin schedule; larger weight sums are scaled down to it.
const MAX_SCHEDULE: u64 = 4096;
/// Tries to draw a non-skipped endpoint at random before scanning them all.
const RANDOM_TRIES: usize = 4;

/// Picks endpoints of one fixed endpoint list.
#[derive(Debug)]
pub struct Balancer {
    kind: Kind,
    /// Weighted round robin: the policy itself, and the fallback of hashing without a key.
    wrr: Wrr,
}

#[derive(Debug)]
enum Kind {
    RoundRobin,
    LeastRequest(LeastRequest),
    ConsistentHash(Ring),
}

impl Balancer {
    /// A balancer over endpoints `0..weights.len()`. Ring positions derive from the index, so
    /// prefer [`Balancer::with_keys`] when endpoints come and go (e.g. after DNS changes).
    pub fn new(policy: &LoadBalancing, weights: &[u32]) -> Balancer {
        let keys: Vec<String> = (0..weights.len()).map(|i| i.to_string()).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        Balancer::with_keys(policy, weights, &keys, rand::random())
    }

    /// A balancer whose consistent-hash ring is placed by stable endpoint `keys` (e.g. their
    /// addresses; same length as `weights`), so removing an endpoint moves only its own keys.
    /// `seed` drives the random choices of least-request and the round-robin start.
    pub fn with_keys(policy: &LoadBalancing, weights: &[u32], keys: &[&str], seed: u64) -> Balancer {
        let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
        let kind = match policy {
            LoadBalancing::RoundRobin => Kind::RoundRobin,
            LoadBalancing::LeastRequest => Kind::LeastRequest(LeastRequest::new(&weights, seed)),
            LoadBalancing::ConsistentHash { .. } => Kind::ConsistentHash(Ring::new(&weights, keys)),
        };
        Balancer { kind, wrr: Wrr::new(&weights, seed) }
    }

    /// Picks an endpoint index. `hash`: the request's key (consistent hash only; `None` falls back
    /// to weighted round robin); `in_flight(i)`: requests in flight at endpoint `i`
    /// (least-request); `skip(i)`: endpoints not to use (unhealthy, already tried). `None` when
    /// every endpoint is skipped.
    pub fn pick(
        &self,
        hash: Option<u64>,
        in_flight: &dyn Fn(usize) -> u32,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match (&self.kind, hash) {
            (Kind::ConsistentHash(ring), Some(h)) => ring.pick(h, skip),
            (Kind::LeastRequest(lr), _) => lr.pick(in_flight, skip),
            _ => self.wrr.pick(skip),
        }
    }
}

/// Smooth weighted round robin over a precomputed schedule.
#[derive(Debug)]
struct Wrr {
    schedule: Vec<u32>,
    cursor: AtomicUsize,
}

impl Wrr {
    fn new(weights: &[u64], seed: u64) -> Wrr {
        let total: u64 = weights.iter().sum();
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let mut w: Vec<i64> = weights.iter().map(|&x| (x / g) as i64).collect();
        if total / g > MAX_SCHEDULE {
            for (x, &orig) in w.iter_mut().zip(weights) {
                *x = ((orig * MAX_SCHEDULE / total) as i64).max(1);
            }
        }
        let len: i64 = w.iter().sum();
        let mut current = vec![0i64; w.len()];
        let mut schedule = Vec::with_capacity(len as usize);
        for _ in 0..len {
            let mut best = 0;
            for i in 0..w.len() {
                current[i] += w[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= len;
            schedule.push(best as u32);
        }
        let start = if schedule.is_empty() { 0 } else { (seed % schedule.len() as u64) as usize };
        Wrr { schedule, cursor: AtomicUsize::new(start) }
    }

    fn pick(&self, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| self.schedule[(start.wrapping_add(k)) % n] as usize).find(|&i| !skip(i))
    }
}

/// Weighted power of two choices.
#[derive(Debug)]
struct LeastRequest {
    weights: Vec<u64>,
    /// Running sums of `weights`, for sampling by weight.
    cumulative: Vec<u64>,
    rng: AtomicU64,
}

impl LeastRequest {
    fn new(weights: &[u64], seed: u64) -> LeastRequest {
        let cumulative = weights
            .iter()
            .scan(0u64, |acc, &w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        LeastRequest { weights: weights.to_vec(), cumulative, rng: AtomicU64::new(seed) }
    }

    /// A lock-free splitmix64 stream shared by all threads.
    fn random(&self) -> u64 {
        mix64(self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed))
    }

    fn sample(&self, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total = *self.cumulative.last()?;
        for _ in 0..RANDOM_TRIES {
            let r = self.random() % total;
            let i = self.cumulative.partition_point(|&c| c <= r);
            if !skip(i) {
                return Some(i);
            }
        }
        None
    }

    /// Whether `a` is less loaded than `b` relative to their weights.
    fn lighter(&self, a: usize, b: usize, in_flight: &dyn Fn(usize) -> u32) -> bool {
        (u64::from(in_flight(a)) + 1) * self.weights[b] <= (u64::from(in_flight(b)) + 1) * self.weights[a]
    }

    fn pick(&self, in_flight: &dyn Fn(usize) -> u32, skip: &dyn Fn(usize) -> bool) -> Option<usize> {
        match (self.sample(skip), self.sample(skip)) {
            (Some(a), Some(b)) => Some(if self.lighter(a, b, in_flight) { a } else { b }),
            (Some(a), None) | (None, Some(a)) => Some(a),
            // Most endpoints are skipped: scan for the least loaded of the rest.
            (None, None) => (0..self.weights.len())
                .filter(|&i| !skip(i))
                .reduce(|best, i| if self.lighter(best, i, in_flight) { best } else { i }),
        }
    }
}

/// The hash key of a request for consistent hashing: a header's value, a cookie's value or the
/// client address; `None` when the header or cookie is absent (the caller then round-robins).
/// The hash is FNV-1a with a 64-bit finaliser, stable across builds and versions.
pub fn hash_key(on: &HashOn, headers: &HeaderMap, client_ip: IpAddr) -> Option<u64> {
    match on {
        HashOn::Header(name) => headers.get(name.as_str()).map(|v| hash_bytes(v.as_bytes())),
        HashOn::Cookie(name) => cookie(headers, name).map(hash_bytes),
        HashOn::ClientIp => Some(match client_ip.to_canonical() {
            IpAddr::V4(v4) => hash_bytes(&v4.octets()),
            IpAddr::V6(v6) => hash_bytes(&v6.octets()),
        }),
    }
}

/// The value of cookie `name` from the `Cookie` headers (HTTP/2 may send several).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(COOKIE).iter().flat_map(|v| v.as_bytes().split(|&b| b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// FNV-1a, then a finaliser so that close keys land far apart on the ring.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// splitmix64's finaliser.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
