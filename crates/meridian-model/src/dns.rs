//! The `dns` section of the global config: what the directors (authoritative DNS) serve.
//!
//! Shaped like Route 53: hosted zones, record sets with a routing policy each, plus the tables
//! the client-dependent policies read (`latency`, `geo`). Names are absolute (trailing dot).
//! Members that name a region answer with that region's `public_addresses` (A or AAAA by
//! family). See docs/dns.md.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dur::Dur;
use crate::global::Location;

/// What the directors serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Zones the directors are authoritative for; queries outside them are REFUSED.
    pub zones: Vec<Zone>,
    /// Record sets, each inside one zone, one per name and type.
    #[serde(default)]
    pub record_sets: Vec<RecordSet>,
    /// Client networks → latency to each region, for `latency` policies. The longest matching
    /// prefix wins. Default: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyRow>,
    /// Client networks → continent, country and coordinates, for `geolocation` and
    /// `geoproximity` policies. The longest matching prefix wins. Default: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geo: Vec<GeoRow>,
    /// Largest UDP response the directors send, in bytes, whatever larger size a client
    /// advertises with EDNS(0); bigger answers are truncated (TC) so the client retries over
    /// TCP. 512 to 4096. Default 1232 (the DNS flag day 2020 value, no IP fragmentation).
    #[serde(default = "default_udp_payload")]
    pub max_udp_payload: u16,
    /// Response rate limiting against reflection abuse (UDP only).
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// Health checks run by the checkers in every region and judged by the directors' quorum.
    /// Absent: every region and member counts as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DnsHealth>,
    /// Routing controls (manual failover, as Route 53 ARC): on/off switches kept by the
    /// control plane that take regions and record-set members out of answers whatever their
    /// health, and the safety rules every change must keep. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_controls: Option<RoutingControls>,
}

fn default_udp_payload() -> u16 {
    1232
}

/// A zone (Route 53's hosted zone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Absolute zone name, e.g. `api.example.com.`.
    pub name: String,
    /// TTL of the SOA and NS records, and of record sets that set none. Default 60s.
    #[serde(default = "default_ttl")]
    pub ttl: Dur,
    /// The SOA record's fields (the serial is the directors': it grows with each applied
    /// config version).
    #[serde(default)]
    pub soa: Soa,
    /// The zone's name servers (the directors), answered at the apex. At least one.
    pub ns: Vec<NameServer>,
}

fn default_ttl() -> Dur {
    Dur::from_secs(60)
}

/// SOA fields besides the serial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Soa {
    /// Primary name server (absolute). Default: the zone's first `ns` name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mname: Option<String>,
    /// Responsible mailbox as a name (absolute), e.g. `hostmaster.example.com.`.
    /// Default: `hostmaster.` + the zone name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rname: Option<String>,
    /// Secondary refresh interval. Default 1h.
    #[serde(default = "default_refresh")]
    pub refresh: Dur,
    /// Secondary retry interval. Default 10m.
    #[serde(default = "default_retry")]
    pub retry: Dur,
    /// How long secondaries keep serving without refresh. Default 336h (14 days).
    #[serde(default = "default_expire")]
    pub expire: Dur,
    /// Negative-caching TTL (RFC 2308): NXDOMAIN and NODATA answers are cached for the
    /// smaller of this and the zone TTL. Default 60s.
    #[serde(default = "default_ttl")]
    pub minimum: Dur,
}

impl Default for Soa {
    fn default() -> Self {
        Soa {
            mname: None,
            rname: None,
            refresh: default_refresh(),
            retry: default_retry(),
            expire: default_expire(),
            minimum: default_ttl(),
        }
    }
}

fn default_refresh() -> Dur {
    Dur::from_secs(3600)
}
fn default_retry() -> Dur {
    Dur::from_secs(600)
}
fn default_expire() -> Dur {
    Dur::from_secs(14 * 24 * 3600)
}

/// A name server of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameServer {
    /// Absolute name, e.g. `ns1.api.example.com.`.
    pub name: String,
    /// Its IP address; required when the name is inside the zone (answered as glue and for A /
    /// AAAA queries of that name). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Record types a record set may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RecordType {
    A,
    #[allow(clippy::upper_case_acronyms)]
    AAAA,
    #[allow(clippy::upper_case_acronyms)]
    CNAME,
    #[allow(clippy::upper_case_acronyms)]
    TXT,
}

