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

use crate::store::{Committed, RolloutRecord, Store, StoreError, VersionRecord};

mod backup;
mod controls;
mod ops;
mod rollout;
mod status;

pub use backup::{Backup, ImportMode};
pub use controls::{ControlChange, ControlView, ControlsError, ControlsList};
pub use ops::{Applied, DrainChange, Plan};
pub use rollout::{RegionRollout, RolloutChange, RolloutStatus};
pub use status::{Current, KindStatus, NodeStatus, Status};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The config (or content) is invalid; every problem with its path.
    #[error("invalid config: {} error(s)", .0.len())]
    Invalid(Vec<ConfigError>),
    #[error("version conflict: the current version is {current}")]
    Conflict { current: u64 },
    /// The rollout record moved since it was read (another operator's pin or promote).
    #[error(
        "rollout conflict: the rollout changed (now at rollout version {current}); look again with `meridian rollout status`"
    )]
    RolloutConflict { current: u64 },
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

/// The current rollout record (version 0: none written yet, every region follows the newest).
pub type RolloutRx = watch::Receiver<Arc<RolloutRecord>>;

/// Pinned config versions read from the store for node streams, kept so that every node of a
/// held region does not read the same version again.
const PINNED_CACHE: usize = 16;

/// One control instance.
pub struct Control {
    store: Arc<dyn Store>,
    deployment: String,
    clock: Arc<dyn Clock>,
    lease: Duration,
    hubs: Arc<Hubs>,
    /// The rollout record, moved forward like the hubs (and before them: see [`Control::commit`]).
    rollout: Arc<watch::Sender<Arc<RolloutRecord>>>,
    /// Config version → its snapshot, for regions held on an older version.
    pinned: Mutex<BTreeMap<u64, Arc<Snapshot>>>,
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

/// Moves the rollout channel to `r` if it is newer (by rollout version).
fn publish_rollout(tx: &watch::Sender<Arc<RolloutRecord>>, r: &RolloutRecord) {
    tx.send_if_modified(|cur| {
        if cur.version >= r.version {
            return false;
        }
        *cur = Arc::new(r.clone());
        true
    });
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
        let ro = store.rollout().await?.unwrap_or_default();
        let rollout = Arc::new(watch::channel(Arc::new(ro)).0);
        let feed = versions.map(|mut rx| {
            let (hubs, rollout, deployment) = (hubs.clone(), rollout.clone(), deployment.clone());
            tokio::spawn(async move {
                // In commit order: a pin written before a version is published before it.
                while let Some(c) = rx.recv().await {
                    match c {
                        Committed::Version(kind, r) => publish(&hubs, &deployment, kind, &r),
                        Committed::Rollout(r) => publish_rollout(&rollout, &r),
                    }
                }
            })
            .abort_handle()
        });
        Ok(Control {
            store,
            deployment,
            clock,
            lease,
            hubs,
            rollout,
            pinned: Mutex::new(BTreeMap::new()),
            streams: Mutex::new(HashMap::new()),
            feed,
        })
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

    /// The current rollout record, and every later one.
    pub fn subscribe_rollout(&self) -> RolloutRx {
        self.rollout.subscribe()
    }

    /// The snapshot of one config version, for a region held on it (cached).
    pub async fn config_snapshot(&self, version: u64) -> Result<Option<Arc<Snapshot>>, ControlError> {
        if let Some(s) = self.pinned.lock().unwrap_or_else(|e| e.into_inner()).get(&version) {
            return Ok(Some(s.clone()));
        }
        let Some(r) = self.store.version(Kind::Config, version).await? else { return Ok(None) };
        let snap = Arc::new(snapshot(&self.deployment, Kind::Config, &r));
        let mut cache = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(version, snap.clone());
        while cache.len() > PINNED_CACHE {
            cache.pop_first();
        }
        Ok(Some(snap))
    }

    /// Writes rollout record `expected + 1` with compare-and-swap, then publishes it. Streams
    /// read the config hub before the rollout channel, so publishing a pin before the version it
    /// holds back is what keeps that version out of the held regions.
    async fn commit_rollout(&self, expected: u64, record: RolloutRecord) -> Result<(), ControlError> {
        match self.store.set_rollout(expected, record.clone()).await {
            Ok(()) => {
                publish_rollout(&self.rollout, &record);
                Ok(())
            }
            Err(StoreError::Conflict { current }) => Err(ControlError::RolloutConflict { current }),
            Err(e) => Err(ControlError::Store(e)),
        }
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
