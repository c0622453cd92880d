//! Layer 3: the director, an authoritative DNS server for the API's zones.
//!
//! A query flows: `server` (hickory-server UDP/TCP, EDNS, response rate limiting) → the current
//! [`View`] (the config compiled once per version, swapped atomically) → [`answer`] (a pure
//! function: zone, name, type, routing policy, client network, health) → records.
//!
//! Health comes from a [`HealthView`]; until the checkers exist it is [`AllHealthy`]. The
//! policies already apply Route 53's fail-open rule: no healthy member answers with all members.
#![forbid(unsafe_code)]

mod answer;
mod explain;
mod health;
mod policy;
mod rrl;
mod server;
mod table;
mod view;

pub use answer::{Answer, ClientInfo, Rcode, Why, answer};
pub use explain::{ExplainError, explain};
pub use health::{AllHealthy, HealthTarget, HealthView};
pub use rrl::{RateLimiter, RrlDecision};
pub use server::{Director, DirectorError, Options};
pub use view::{View, ViewError};

#[cfg(test)]
mod tests;
