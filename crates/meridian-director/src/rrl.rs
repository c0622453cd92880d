//! Response rate limiting (RRL, as in BIND and Knot) against reflection abuse over UDP.
//!
//! Per client network (`/24` IPv4, `/56` IPv6 by default) and per distinct response (name,
//! type, response code), a token bucket of `burst` tokens refilled at `responses_per_second`.
//! Over the limit, responses are dropped, except every `slip`-th, which is sent truncated and
//! empty so a real resolver behind a spoofed-looking flood retries over TCP (never limited).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use ipnet::IpNet;
use meridian_model::dns::RateLimit;

/// Buckets kept before idle ones are swept.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RrlDecision {
    Send,
    /// Send a truncated, empty response (TC=1).
    Slip,
    Drop,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    limited: u32,
}

pub struct RateLimiter {
    config: RateLimit,
    buckets: Mutex<HashMap<(IpNet, u64), Bucket>>,
}

impl RateLimiter {
    pub fn new(config: RateLimit) -> Self {
        RateLimiter { config, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether to send a response identified by `response` (a hash of name, type and rcode)
    /// to `client` at `now` (injected: tests step the clock).
    pub fn check(&self, client: IpAddr, response: u64, now: Instant) -> RrlDecision {
        let c = &self.config;
        if !c.enabled {
            return RrlDecision::Send;
        }
        let prefix = if client.is_ipv4() { c.ipv4_prefix } else { c.ipv6_prefix };
        let net = IpNet::new(client, prefix).map(|n| n.trunc()).unwrap_or_else(|_| IpNet::from(client));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let full = f64::from(c.burst) / f64::from(c.responses_per_second);
            buckets.retain(|_, b| now.duration_since(b.last).as_secs_f64() < full);
        }
        let b = buckets.entry((net, response)).or_insert(Bucket {
            tokens: f64::from(c.burst),
            last: now,
            limited: 0,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * f64::from(c.responses_per_second)).min(f64::from(c.burst));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return RrlDecision::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        if c.slip > 0 && b.limited.is_multiple_of(c.slip) { RrlDecision::Slip } else { RrlDecision::Drop }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_identical_responses_per_network_with_slip() {
        let rl = RateLimiter::new(RateLimit {
            responses_per_second: 10,
            burst: 2,
            slip: 2,
            ..RateLimit::default()
        });
        let t = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_net: IpAddr = "192.0.2.200".parse().unwrap();
        assert_eq!(rl.check(a, 1, t), RrlDecision::Send);
        assert_eq!(rl.check(same_net, 1, t), RrlDecision::Send);
        assert_eq!(rl.check(a, 1, t), RrlDecision::Drop);
        assert_eq!(rl.check(a, 1, t), RrlDecision::Slip);
        assert_eq!(rl.check(a, 2, t), RrlDecision::Send, "another response has its own bucket");
        assert_eq!(rl.check("198.51.100.1".parse().unwrap(), 1, t), RrlDecision::Send, "another network");
        assert_eq!(rl.check(a, 1, t + Duration::from_millis(100)), RrlDecision::Send, "refilled");
        let off = RateLimiter::new(RateLimit { enabled: false, burst: 1, ..RateLimit::default() });
        assert!((0..10).all(|_| off.check(a, 1, t) == RrlDecision::Send));
    }
}
