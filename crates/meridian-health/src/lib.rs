//! Layer 2 of Meridian: the health of a service's endpoints in one region, as the gateway sees
//! it (DESIGN §3 flow 3, §7 "Health": gateways use fast local checks for their own endpoints).
//!
//! - [`EndpointHealth`]: one endpoint's active verdict, passive ejection and slow start.
//! - [`ServiceHealth`]: a service's endpoints in a region, passive outlier detection
//!   ([`ServiceHealth::record`]) and the [`Breaker`]; [`ServiceHealth::status`] for `/-/status`.
//! - [`spawn_active_checks`]: the active checker tasks.
//!
//! For DNS (DESIGN §7 "Health"), the checker role and the directors' quorum:
//!
//! - [`run_checker`] / [`run_probes`]: `meridian checker`, a stateless prober in one region
//!   that probes each check of the config's `dns.health` on its own interval and POSTs a
//!   [`Report`] to every director; its config comes from a file or the control plane.
//! - [`Quorum`]: a director's view of those reports: self-observations dropped, a share of the
//!   other fresh vantage points decides, a partitioned director keeps its last verdicts.
//!
//! Everything a request touches is atomics, no locks and no allocation; time comes in as a
//! `now: Instant` argument, so the rules are tested with fixed instants.
//!
//! Per request, the gateway asks the breaker, picks among available endpoints (weighting by
//! slow start), and reports the outcome once, which feeds both the breaker and passive
//! detection:
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use meridian_health::{Labels, Outcome, ServiceHealth};
//! # use meridian_model::{CircuitBreaker, OutlierDetection};
//! let now = Instant::now();
//! let endpoints = vec!["10.0.0.1:80".into()];
//! let labels = Labels { service: "orders".into(), region: "eu".into(), endpoints };
//! let (outlier, breaker) = (OutlierDetection::default(), CircuitBreaker::default());
//! let health = ServiceHealth::new(labels, &outlier, &breaker, true, now);
//! if health.breaker().try_acquire(now) {
//!     let i = 0; // the picker's choice among endpoints with `is_available(now)`
//!     let _weight = health.endpoint(i).slow_start_factor(now, Duration::from_secs(30));
//!     health.record(i, Outcome::Success, now);
//! } // else: fail over to the next region, or answer 503
//! assert_eq!(health.available(now), (1, 1));
//! ```

mod active;
mod breaker;
mod checker;
mod clock;
mod endpoint;
mod probe;
mod quorum;
mod report;
mod schedule;
mod service;
mod status;
mod vantage;
mod window;

pub use active::{ProbeStreak, Thresholds};
pub use breaker::{Breaker, BreakerState, BreakerStatus};
pub use checker::{CheckTarget, CheckerGuard, spawn_active_checks};
pub use endpoint::{ActiveState, EndpointHealth, SLOW_START_MIN};
pub use quorum::{CheckSpec, CheckStatus, Quorum, QuorumConfig, QuorumStatus, ReportError, VantageStatus};
pub use report::{Observation, Report};
pub use service::{Labels, Outcome, ServiceHealth};
pub use status::{EndpointStatus, ServiceHealthStatus};
pub use vantage::{
    CheckerConfig, CheckerError, CheckerNode, ConfigFeed, director_addr, run_checker, run_probes,
};
