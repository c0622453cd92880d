//! What the control plane keeps, behind one object-safe trait with two backends: the embedded
//! redb file (one instance) and etcd (several instances sharing one state).
//!
//! The trait is async (boxed futures) rather than sync: the embedded backend runs its blocking
//! redb transactions on `spawn_blocking`, and an etcd backend is naturally async, so neither has
//! to block a runtime thread or nest a runtime.
//!
//! Consistency contract every backend keeps:
//! - per [`Kind`], versions are 1, 2, 3, … with no gaps, never rewritten; a write names the
//!   version it expects to be current and fails with [`StoreError::Conflict`] otherwise;
//! - the deployment id is written once, at the first open, and never changes;
//! - tokens are stored only as the SHA-256 of their plaintext;
//! - node records merge acks with [`apply_ack`], so any instance shows the whole fleet;
//! - the rollout record (which config version each region runs) has its own sequence 1, 2, 3, …,
//!   written with compare-and-swap like a kind's versions;
//! - versions and rollout records written by another writer reach this instance through
//!   [`Store::watch_versions`], in the order they were committed.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use meridian_sync::protocol::Kind;
use serde::{Deserialize, Serialize};

pub mod etcd;
pub mod redb;

pub use self::etcd::{EtcdOptions, EtcdStore};
pub use self::redb::RedbStore;

/// What any writer sharing the store commits, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    Version(Kind, VersionRecord),
    Rollout(RolloutRecord),
}

/// Versions and rollout records as they are committed by any writer sharing the store.
pub type VersionFeed = tokio::sync::mpsc::Receiver<Committed>;

/// A boxed future, so that [`Store`] stays object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer created a version first; `current` is the version now current.
    #[error("version conflict: the current version is {current}")]
    Conflict { current: u64 },
    /// The store belongs to another deployment.
    #[error("the store belongs to deployment {stored:?}, not {wanted:?}")]
    ForeignDeployment { stored: String, wanted: String },
    /// A write that breaks the version rules (gaps, wrong numbers).
    #[error("invalid write: {0}")]
    Invalid(String),
    /// The backend failed (I/O, corruption, unreachable).
    #[error("store: {0}")]
    Backend(String),
}

/// One version of one kind of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u64,
    /// Lowercase hex SHA-256 of `content` (for config: `ValidConfig::hash`).
    pub hash: String,
    /// Canonical JSON of the content.
    pub content: String,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// The name of the token that wrote it.
    pub author: String,
    #[serde(default)]
    pub comment: String,
}

/// Staged rollout: which config version each region runs. A region with a pin stays on that
/// version; every other region follows the newest. One record per change, numbered 1, 2, 3, …
/// and written with compare-and-swap (like a kind's versions), so two operators cannot silently
/// overwrite each other's pins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub version: u64,
    /// Region → the config version it stays on.
    #[serde(default)]
    pub pins: BTreeMap<String, u64>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// The name of the token that wrote it.
    pub author: String,
    #[serde(default)]
    pub comment: String,
}

impl RolloutRecord {
    /// The config version a region's nodes get when `latest` is the newest (a pin never points
    /// past the newest version; the `min` only guards a record read before its version).
    pub fn target(&self, region: &str, latest: u64) -> u64 {
        self.pins.get(region).map_or(latest, |p| (*p).min(latest))
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads, and sets drain switches.
    Operator,
    /// Everything.
    Admin,
}

/// A stored token: what its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenKind {
    Admin {
        role: Role,
    },
    /// A node's credential, bound to its id and region.
    Node {
        node: String,
        region: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// A name for people and the audit log.
    pub name: String,
    pub kind: TokenKind,
    pub created_at_ms: u64,
}

/// One write seen by the admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store, grows by one.
    #[serde(default)]
    pub seq: u64,
    pub at_ms: u64,
    /// Token name, or `-` when unauthenticated.
    pub who: String,
    pub method: String,
    pub path: String,
    /// What it acted on: a kind, a drain target, a token name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The version it created, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The HTTP status it was answered with.
    pub status: u16,
}

/// What a node said about one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindState {
    /// Last version the node acked ok (0: none).
    pub applied: u64,
    pub hash: String,
    /// The latest nack, cleared by an ok ack of the same or a later version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nack: Option<Nack>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nack {
    pub version: u64,
    pub error: String,
}

