//! How a service stays available: active health checks, passive outlier detection, a circuit
//! breaker per service per region, and cross-region failover. Every field has a default, so a
//! service without these keys gets sensible behaviour.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dur::Dur;

/// Active health checks of a service's endpoints, run by every gateway for its own region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// What to probe. Default: HTTP `GET /` expecting 2xx/3xx.
    #[serde(default)]
    pub probe: Probe,
    /// Time between probes of one endpoint. Default 5s.
    #[serde(default = "d_interval")]
    pub interval: Dur,
    /// A probe that takes longer fails. Default 1s.
    #[serde(default = "d_timeout")]
    pub timeout: Dur,
    /// Consecutive successes that make an unhealthy endpoint healthy. Default 2.
    #[serde(default = "d_healthy")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy. Default 3.
    #[serde(default = "d_unhealthy")]
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            probe: Probe::default(),
            interval: d_interval(),
            timeout: d_timeout(),
            healthy_threshold: d_healthy(),
            unhealthy_threshold: d_unhealthy(),
        }
    }
}

/// A health probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum Probe {
    /// HTTP/1.1 GET of `path`; a status in `expected_statuses` (default 200–399) passes.
    Http {
        /// Path probed. Default `/`.
        #[serde(default = "d_path")]
        path: String,
        /// Passing statuses; empty means 200–399.
        #[serde(default)]
        expected_statuses: Vec<u16>,
    },
    /// A TCP connect that succeeds passes.
    Tcp,
}

impl Default for Probe {
    fn default() -> Self {
        Probe::Http { path: d_path(), expected_statuses: Vec::new() }
    }
}

/// Passive outlier detection: endpoints that fail real requests are ejected for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Turn passive ejection on. Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Consecutive 5xx responses that eject an endpoint. Default 5.
    #[serde(default = "d_5xx")]
    pub consecutive_5xx: u32,
    /// Consecutive connect failures, resets or timeouts that eject an endpoint. Default 3.
    #[serde(default = "d_gateway_failures")]
    pub consecutive_gateway_failures: u32,
    /// First ejection lasts this long; each further ejection of the same endpoint is longer
    /// (base × number of ejections), up to `max_ejection`. Default 10s.
    #[serde(default = "d_base_ejection")]
    pub base_ejection: Dur,
    /// Longest ejection. Default 5m.
    #[serde(default = "d_max_ejection")]
    pub max_ejection: Dur,
    /// At most this share of a region's endpoints is ejected at once. Default 50.
    #[serde(default = "d_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            enabled: true,
            consecutive_5xx: d_5xx(),
            consecutive_gateway_failures: d_gateway_failures(),
            base_ejection: d_base_ejection(),
            max_ejection: d_max_ejection(),
            max_ejection_percent: d_max_ejection_percent(),
        }
    }
}

/// A circuit breaker per service per region: closed → open (on failure rate or consecutive
/// failures in a window) → half-open (a few probe requests) → closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Turn the breaker on. Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Opens when this percentage of requests in the window failed. Default 50.
    #[serde(default = "d_failure_rate")]
    pub failure_rate_percent: u32,
    /// The rate rule applies only with at least this many requests in the window. Default 20.
    #[serde(default = "d_min_requests")]
    pub min_requests: u32,
    /// Opens after this many consecutive failures, whatever the rate. Default 10.
    #[serde(default = "d_consecutive")]
    pub consecutive_failures: u32,
    /// The window failure rates are measured over. Default 10s.
    #[serde(default = "d_window")]
    pub window: Dur,
    /// How long the breaker stays open before letting probes through. Default 5s.
    #[serde(default = "d_open_for")]
    pub open_for: Dur,
    /// Probe requests allowed while half-open; all must succeed to close. Default 3.
    #[serde(default = "d_half_open")]
    pub half_open_requests: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            enabled: true,
            failure_rate_percent: d_failure_rate(),
            min_requests: d_min_requests(),
            consecutive_failures: d_consecutive(),
            window: d_window(),
            open_for: d_open_for(),
            half_open_requests: d_half_open(),
        }
    }
}

/// Cross-region failover of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// Fail over at all. Default true.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Regions to fail over to, in priority order. Empty: every other allowed region, nearest
    /// first (by the regions' configured latencies, else their locations).
    #[serde(default)]
    pub priority: Vec<String>,
    /// Regions the service may run in (data residency); failover never leaves this set.
    /// Empty: any region.
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    /// Envoy's overprovisioning factor in percent: a region keeps all its traffic while
    /// healthy endpoints × factor ≥ 100 % of its endpoints, and spills the rest over. Default 140.
    #[serde(default = "d_overprovisioning")]
    pub overprovisioning_percent: u32,
    /// Below this share of healthy endpoints, a region ignores health and uses all of them
    /// (panic mode) when no other region can take the traffic. Default 50.
    #[serde(default = "d_panic")]
    pub panic_threshold_percent: u32,
    /// A recovered endpoint or region ramps up its share over this time. Default 30s.
    #[serde(default = "d_slow_start")]
    pub slow_start: Dur,
    /// Most requests for this service in flight from peer regions that this region accepts;
    /// beyond it peers get a retriable refusal. Default 1000.
    #[serde(default = "d_peer_limit")]
    pub max_peer_requests: u32,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            enabled: true,
            priority: Vec::new(),
            allowed_regions: Vec::new(),
            overprovisioning_percent: d_overprovisioning(),
            panic_threshold_percent: d_panic(),
            slow_start: d_slow_start(),
            max_peer_requests: d_peer_limit(),
        }
    }
}

fn d_true() -> bool {
    true
}
fn d_interval() -> Dur {
    Dur::from_secs(5)
}
fn d_timeout() -> Dur {
    Dur::from_secs(1)
}
fn d_healthy() -> u32 {
    2
}
fn d_unhealthy() -> u32 {
    3
}
fn d_path() -> String {
    "/".into()
}
fn d_5xx() -> u32 {
    5
}
fn d_gateway_failures() -> u32 {
    3
}
fn d_base_ejection() -> Dur {
    Dur::from_secs(10)
}
fn d_max_ejection() -> Dur {
    Dur::from_secs(300)
}
fn d_max_ejection_percent() -> u32 {
    50
}
fn d_failure_rate() -> u32 {
    50
}
fn d_min_requests() -> u32 {
    20
}
fn d_consecutive() -> u32 {
    10
}
fn d_window() -> Dur {
    Dur::from_secs(10)
}
fn d_open_for() -> Dur {
    Dur::from_secs(5)
}
fn d_half_open() -> u32 {
    3
}
fn d_overprovisioning() -> u32 {
    140
}
fn d_panic() -> u32 {
    50
}
fn d_slow_start() -> Dur {
    Dur::from_secs(30)
}
fn d_peer_limit() -> u32 {
    1000
}
