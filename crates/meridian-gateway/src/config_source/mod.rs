//! Where the global config comes from: a file ([`FileSource`]: watched, and re-read on SIGHUP)
//! or the control plane ([`ControlSource`]: pushed snapshots, acked). A source only produces
//! candidates; the reloader validates, builds and swaps them, and tells the source the outcome.

use std::sync::{Arc, Mutex};

use meridian_model::{ConfigErrors, ValidConfig};
use tokio::sync::{mpsc, oneshot};

use crate::admin::ConfigStatus;
use crate::proxy::NodeCtx;

mod boot;
mod control;
mod file;
mod versions;

pub use control::{ControlOptions, ControlSource, ControlSourceError};
pub use file::FileSource;

/// A candidate config and where it came from.
pub struct Candidate {
    pub origin: String,
    pub config: Result<ValidConfig, ConfigErrors>,
    /// Where the reloader reports the outcome: the hash now running, or why the candidate was
    /// refused (the running version is kept). `None`: nobody asks.
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// What `gateway::start` hands a source before it starts watching: sources that push more
/// than config (drain switches) or report staleness use it.
pub struct SourceCtx {
    pub status: Arc<Mutex<ConfigStatus>>,
    pub node: Arc<NodeCtx>,
}

pub trait ConfigSource: Send + 'static {
    /// Human description, e.g. `file examples/quickstart.yaml`.
    fn describe(&self) -> String;
    /// The config to start with (read now).
    fn initial(&mut self) -> Result<ValidConfig, ConfigErrors>;
    /// Produces later candidates until the receiver is dropped.
    fn watch(self: Box<Self>, tx: mpsc::Sender<Candidate>) -> tokio::task::JoinHandle<()>;
    /// Called once, after the initial config is built and before [`Self::watch`].
    fn attach(&mut self, _ctx: SourceCtx) {}
    /// Whether the source keeps its own last-known-good snapshot (then the gateway neither
    /// writes `snapshot_path` nor falls back to it).
    fn keeps_snapshot(&self) -> bool {
        false
    }
}

/// A fixed config (quick mode, tests).
pub struct StaticSource(pub Option<ValidConfig>);

impl ConfigSource for StaticSource {
    fn describe(&self) -> String {
        "static".into()
    }
    fn initial(&mut self) -> Result<ValidConfig, ConfigErrors> {
        self.0
            .take()
            .ok_or_else(|| meridian_model::ConfigError::new("", "static config already taken").into())
    }
    fn watch(self: Box<Self>, _tx: mpsc::Sender<Candidate>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
}