/// A record set: a name and type inside a zone, answered by its routing policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSet {
    /// Absolute name inside a zone, e.g. `www.api.example.com.`.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// TTL of the answers. Default: the zone's `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Dur>,
    /// How the answer is chosen.
    pub policy: RoutingPolicy,
    /// Which `dns.health` check decides each region member of this record set, by region
    /// name, e.g. `{ us-east-1: orders-us-east-1 }` for the region's check of the service this
    /// name serves. Default: the check named like the region.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub health_checks: BTreeMap<String, String>,
}

/// A routing policy (Route 53's routing policies). Every policy answers with all its members
/// when none is healthy (fail open), never with an empty answer because of health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// Always the same answer.
    Simple {
        /// A region: its public addresses of the record set's family.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Literal values.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        values: Vec<String>,
    },
    /// The primary region while it is healthy, else the secondary.
    Failover {
        /// Region answered while healthy.
        primary: String,
        /// Region answered when the primary is not healthy.
        secondary: String,
    },
    /// One member picked at random in proportion to its weight; weight-0 members are
    /// standbys, answered only when every weighted member is unavailable.
    Weighted { members: Vec<WeightedMember> },
    /// The healthy region with the lowest latency to the client's network (`dns.latency`).
    /// Regions a matching row does not list count as unreachable; without a matching row, the
    /// first healthy region listed.
    Latency { regions: Vec<String> },
    /// Rules by country, then continent, then the default rule, from the client's `dns.geo`
    /// row. No rule matching (and no default): an empty (NODATA) answer.
    Geolocation { rules: Vec<GeoRule> },
    /// The region nearest to the client (`dns.geo` row coordinates, regions' `location`),
    /// distances scaled by bias. Without client coordinates, the first healthy member.
    Geoproximity { members: Vec<GeoproximityMember> },
    /// Up to 8 values from healthy members, rotated per query.
    Multivalue { members: Vec<Target> },
}

/// What a member answers with: a region's public addresses, or literal values. Exactly one.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A region: its `public_addresses` of the record set's family (A or AAAA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Literal values: IP addresses (A/AAAA), one absolute name (CNAME) or strings (TXT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The `dns.health` check that decides this member (before `health_checks`). Default: a
    /// region member's region check; a member given by values is always healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
}

/// A member of a weighted record set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedMember {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Relative weight, 0 to 255 (0: standby). Required.
    pub weight: u8,
    /// The `dns.health` check that decides this member (before `health_checks`). Default: a
    /// region member's region check; a member given by values is always healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
}

/// A geolocation rule; no `country` and no `continent` makes it the default rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoRule {
    /// ISO 3166-1 alpha-2 country code, upper case, e.g. `DE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Continent code: AF, AN, AS, EU, NA, OC or SA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The `dns.health` check that decides this member (before `health_checks`). Default: a
    /// region member's region check; a member given by values is always healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<String>,
}

/// A member of a geoproximity record set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoproximityMember {
    /// A region with a `location`.
    pub region: String,
    /// -99 to 99: positive draws clients from farther away (distance × (1 − bias/100)),
    /// negative pushes them off. Default 0.
    #[serde(default)]
    pub bias: i8,
}

/// A row of the latency table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LatencyRow {
    /// Client network, e.g. `198.51.100.0/24`.
    pub cidr: String,
    /// Round-trip latency in milliseconds from that network, by region name.
    pub region_ms: BTreeMap<String, u32>,
}

