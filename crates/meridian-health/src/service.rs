//! The endpoints of one service in one region, passive outlier detection, and the breaker.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use meridian_model::{CircuitBreaker, OutlierDetection};

use crate::breaker::{Breaker, Names};
use crate::clock::ms;
use crate::endpoint::{ActiveState, EndpointHealth, reset};
use crate::status::{EndpointStatus, ServiceHealthStatus};

/// What happened to one real request sent to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any answer that is not a 5xx.
    Success,
    /// The endpoint answered with a 5xx status.
    Http5xx,
    /// No answer: connect refused, connection reset, or timed out. Counts as a 5xx too (the
    /// client sees a 502/504), as in Envoy.
    GatewayFailure,
}

/// Who a [`ServiceHealth`] is about, for log lines and the status page.
#[derive(Debug, Clone)]
pub struct Labels {
    /// The service's name in the config.
    pub service: Arc<str>,
    /// The region these endpoints are in.
    pub region: Arc<str>,
    /// The endpoints' configured addresses, in order; their count is the endpoint count.
    pub endpoints: Vec<String>,
}

/// The endpoints of one service in one region + outlier detection + circuit breaker.
pub struct ServiceHealth {
    labels: Labels,
    endpoints: Box<[EndpointHealth]>,
    outlier: OutlierDetection,
    base_ms: u64,
    max_ms: u64,
    breaker: Breaker,
    /// Taken only to eject (rare), so that counting the ejected endpoints and ejecting one more
    /// is one step and two racing requests cannot both pass `max_ejection_percent`.
    eject: Mutex<()>,
}

impl ServiceHealth {
    /// Health state for `labels.endpoints`; `active_checked` when the service has an active
    /// health check (see [`EndpointHealth::new`] for how endpoints start). Every time this
    /// object stores counts from `epoch`, normally the instant it is built.
    pub fn new(
        labels: Labels,
        outlier: &OutlierDetection,
        breaker: &CircuitBreaker,
        active_checked: bool,
        epoch: Instant,
    ) -> Self {
        let names = Names { service: labels.service.clone(), region: labels.region.clone() };
        ServiceHealth {
            endpoints: labels.endpoints.iter().map(|_| EndpointHealth::new(active_checked, epoch)).collect(),
            labels,
            outlier: outlier.clone(),
            base_ms: ms(outlier.base_ejection.get()),
            max_ms: ms(outlier.max_ejection.get()),
            breaker: Breaker::new(breaker, names, epoch),
            eject: Mutex::new(()),
        }
    }

