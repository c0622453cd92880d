//! Layer 3: the director, an authoritative DNS server for the API's zones.
//!
//! A query flows: `transport` (our UDP loop and TCP connections, hickory-proto's wire format,
//! EDNS, response rate limiting) → the current [`View`] (the config compiled once per version,
//! swapped atomically) → [`answer`] (a pure function: zone, name, type, routing policy, client
//! network, health) → records borrowed from the view, encoded by hickory-proto.
//!
//! Config comes from a file or the control plane ([`Source`]); routing controls (from the
//! control plane) are applied over health.
//!
//! Health comes from a [`HealthView`]: by default [`QuorumHealth`], the quorum of the checkers'
//! reports (`meridian_health::Quorum`) that arrive on the HTTP listener ([`Options::http`]:
//! `POST /v1/observations`, `GET /v1/health`, `GET /v1/explain`). A region is healthy when the
//! check named like it is. The policies apply Route 53's fail-open rule: no healthy member
//! answers with all members.
#![forbid(unsafe_code)]

mod answer;
mod controls;
mod explain;
mod geo;
mod health;
mod http;
mod policy;
pub mod report_auth;
mod rrl;
mod server;
mod source;
mod table;
mod transport;
mod view;

pub use answer::{Answer, ClientInfo, Rcode, Why, answer};
pub use explain::{ExplainError, Explanation, HealthExplanation, explain, explain_view};
pub use geo::{GeoDatabase, GeoDatabaseError};
pub use health::{AllHealthy, HealthTarget, HealthView, QuorumHealth};
/// The checker role and the quorum types, for the `meridian checker` command and tests.
pub use meridian_health;
pub use rrl::{RateLimiter, RrlDecision};
pub use server::{Director, DirectorError, Options};
pub use source::{ControlSpec, Source, SourceStatus};
pub use view::{View, ViewError};

#[cfg(test)]
mod tests;
