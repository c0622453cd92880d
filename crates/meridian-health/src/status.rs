//! What `/-/status` shows about a service's health in one region. Times are given as
//! milliseconds remaining from the moment of the snapshot, since `Instant`s mean nothing
//! outside the process.

use std::time::Instant;

use serde::Serialize;

use crate::breaker::BreakerStatus;
use crate::clock::ms;
use crate::endpoint::{ActiveState, EndpointHealth};

/// One service in one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceHealthStatus {
    pub service: String,
    pub region: String,
    /// Endpoints requests may go to now, out of `total`.
    pub available: usize,
    pub total: usize,
    pub circuit: BreakerStatus,
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointStatus {
    pub address: String,
    pub available: bool,
    /// The active checker's verdict.
    pub active: ActiveState,
    /// Milliseconds left of the current ejection; absent when not ejected.
    pub ejected_remaining_ms: Option<u64>,
    /// Times ejected since the gateway built this config.
    pub ejections: u32,
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failures: u32,
}

impl EndpointStatus {
    pub(crate) fn of(ep: &EndpointHealth, address: &str, now: Instant) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        EndpointStatus {
            address: address.to_owned(),
            available: ep.is_available(now),
            active: ep.active(),
            ejected_remaining_ms: ep.ejected_until(now).map(|until| ms(until - now)),
            ejections: ep.ejections.load(Relaxed),
            consecutive_5xx: ep.consecutive_5xx.load(Relaxed),
            consecutive_gateway_failures: ep.consecutive_gateway.load(Relaxed),
        }
    }
}
