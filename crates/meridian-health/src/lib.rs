//! Layer 2 of Meridian: the health of a service's endpoints in one region, as the gateway sees
//! it (DESIGN §3 flow 3, §7 "Health": gateways use fast local checks for their own endpoints).
//!
//! - [`EndpointHealth`]: one endpoint's active verdict, passive ejection and slow start.
//! - [`ServiceHealth`]: a service's endpoints in a region, passive outlier detection
//!   ([`ServiceHealth::record`]) and the [`Breaker`]; [`ServiceHealth::status`] for `/-/status`.
//! - [`spawn_active_checks`]: the active checker tasks.
//!
//! Everything a request touches is atomics, no locks and no allocation; time comes in as a
//! `now: Instant` argument, so the rules are tested with fixed instants.

mod active;
mod breaker;
mod checker;
mod clock;
mod endpoint;
mod service;
mod status;
mod window;

pub use active::{ProbeStreak, Thresholds};
pub use breaker::{Breaker, BreakerState, BreakerStatus};
pub use checker::{CheckTarget, CheckerGuard, spawn_active_checks};
pub use endpoint::{ActiveState, EndpointHealth, SLOW_START_MIN};
pub use service::{Labels, Outcome, ServiceHealth};
pub use status::{EndpointStatus, ServiceHealthStatus};