/// A row of the geo table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoRow {
    /// Client network, e.g. `203.0.113.0/24`.
    pub cidr: String,
    /// Continent code (AF, AN, AS, EU, NA, OC, SA). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continent: Option<String>,
    /// ISO 3166-1 alpha-2 country code, upper case. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Where the network is, for geoproximity. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// Response rate limiting (RRL): per client network, a token bucket per distinct response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Identical responses per second to one client network. Default 200.
    #[serde(default = "default_rps")]
    pub responses_per_second: u32,
    /// Bucket size (burst), in responses. Default 400.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Every `slip`-th limited response is sent truncated (TC, empty) so a real client retries
    /// over TCP; the others are dropped. 0: drop all. Default 2.
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// IPv4 client network size, in prefix bits. Default 24.
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: u8,
    /// IPv6 client network size, in prefix bits. Default 56.
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            enabled: true,
            responses_per_second: default_rps(),
            burst: default_burst(),
            slip: default_slip(),
            ipv4_prefix: default_v4_prefix(),
            ipv6_prefix: default_v6_prefix(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_rps() -> u32 {
    200
}
fn default_burst() -> u32 {
    400
}
fn default_slip() -> u32 {
    2
}
fn default_v4_prefix() -> u8 {
    24
}
fn default_v6_prefix() -> u8 {
    56
}

/// Health checks for DNS answers (Route 53's health checks): what the checkers probe, how
/// often, and how the directors combine the vantage points' observations.
///
/// A region member of a record set is healthy when the check named like the region is (no
/// such check: healthy), unless the record set's `health_checks` or the member's
/// `health_check` name another. Checkers in every region probe every probed check; a director drops a
/// region's observations of itself and calls a check healthy when more than `quorum` of the
/// other fresh vantage points (checkers) say so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsHealth {
    /// Time between two probes of a check by one checker (Route 53's RequestInterval),
    /// 100ms to 5m; sub-second allowed. Default 10s.
    #[serde(default = "default_check_interval")]
    pub interval: Dur,
    /// A probe (connect and answer) not done within this fails; at most `interval`.
    /// Default 2s.
    #[serde(default = "default_check_timeout")]
    pub timeout: Dur,
    /// Consecutive probe results that change a checker's verdict of a check, in either
    /// direction (Route 53's FailureThreshold), 1 to 10. Default 3.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// A checker's observation of a check older than this (by the director's clock, from when
    /// it arrived) no longer counts. Set, it applies to every check and must be at least every
    /// check's interval. Default: per check, 3 × that check's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Dur>,
    /// A vantage point (checker) not heard from for this long is forgotten: it no longer
    /// counts among the known vantage points of the partition rule, nor shows in explanations.
    /// A partitioned director forgets nothing (docs/dns.md). At least the largest staleness.
    /// Default: 10 × the largest staleness of any check, at least 5m (retiring a checker is
    /// an operator's act, not a matter of seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_after: Option<Dur>,
    /// The share of the other fresh vantage points that must agree: a check is healthy when
    /// more than this share say healthy, unhealthy when more than the rest say unhealthy;
    /// exactly on the line keeps the last verdict. Strictly between 0 and 1. Default: 0.5 (a
    /// majority) with fewer than five vantage points, 0.18 (Route 53's) with five or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<f64>,
    /// The checks, each with a unique name.
    #[serde(default)]
    pub checks: Vec<DnsCheck>,
}

fn default_check_interval() -> Dur {
    Dur::from_secs(10)
}
fn default_check_timeout() -> Dur {
    Dur::from_secs(2)
}
fn default_failure_threshold() -> u32 {
    3
}

impl DnsHealth {
    /// `staleness` or its default for a check probed every `interval` (the default one).
    pub fn staleness(&self) -> std::time::Duration {
        self.staleness.map_or(self.interval.get() * 3, Dur::get)
    }

    /// How often check `c` is probed: its `interval` or the default.
    pub fn interval_of(&self, c: &DnsCheck) -> std::time::Duration {
        c.interval.unwrap_or(self.interval).get()
    }

    /// The probe time limit of check `c`: its `timeout`, else the default capped at its
    /// interval.
    pub fn timeout_of(&self, c: &DnsCheck) -> std::time::Duration {
        c.timeout.map_or_else(|| self.timeout.get().min(self.interval_of(c)), Dur::get)
    }

    /// The failure threshold of check `c`: its own or the default.
    pub fn failure_threshold_of(&self, c: &DnsCheck) -> u32 {
        c.failure_threshold.unwrap_or(self.failure_threshold)
    }

    /// How long an observation of check `c` counts: `staleness`, else 3 × the check's interval.
    pub fn staleness_of(&self, c: &DnsCheck) -> std::time::Duration {
        self.staleness.map_or(self.interval_of(c) * 3, Dur::get)
    }

