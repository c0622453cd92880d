//! What a checker sends the directors after each probe round (`POST /v1/observations`).

use serde::{Deserialize, Serialize};

/// One checker's observations of every check it probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The checker's node id: one vantage point.
    pub checker: String,
    /// The region the checker probes from; its observations of this region's checks do not
    /// count.
    pub region: String,
    pub observations: Vec<Observation>,
}

/// A checker's current verdict of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The check's name (`dns.health.checks[].name`).
    pub check: String,
    /// The checker's verdict after applying the failure threshold to its probes.
    pub healthy: bool,
    /// Probes passed in a row, up to the last one.
    pub consecutive_passes: u32,
    /// Probes failed in a row, up to the last one.
    pub consecutive_failures: u32,
    /// When the last probe ended, Unix time in milliseconds (the checker's clock; shown, not
    /// used for freshness).
    pub observed_at_ms: u64,
    /// Why the last probe failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
