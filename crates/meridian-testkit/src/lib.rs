//! Test helpers shared by every crate's integration tests: real parties on loopback.
//!
//! - [`certs`]: a real test CA and leaves it signs.
//! - [`upstream`]: an HTTP/1.1 + h2c upstream with echo, status, delay, streaming, WebSocket paths.
//! - [`etcd`]: a real etcd on loopback that can be stopped and started again.
//! - [`grpc`]: a gRPC upstream and client (unary, server streaming, error statuses).
//! - [`proc`]: start the `meridian` binary, wait for it, kill it, read its memory use.

pub mod certs;
pub mod etcd;
pub mod grpc;
pub mod proc;
mod server;
pub mod upstream;

pub use rustix::process::Signal;
pub use server::Protocols;
pub use upstream::{TestUpstream, UpstreamOptions};
