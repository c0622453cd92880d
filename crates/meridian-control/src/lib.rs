//! Layer 3 of Meridian: the control plane (`meridian control`).
//!
//! - [`store`]: versioned state behind the [`store::Store`] trait; embedded redb backend.
//! - [`bootstrap`]: `control.yaml`.
//! - [`content`], [`diff`]: what each kind holds, and the plan of a config change.
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod content;
pub mod diff;
pub mod store;

/// Unix milliseconds of a wall-clock time.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