    /// The largest staleness of any check (the default one when there are no checks).
    pub fn max_staleness(&self) -> std::time::Duration {
        self.checks.iter().map(|c| self.staleness_of(c)).fold(self.staleness(), std::time::Duration::max)
    }

    /// `forget_after` or its default, 10 × the largest staleness and at least 5 minutes.
    pub fn forget_after(&self) -> std::time::Duration {
        self.forget_after
            .map_or_else(|| (self.max_staleness() * 10).max(std::time::Duration::from_secs(300)), Dur::get)
    }
}

/// How a check probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckProtocol {
    /// HTTP/1.1 `GET path`; a 2xx or 3xx status passes.
    #[default]
    Http,
    /// The same over TLS; the certificate is not verified (as Route 53).
    Https,
    /// A TCP connect passes.
    Tcp,
    /// Not probed: combines the verdicts of `children` (at least `min_healthy` healthy).
    Calculated,
}

/// One health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsCheck {
    /// Unique name; a check named like a region decides that region's health in answers.
    pub name: String,
    /// Default `http`.
    #[serde(default)]
    pub protocol: CheckProtocol,
    /// The region this check probes: its checkers' observations of it do not count, and
    /// without `address` the probe goes to the region's first public address and `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `ip:port` to probe. Default: the region's first public address and `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port used with the region's address, e.g. the gateways' admin port. Required when
    /// `address` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP(S) path, e.g. `/-/ready` (gateway tier) or `/-/health/services/orders` (one
    /// service, as the region itself can serve it). Default `/-/ready`.
    #[serde(default = "default_check_path")]
    pub path: String,
    /// HTTP(S) `Host` header. Default: the probed address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Time between two probes of this check by one checker, 100ms to 5m. Default:
    /// `dns.health.interval`. Not for calculated checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Dur>,
    /// A probe of this check not done within this fails; above 0 and at most the check's
    /// interval. Default: `dns.health.timeout`, capped at the check's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Consecutive results that change a checker's verdict of this check, 1 to 10. Default:
    /// `dns.health.failure_threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// Calculated checks: the names of the checks combined (probed checks, not calculated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Calculated checks: how many children must be healthy; 1 is OR, the number of
    /// children is AND. Default: all children (AND).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy: Option<u32>,
}

fn default_check_path() -> String {
    "/-/ready".to_string()
}

/// The routing controls and their safety rules. A control's state (on or off) is control-plane
/// state (`meridian routing-control set`), versioned apart from the config; a control never set
/// is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingControls {
    /// The switches, each with a unique name.
    pub controls: Vec<RoutingControl>,
    /// Rules every change of a control must keep; a change that breaks one is refused, naming
    /// it. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_rules: Vec<SafetyRule>,
    /// After a change, a control cannot change again for this long (against flapping).
    /// Default 0s (no wait).
    #[serde(default)]
    pub wait_period: Dur,
}

/// One switch. Off: its region (in every record set, or only in `record_set`) is left out of
/// answers whatever its health. Without `region`, it switches nothing in answers: a master
/// switch for a gating rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingControl {
    /// Unique name: letters, digits, `-` and `_`, e.g. `us-east-1` or `failover-eu`.
    pub name: String,
    /// The region this control switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Only the region's members of the record sets with this name (every type), e.g.
    /// `failover.api.example.com.`. Default: every record set. Needs `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_set: Option<String>,
}

/// A safety rule (as Route 53 ARC's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SafetyRule {
    /// At least `min_on` of `controls` stay on after every change, e.g. at least one region.
    Assertion {
        /// Unique rule name, given in the refusal.
        name: String,
        controls: Vec<String>,
        /// 1 to the number of `controls`.
        min_on: u32,
    },
    /// `controls` may change only while the control `gate` is on (a master switch).
    Gating {
        /// Unique rule name, given in the refusal.
        name: String,
        /// The master switch; not itself one of `controls`.
        gate: String,
        controls: Vec<String>,
    },
}

impl SafetyRule {
    pub fn name(&self) -> &str {
        match self {
            SafetyRule::Assertion { name, .. } | SafetyRule::Gating { name, .. } => name,
        }
    }
}
