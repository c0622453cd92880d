//! Layer 2 of Meridian: how pushed state travels from the control plane to every node.
//!
//! - [`protocol`]: the wire protocol (HTTP + newline-delimited JSON), shared by both sides.

pub mod protocol;
