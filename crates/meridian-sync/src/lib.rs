//! Layer 2 of Meridian: how pushed state travels from the control plane to every node.
//!
//! - [`protocol`]: the wire protocol (HTTP + newline-delimited JSON), shared by both sides.
//! - [`client`]: the node side — [`SyncClient`] keeps a stream open to the first reachable
//!   control instance, hands snapshots over a channel, fails over, and posts acks.
//! - [`lkg`]: last-known-good snapshots on local disk, to boot without a control plane.
//! - [`follow`]: what a node does with a snapshot: judge its version, then persist and ack it,
//!   or nack it.
//! - [`controls`]: routing controls as pushed state, and the safety rules a change must keep.
//! - [`fake`]: a small real control instance for tests of nodes.

mod http;

pub mod client;
pub mod controls;
pub mod fake;
pub mod follow;
pub mod lkg;
pub mod protocol;

pub use client::{ClientConfig, Event, NodeInfo, SyncClient};
pub use follow::{Follower, Running, Verdict};
pub use lkg::{Lkg, LkgError, Saved};

/// Reads a node's token file: the token, trimmed; an unreadable or empty file is an error
/// naming it.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(token)
}

/// Errors of the node side of the protocol.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no control URL configured")]
    NoUrls,
    #[error("invalid control URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot reach control instance {url}: {error}")]
    Connect { url: String, error: String },
    #[error("control instance {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("cannot encode a request: {0}")]
    Encode(String),
}