/// A node as the store knows it (any control instance can show the whole fleet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub region: String,
    pub role: String,
    #[serde(default)]
    pub binary_version: String,
    #[serde(default)]
    pub features: Vec<String>,
    /// Unix milliseconds of the last sign of life (stream opened or pinged, ack).
    pub last_seen_ms: u64,
    #[serde(default)]
    pub kinds: BTreeMap<Kind, KindState>,
}

/// The control plane's state store.
pub trait Store: Send + Sync + 'static {
    /// The deployment id, fixed at the first open.
    fn deployment(&self) -> StoreFuture<'_, String>;

    /// The current version of a kind, if any.
    fn current(&self, kind: Kind) -> StoreFuture<'_, Option<VersionRecord>>;
    /// One version of a kind.
    fn version(&self, kind: Kind, version: u64) -> StoreFuture<'_, Option<VersionRecord>>;
    /// Every version of a kind, oldest first.
    fn history(&self, kind: Kind) -> StoreFuture<'_, Vec<VersionRecord>>;
    /// Appends versions `expected + 1, expected + 2, …` if `expected` is still current
    /// (compare-and-swap); otherwise [`StoreError::Conflict`] and nothing is written.
    fn append(&self, kind: Kind, expected: u64, records: Vec<VersionRecord>) -> StoreFuture<'_, ()>;

    /// The current rollout record, if any was written.
    fn rollout(&self) -> StoreFuture<'_, Option<RolloutRecord>>;
    /// Writes rollout record `expected + 1` if `expected` is still current (0: none yet);
    /// otherwise [`StoreError::Conflict`] with the current rollout version.
    fn set_rollout(&self, expected: u64, record: RolloutRecord) -> StoreFuture<'_, ()>;

    /// Stores a token under the SHA-256 (hex) of its plaintext.
    fn put_token(&self, hash: String, token: TokenRecord) -> StoreFuture<'_, ()>;
    fn token(&self, hash: String) -> StoreFuture<'_, Option<TokenRecord>>;
    /// Every token record (never a plaintext or hash), by name.
    fn tokens(&self) -> StoreFuture<'_, Vec<TokenRecord>>;
    /// Revokes every token with this name; returns how many.
    fn delete_tokens(&self, name: String) -> StoreFuture<'_, usize>;

    /// Appends an audit entry (its `seq` is assigned here) and returns the seq.
    fn audit(&self, entry: AuditEntry) -> StoreFuture<'_, u64>;
    /// The latest `limit` audit entries, newest first.
    fn audit_log(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>>;

    /// Records a sign of life from a node (creating it on first sight): identity fields from
    /// `seen` replace the stored ones; its kinds are kept.
    fn node_seen(&self, seen: NodeRecord) -> StoreFuture<'_, ()>;
    /// Records an ack or nack.
    fn node_ack(&self, ack: meridian_sync::protocol::Ack, at_ms: u64) -> StoreFuture<'_, ()>;
    fn nodes(&self) -> StoreFuture<'_, Vec<NodeRecord>>;

    /// Replaces the expected-node list (region → node ids).
    fn set_expected(&self, expected: BTreeMap<String, Vec<String>>) -> StoreFuture<'_, ()>;
    fn expected(&self) -> StoreFuture<'_, BTreeMap<String, Vec<String>>>;

    /// Versions and rollout records committed by any writer sharing this store — other control
    /// instances included — starting with the current version of every kind and the current
    /// rollout, then in commit order (so a pin written before a version arrives before it). A version may come more than once
    /// (after a reconnect) and intermediate ones may be skipped; the receiver only ever moves
    /// forward. `None` when this process is the only writer (the embedded store: one process
    /// holds the redb file), so what `Control` commits itself is all there is.
    fn watch_versions(&self) -> Option<VersionFeed> {
        None
    }
}

/// Applies an ack to a node's per-kind state (shared by every backend).
pub fn apply_ack(node: &mut NodeRecord, ack: &meridian_sync::protocol::Ack, at_ms: u64) {
    node.last_seen_ms = node.last_seen_ms.max(at_ms);
    let st = node.kinds.entry(ack.kind).or_default();
    st.at_ms = at_ms;
    if ack.ok {
        if ack.version >= st.applied {
            st.applied = ack.version;
            st.hash = ack.hash.clone();
        }
        if st.nack.as_ref().is_some_and(|n| n.version <= ack.version) {
            st.nack = None;
        }
    } else {
        st.nack = Some(Nack {
            version: ack.version,
            error: ack.error.clone().unwrap_or_else(|| "refused (no reason given)".into()),
        });
    }
}
