//! Layer 3 of Meridian: the gateway data plane.
//!
//! The life of a request, top to bottom, is in [`proxy`]; docs/architecture.md draws it.

pub mod forwarded;
pub mod pipeline;
pub mod router;
pub mod server;
pub mod upstream;
