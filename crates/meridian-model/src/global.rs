//! The global config: identical on every node (regions, services, routes, policies, consumers).
//!
//! These are the user-facing types, deserialized strictly (unknown keys are errors). They are
//! checked by [`crate::validate`] before anything uses them; a value of [`crate::ValidConfig`]
//! is the only form the data plane accepts.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dur::Dur;

/// The whole global config of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// The deployment this config belongs to; nodes refuse config of another deployment.
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// Regions of the deployment.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Named backends that routes point at, with endpoints grouped by region.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Routes, matched by host, path, method and headers (see docs/routing.md for precedence).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Named policies that routes list by name.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// API consumers (used by authentication policies).
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    /// What the directors (authoritative DNS) serve. Absent: no DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::dns::DnsConfig>,
}

fn default_deployment() -> String {
    "default".to_string()
}

/// A region: where gateways run and what DNS answers with for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Region name, e.g. `us-east-1`; lowercase letters, digits and `-`.
    pub name: String,
    /// Public addresses (IPv4 or IPv6) that DNS answers with for this region.
    #[serde(default)]
    pub public_addresses: Vec<String>,
    /// `host:port` of this region's gateway tier for gateway-to-gateway traffic.
    #[serde(default)]
    pub peer_address: Option<String>,
    /// Where the region is, for geoproximity and nearest-region decisions.
    #[serde(default)]
    pub location: Option<Location>,
    /// Measured or expected round-trip latency to other regions, in milliseconds, by region
    /// name; orders failover when a service gives no priority list.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_ms: BTreeMap<String, u32>,
}

/// A point on the globe, in decimal degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, -90 to 90.
    #[schemars(range(min = -90, max = 90))]
    pub lat: f64,
    /// Longitude, -180 to 180.
    #[schemars(range(min = -180, max = 180))]
    pub lon: f64,
}

/// A named backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Service name, e.g. `orders`; lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// Endpoints by region name; every key must be a region of this config.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Vec<Endpoint>>,
    /// Protocol spoken to the endpoints. Default `http1`.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// How to pick an endpoint. Default round robin.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Most requests in flight to this service from one gateway; beyond it requests get 503.
    /// Default 10000.
    #[serde(default = "default_concurrency_limit")]
    pub concurrency_limit: u32,
    /// Connection pool to the endpoints.
    #[serde(default)]
    pub pool: PoolConfig,
    /// How often hostnames in `endpoints` are resolved again when DNS gives no TTL. Default 30s.
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: Dur,
    /// Active health checks of the endpoints. Absent: none (passive detection only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<crate::resilience::HealthCheck>,
    /// Passive outlier detection.
    #[serde(default)]
    pub outlier_detection: crate::resilience::OutlierDetection,
    /// Circuit breaker per region.
    #[serde(default)]
    pub circuit_breaker: crate::resilience::CircuitBreaker,
    /// Cross-region failover.
    #[serde(default)]
    pub failover: crate::resilience::Failover,
}

fn default_concurrency_limit() -> u32 {
    10_000
}
fn default_resolve_interval() -> Dur {
    Dur::from_secs(30)
}

/// One endpoint of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `ip:port` or `hostname:port`; hostnames are re-resolved per DNS TTL.
    pub address: String,
    /// Relative weight, 1 to 1000. Default 1.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 over cleartext (prior knowledge), e.g. for gRPC.
    Http2,
}

/// Load-balancing policy of a service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "policy", rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Weighted round robin.
    #[default]
    RoundRobin,
    /// Weighted least-request: the better of two random choices (power of two choices).
    LeastRequest,
    /// Consistent hash on a request key; the basis of sticky sessions.
    ConsistentHash {
        /// What to hash.
        hash_on: HashOn,
    },
}

/// The key of consistent hashing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum HashOn {
    /// A request header's value (e.g. `x-user-id`); requests without it fall back to round robin.
    Header(String),
    /// A cookie's value (e.g. `session`).
    Cookie(String),
    /// The client's address (after `trusted_proxies` processing).
    ClientIp,
}

/// Connection pool settings of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Idle keep-alive connections kept per endpoint. Default 64.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_endpoint: u32,
    /// How long an idle pooled connection is kept. Default 90s.
    #[serde(default = "default_pool_idle")]
    pub idle_timeout: Dur,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { max_idle_per_endpoint: default_max_idle(), idle_timeout: default_pool_idle() }
    }
}

fn default_max_idle() -> u32 {
    64
}
fn default_pool_idle() -> Dur {
    Dur::from_secs(90)
}

/// A route: what requests it matches and which service serves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Route name, unique; used in logs and metrics.
    pub name: String,
    /// What requests this route matches.
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    /// The service that serves matched requests.
    pub service: String,
    /// Names of policies (from the top-level `policies`) applied to this route.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Timeouts for requests on this route.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retry behaviour for requests on this route.
    #[serde(default)]
    pub retries: RetryPolicy,
    /// Largest request body accepted, in bytes; larger gets 413. Default: the listener's limit.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Remove the matched prefix from the path before proxying (`/catalog/items` with prefix
    /// `/catalog` goes upstream as `/items`). Needs a `prefix` path matcher. Default false.
    #[serde(default)]
    pub strip_prefix: bool,
}

