//! Layer 3 of Meridian: the gateway data plane.
//!
//! The life of a request, top to bottom, is in [`proxy`]; docs/architecture.md draws it.
//! [`gateway::start`] wires a node from its bootstrap and a [`config_source::ConfigSource`].

pub mod access_log;
pub mod admin;
pub mod ascii;
pub mod body;
pub mod config_source;
pub mod error;
pub mod forward;
pub mod forwarded;
pub mod gateway;
pub mod peer;
pub mod pipeline;
pub mod proxy;
pub mod quick;
pub mod raw_head;
pub mod region;
pub mod retry;
pub mod router;
pub mod server;
pub mod state;
pub mod status;
pub mod timeout;
pub mod upstream;
pub mod wire;
pub mod worker;

pub use gateway::{Running, start};
