//! The control plane's operations, shared by the admin API and the node endpoints: every write
//! goes through the store's compare-and-swap and then to a per-kind `watch` channel that feeds
//! every open node stream on this instance. With a shared store (etcd), versions other instances
//! commit arrive through the store's feed and are published here too: this module is the one
//! place that moves the channels, and only ever forward.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_core::clock::Clock;
use meridian_model::ConfigError;
use meridian_sync::protocol::{Kind, Snapshot};
use tokio::sync::watch;

use crate::store::{Store, StoreError, VersionRecord};

mod backup;
mod ops;
mod status;

pub use backup::{Backup, ImportMode};
pub use ops::{Applied, DrainChange, Plan};
pub use status::{Current, KindStatus, NodeStatus, Status};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The config (or content) is invalid; every problem with its path.
    #[error("invalid config: {} error(s)", .0.len())]
    Invalid(Vec<ConfigError>),
    #[error("version conflict: the current version is {current}")]
    Conflict { current: u64 },
    /// A write that would make a version go backwards.
    #[error("{0}")]
    Regression(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { current } => ControlError::Conflict { current },
            e => ControlError::Store(e),
        }
    }
}

/// The current snapshot of one kind (none before its first version).
pub type SnapshotRx = watch::Receiver<Option<Arc<Snapshot>>>;

/// One control instance.
pub struct Control {
    store: Arc<dyn Store>,
    deployment: String,
    clock: Arc<dyn Clock>,
    lease: Duration,
    hubs: Arc<Hubs>,
    /// Node id → streams open on this instance.
    streams: Mutex<HashMap<String, usize>>,
    /// Publishes versions other writers commit (a shared store); stopped on drop.
    feed: Option<tokio::task::AbortHandle>,
}

/// One `watch` channel per kind: the newest snapshot, read by every node stream.
type Hubs = BTreeMap<Kind, watch::Sender<Option<Arc<Snapshot>>>>;

/// Moves a kind's hub to `r` if it is newer than what the hub holds. Versions reach a hub from
/// this instance's commits and from the store's feed, in any order; a hub never goes back.
fn publish(hubs: &Hubs, deployment: &str, kind: Kind, r: &VersionRecord) {
    if let Some(h) = hubs.get(&kind) {
        h.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|s| s.version >= r.version) {
                return false;
            }
            *cur = Some(Arc::new(snapshot(deployment, kind, r)));
            true
        });
    }
}

impl Control {
    /// Loads the current version of every kind from the store, and follows the versions other
    /// writers commit when the store is shared.
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        lease: Duration,
    ) -> Result<Control, ControlError> {
        let deployment = store.deployment().await?;
        // Subscribed before loading, so a version committed in between is not missed.
        let versions = store.watch_versions();
        let mut hubs = BTreeMap::new();
        for kind in Kind::ALL {
            let cur = store.current(kind).await?;
            let snap = cur.map(|r| Arc::new(snapshot(&deployment, kind, &r)));
            hubs.insert(kind, watch::channel(snap).0);
        }
        let hubs = Arc::new(hubs);
        let feed = versions.map(|mut rx| {
            let (hubs, deployment) = (hubs.clone(), deployment.clone());
            tokio::spawn(async move {
                while let Some((kind, r)) = rx.recv().await {
                    publish(&hubs, &deployment, kind, &r);
                }
            })
            .abort_handle()
        });
        Ok(Control { store, deployment, clock, lease, hubs, streams: Mutex::new(HashMap::new()), feed })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    pub fn now_ms(&self) -> u64 {
        crate::unix_ms(self.clock.wall())
    }

    /// The current snapshot of a kind, and every later one.
    pub fn subscribe(&self, kind: Kind) -> Option<SnapshotRx> {
        self.hubs.get(&kind).map(|h| h.subscribe())
    }

    /// Appends versions with compare-and-swap, then publishes the newest to the streams.
    async fn commit(
        &self,
        kind: Kind,
        expected: u64,
        records: Vec<VersionRecord>,
    ) -> Result<(), ControlError> {
        let Some(last) = records.last().cloned() else { return Ok(()) };
        self.store.append(kind, expected, records).await?;
        publish(&self.hubs, &self.deployment, kind, &last);
        Ok(())
    }

    /// Counts a node stream as open on this instance until the guard drops.
    pub fn stream_opened(self: &Arc<Self>, node: &str) -> StreamGuard {
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        *s.entry(node.to_string()).or_default() += 1;
        StreamGuard { control: self.clone(), node: node.to_string() }
    }

    fn stream_open(&self, node: &str) -> bool {
        self.streams.lock().unwrap_or_else(|e| e.into_inner()).get(node).is_some_and(|n| *n > 0)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(f) = &self.feed {
            f.abort();
        }
    }
}

/// Marks a node's stream closed when dropped.
pub struct StreamGuard {
    control: Arc<Control>,
    node: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut s = self.control.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.get_mut(&self.node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(&self.node);
            }
        }
    }
}

/// The push of a stored version.
pub fn snapshot(deployment: &str, kind: Kind, r: &VersionRecord) -> Snapshot {
    Snapshot {
        kind,
        deployment: deployment.to_string(),
        version: r.version,
        hash: r.hash.clone(),
        content: serde_json::from_str(&r.content).unwrap_or(serde_json::Value::Null),
    }
}