/// Request matchers; every given matcher must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Hosts: exact (`api.example.com`) or a leading wildcard (`*.example.com`). Empty: any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The path matcher. Absent: any path.
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// HTTP methods, upper case. Empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header matchers; all must match.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// A path matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PathMatch {
    /// The path equals this value.
    Exact(String),
    /// The path starts with this value at a segment boundary (`/api` matches `/api/x`, not `/apix`).
    Prefix(String),
    /// A template with `{name}` segments, e.g. `/users/{id}/orders`; `{*rest}` at the end takes
    /// the remainder.
    Template(String),
}

/// A header matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, case-insensitive.
    pub name: String,
    /// Exact value required. Absent: the header only has to be present.
    #[serde(default)]
    pub value: Option<String>,
    /// Match when the header is absent (or has a different value) instead. Default false.
    #[serde(default)]
    pub invert: bool,
}

/// Timeouts of a route. Absent values mean "no limit" except `connect` (default 5s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time to open a connection to an endpoint. Default 5s.
    #[serde(default = "default_connect_timeout")]
    pub connect: Dur,
    /// Time for one try to receive the response headers. Default 30s.
    #[serde(default = "default_per_try")]
    pub per_try: Option<Dur>,
    /// Time for the whole request, all tries included, until response headers. Default none.
    #[serde(default)]
    pub request: Option<Dur>,
    /// Longest silence on a streamed body (either direction) before the stream is cut.
    /// Default none: long-lived upgrades and gRPC streams are not cut unless this is set.
    #[serde(default)]
    pub idle: Option<Dur>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: default_connect_timeout(), per_try: default_per_try(), request: None, idle: None }
    }
}

fn default_connect_timeout() -> Dur {
    Dur::from_secs(5)
}
fn default_per_try() -> Option<Dur> {
    Some(Dur::from_secs(30))
}

/// Retry policy of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first try (0 disables). Default 2.
    #[serde(default = "default_retry_attempts")]
    pub attempts: u32,
    /// Retries may add at most this percentage of the route's recent requests. Default 20.
    #[serde(default = "default_retry_budget")]
    #[schemars(range(max = 100))]
    pub budget_percent: u32,
    /// Retries always allowed regardless of the budget, per second. Default 10.
    #[serde(default = "default_retry_min_per_second")]
    pub min_per_second: u32,
    /// Response statuses that cause a retry, e.g. `[502, 503]`. Default `[503]`.
    #[serde(default = "default_retry_statuses")]
    pub on_statuses: Vec<u16>,
    /// Retry non-idempotent methods (POST, PATCH) too. Default false.
    #[serde(default)]
    pub allow_non_idempotent: bool,
    /// Request bodies up to this size (bytes) are kept for replay; a request with a larger body
    /// is not retried. Default 65536.
    #[serde(default = "default_replay_bytes")]
    pub max_replay_body_bytes: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: default_retry_attempts(),
            budget_percent: default_retry_budget(),
            min_per_second: default_retry_min_per_second(),
            on_statuses: default_retry_statuses(),
            allow_non_idempotent: false,
            max_replay_body_bytes: default_replay_bytes(),
        }
    }
}

fn default_retry_attempts() -> u32 {
    2
}
fn default_retry_budget() -> u32 {
    20
}
fn default_retry_min_per_second() -> u32 {
    10
}
fn default_retry_statuses() -> Vec<u16> {
    vec![503]
}
fn default_replay_bytes() -> u64 {
    64 * 1024
}

/// A named policy. Routes list policies by name; they run in fixed phases whatever the order.
/// Exactly one kind (`headers`, `cors`) is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Policy name, unique.
    pub name: String,
    /// Add, set, remove and rename request and response headers (transform phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeadersPolicy>,
    /// Cross-origin resource sharing (admission phase answers preflights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,
}

/// Header changes. Applied in the order: remove, rename, set, add.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersPolicy {
    /// Changes to the request before it is proxied.
    #[serde(default)]
    pub request: HeaderOps,
    /// Changes to the response before it is returned.
    #[serde(default)]
    pub response: HeaderOps,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// Header names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Renames: old name → new name (values are kept).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Headers to set, replacing any existing values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers to append, keeping existing values.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// CORS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsPolicy {
    /// Allowed origins (`https://app.example.com`), or `*` for any.
    pub allow_origins: Vec<String>,
    /// Allowed methods. Default GET, HEAD, POST.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers (lower case).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow credentials (cookies). Not allowed together with origin `*`. Default false.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight. Default 10m.
    #[serde(default = "default_cors_max_age")]
    pub max_age: Dur,
}

fn default_cors_methods() -> Vec<String> {
    vec!["GET".into(), "HEAD".into(), "POST".into()]
}
fn default_cors_max_age() -> Dur {
    Dur::from_secs(600)
}

/// An API consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Consumer name, unique.
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    pub tags: Vec<String>,
}