    /// Endpoint `i` (in the order of `labels.endpoints`). Panics when out of range, like slice
    /// indexing.
    pub fn endpoint(&self, i: usize) -> &EndpointHealth {
        &self.endpoints[i]
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when the service has no endpoints in this region.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The outcome of a real request at endpoint `i`: feeds the breaker (call once per request
    /// the breaker admitted) and passive outlier detection. An endpoint is ejected after
    /// `consecutive_5xx` 5xx answers or `consecutive_gateway_failures` gateway failures in a
    /// row, for `base_ejection` × (ejections in its streak), at most `max_ejection`; a streak
    /// ends when the endpoint stays un-ejected for `max_ejection`. An ejection that would put
    /// more than `max_ejection_percent` of the endpoints out is skipped (so a single endpoint
    /// at 50 % is never ejected: the breaker and failover deal with a dead region).
    /// Panics when `i` is out of range.
    pub fn record(&self, i: usize, outcome: Outcome, now: Instant) {
        self.breaker.record(outcome == Outcome::Success, now);
        let ep = &self.endpoints[i];
        if !self.outlier.enabled {
            return;
        }
        match outcome {
            Outcome::Success => {
                reset(&ep.consecutive_5xx);
                reset(&ep.consecutive_gateway);
                self.log_return(i, ep.ticks(now));
            }
            Outcome::Http5xx => {
                reset(&ep.consecutive_gateway);
                // `==`: exactly one request crosses the threshold, so only one tries to eject.
                if ep.consecutive_5xx.fetch_add(1, Relaxed) + 1 == self.outlier.consecutive_5xx.max(1) {
                    self.try_eject(i, Reason::Consecutive5xx, now);
                }
            }
            Outcome::GatewayFailure => {
                let gw = ep.consecutive_gateway.fetch_add(1, Relaxed) + 1;
                let all = ep.consecutive_5xx.fetch_add(1, Relaxed) + 1;
                if gw == self.outlier.consecutive_gateway_failures.max(1) {
                    self.try_eject(i, Reason::ConsecutiveGatewayFailures, now);
                } else if all == self.outlier.consecutive_5xx.max(1) {
                    self.try_eject(i, Reason::Consecutive5xx, now);
                }
            }
        }
    }

    fn try_eject(&self, i: usize, reason: Reason, now: Instant) {
        let _one_at_a_time = self.eject.lock().unwrap_or_else(PoisonError::into_inner);
        let ep = &self.endpoints[i];
        let t = ep.ticks(now);
        ep.reset_consecutive();
        if ep.is_ejected(t) {
            // Requests sent before the ejection are still failing; nothing new.
            return;
        }
        let (service, region, address) = self.names(i);
        let ejected = self.endpoints.iter().filter(|e| e.is_ejected(t)).count();
        let limit = u64::from(self.outlier.max_ejection_percent) * self.len() as u64;
        if (ejected as u64 + 1) * 100 > limit {
            tracing::warn!(%service, %region, endpoint = i, %address, %reason, ejected,
                max_ejection_percent = self.outlier.max_ejection_percent,
                "endpoint not ejected: too many endpoints are ejected already");
            return;
        }
        let last_end = ep.ejection_end();
        let streak = if last_end != 0 && t.saturating_sub(last_end) >= self.max_ms {
            1
        } else {
            ep.streak.load(Relaxed).saturating_add(1)
        };
        let duration = self.base_ms.saturating_mul(u64::from(streak)).min(self.max_ms);
        ep.streak.store(streak, Relaxed);
        ep.ejections.fetch_add(1, Relaxed);
        ep.eject_until(t + duration);
        tracing::warn!(%service, %region, endpoint = i, %address, %reason, ejection_ms = duration,
            streak, "endpoint ejected");
    }

    /// Logs, once, that an ejection has run out (ejections end by time, not by an event).
    fn log_return(&self, i: usize, now_ticks: u64) {
        let ep = &self.endpoints[i];
        if ep.ejection_unlogged.load(Relaxed)
            && !ep.is_ejected(now_ticks)
            && ep.ejection_unlogged.swap(false, Relaxed)
        {
            let (service, region, address) = self.names(i);
            tracing::info!(%service, %region, endpoint = i, %address, "endpoint back from ejection");
        }
    }

    /// Available endpoints and all endpoints, for priority and overprovisioning decisions.
    /// Walks the endpoints (two atomic loads each), without allocating.
    pub fn available(&self, now: Instant) -> (usize, usize) {
        let mut up = 0;
        for (i, ep) in self.endpoints.iter().enumerate() {
            if ep.is_available(now) {
                up += 1;
                self.log_return(i, ep.ticks(now));
            }
        }
        (up, self.len())
    }

    /// Applies an active-check verdict to endpoint `i` and logs the change.
    pub(crate) fn set_active(&self, i: usize, state: ActiveState, now: Instant, why: &dyn fmt::Display) {
        let prev = self.endpoints[i].set_active(state, now);
        if prev != state {
            let (service, region, address) = self.names(i);
            tracing::info!(%service, %region, endpoint = i, %address, from = ?prev, to = ?state,
                last_probe = %why, "endpoint health changed");
        }
    }

    fn names(&self, i: usize) -> (&str, &str, &str) {
        let address = self.labels.endpoints.get(i).map_or("", String::as_str);
        (&self.labels.service, &self.labels.region, address)
    }

    /// Snapshot for `/-/status`.
    pub fn status(&self, now: Instant) -> ServiceHealthStatus {
        let endpoints: Vec<EndpointStatus> = self
            .endpoints
            .iter()
            .zip(&self.labels.endpoints)
            .map(|(ep, address)| EndpointStatus::of(ep, address, now))
            .collect();
        ServiceHealthStatus {
            service: self.labels.service.to_string(),
            region: self.labels.region.to_string(),
            available: endpoints.iter().filter(|e| e.available).count(),
            total: endpoints.len(),
            circuit: self.breaker.status(now),
            endpoints,
        }
    }
}

/// Why an endpoint was ejected, for log lines.
#[derive(Debug, Clone, Copy)]
enum Reason {
    Consecutive5xx,
    ConsecutiveGatewayFailures,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Consecutive5xx => "consecutive_5xx",
            Reason::ConsecutiveGatewayFailures => "consecutive_gateway_failures",
        })
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
