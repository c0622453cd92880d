//! Layer 3 of Meridian: the control plane (`meridian control`).
//!
//! - [`store`] — versioned state behind the [`store::Store`] trait; embedded redb and shared etcd
//!   backends;
//! - [`bootstrap`] — `control.yaml`;
//! - [`content`], [`diff`] — what each kind holds, and the plan of a config change;
//! - [`control`] — the operations (apply, rollback, drains, import, status, staged rollout) and
//!   the per-kind broadcast that feeds node streams (config by each node's region target);
//! - [`api`] — the admin API and the node endpoints (axum);
//! - [`server`] — starting an instance from its `control.yaml`.
#![forbid(unsafe_code)]

pub mod api;
pub mod bootstrap;
pub mod content;
pub mod control;
pub mod diff;
pub mod server;
pub mod store;

pub use bootstrap::ControlConfig;
pub use server::Server;

/// Unix milliseconds of a wall-clock time.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
