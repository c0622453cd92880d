//! The control-plane source: snapshots pushed over a stream (meridian-sync), applied through
//! the reloader and acked per kind; the last-known-good snapshot when no instance answers.
//!
//! Boot: [`ControlSource::connect`] waits up to `initial_wait` for the first config snapshot.
//! When every instance is unreachable (or the one reached offers nothing this node may run), the
//! node starts from its last-known-good snapshot and reports itself stale since it was saved.
//! Running: config snapshots go through the reloader (validate, check against the bootstrap,
//! build off the hot path, swap); drain snapshots replace the drain switches at once. Each is
//! acked with the hash now running, or nacked with the reason while the old version keeps
//! serving. A lower version or another deployment is refused (DESIGN.md §7 "Versions").

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use meridian_model::{Bootstrap, ConfigSource as SourceSpec, ValidConfig};
use meridian_sync::follow::{Start, start_from};
use meridian_sync::protocol::{self, DrainsContent, Kind, Snapshot};
use meridian_sync::{ClientConfig, Event, Follower, Lkg, NodeInfo, SyncClient};
use tokio::sync::{mpsc, oneshot};

use super::boot::{self, drain_set, parse_config};
use super::versions::{Running, Verdict};
use super::{Candidate, ConfigSource, SourceCtx};

/// Tunables of the control source (tests shorten them).
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// How long the gateway waits at boot for a config from the control plane before it
    /// starts from its last-known-good snapshot. Default 10s.
    pub initial_wait: Duration,
    /// Silence after which a stream counts as dead. Default `STREAM_DEAD_AFTER` (15s).
    pub dead_after: Duration,
    /// TCP connect + HTTP handshake limit per instance. Default 2s.
    pub connect_timeout: Duration,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            initial_wait: Duration::from_secs(10),
            dead_after: protocol::STREAM_DEAD_AFTER,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Why the gateway cannot start from the control plane or its last-known-good snapshot.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControlSourceError(String);

pub struct ControlSource {
    urls: Vec<String>,
    /// The versions running, the last-known-good files and acks (shared with the director).
    follow: Follower,
    events: mpsc::Receiver<Event>,
    initial: Option<ValidConfig>,
    /// The pushed snapshot the initial config came from: recorded, persisted and acked once
    /// the gateway has built it.
    initial_snapshot: Option<Snapshot>,
    lkg_drains: Option<Snapshot>,
    /// Snapshots that arrived while connecting, handled once watching.
    pending: Vec<Snapshot>,
    stale_since: Option<SystemTime>,
    ctx: Option<SourceCtx>,
}

impl ControlSource {
    /// Opens the stream and takes the initial config from it, or from the last-known-good
    /// snapshot when no instance gives one in time.
    pub async fn connect(b: &Bootstrap, opts: ControlOptions) -> Result<ControlSource, ControlSourceError> {
        let err = |m: String| ControlSourceError(m);
        let SourceSpec::Control { urls, token_file } = &b.config else {
            return Err(err("the bootstrap's config source is not `control`".into()));
        };
        let token = meridian_sync::read_token(token_file).map_err(err)?;
        let prefix: PathBuf =
            b.snapshot_path.clone().ok_or_else(|| err("`source: control` needs a snapshot_path".into()))?;
        let lkg = Lkg::new(prefix);
        let mut running = Running::default();

        let (saved, lkg_drains) = boot::load_floor(&lkg, &mut running);

        let node = NodeInfo {
            id: b.node.id.clone(),
            region: b.node.region.clone(),
            role: "gateway".into(),
            binary_version: env!("CARGO_PKG_VERSION").into(),
            // The kinds handled below, and no other: the control plane pushes only these.
            features: vec![Kind::Config.as_str().into(), Kind::Drains.as_str().into()],
        };
        let mut cfg = ClientConfig::new(urls.clone(), token, node.clone());
        cfg.dead_after = opts.dead_after;
        cfg.connect_timeout = opts.connect_timeout;
        let (client, mut events) = SyncClient::start(cfg).map_err(|e| err(e.to_string()))?;

        let boot::First { from_control, pending, why } =
            boot::first_config(&mut events, b, &running, opts.initial_wait).await;

        let start = start_from(from_control, saved, &why, &lkg, "starting from").map_err(err)?;
        let (initial, initial_snapshot, stale_since) = match start {
            Start::Control(s, v) => (v, Some(s), None),
            Start::Saved(s, v) => (v, None, Some(s.saved_at)),
        };
        Ok(ControlSource {
            urls: urls.clone(),
            follow: Follower { running, lkg, client, node },
            events,
            initial: Some(initial),
            initial_snapshot,
            lkg_drains,
            pending,
            stale_since,
            ctx: None,
        })
    }

    async fn run(mut self, tx: mpsc::Sender<Candidate>) {
        let Some(ctx) = self.ctx.take() else { return };
        if let Some(s) = self.initial_snapshot.take() {
            self.accepted(&ctx, &s);
        }
        for s in std::mem::take(&mut self.pending) {
            if !self.handle(&ctx, &tx, s).await {
                return;
            }
        }
        let mut lost_at = None;
        while let Some(ev) = self.events.recv().await {
            match ev {
                Event::Connected { .. } => {
                    lost_at = None;
                    if let Ok(mut st) = ctx.status.lock() {
                        st.stale_since = None;
                    }
                }
                Event::Disconnected { .. } => {
                    lost_at.get_or_insert_with(SystemTime::now);
                }
                Event::AllUnreachable => {
                    let since = lost_at.unwrap_or_else(SystemTime::now);
                    if let Ok(mut st) = ctx.status.lock()
                        && st.stale_since.is_none()
                    {
                        st.stale_since = Some(since);
                        tracing::warn!(since = %crate::access_log::humantime_rfc3339(since),
                            "no control instance reachable; serving on the running versions (stale)");
                    }
                }
                Event::Snapshot(s) => {
                    if !self.handle(&ctx, &tx, s).await {
                        return;
                    }
                }
            }
        }
    }

    /// Applies one snapshot; false when the reloader is gone.
    async fn handle(&mut self, ctx: &SourceCtx, tx: &mpsc::Sender<Candidate>, s: Snapshot) -> bool {
        match self.follow.running.judge(&s) {
            // A kind this gateway does not apply (it did not ask for it): neither run nor nacked.
            _ if !matches!(s.kind, Kind::Config | Kind::Drains) => {}
            Verdict::Refuse(why) => self.nack(&s, why),
            Verdict::Same => self.accepted(ctx, &s),
            Verdict::Newer if s.kind == Kind::Drains => {
                match serde_json::from_value::<DrainsContent>(s.content.clone()) {
                    Ok(d) => {
                        ctx.node.drains.replace(drain_set(d));
                        self.accepted(ctx, &s);
                    }
                    Err(e) => self.nack(&s, format!("unreadable drains content: {e}")),
                }
            }
            Verdict::Newer => {
                let valid = match parse_config(&s) {
                    Ok(v) => v,
                    Err(e) => {
                        self.nack(&s, e);
                        return true;
                    }
                };
                let (reply, outcome) = oneshot::channel();
                let origin = format!("control (config version {})", s.version);
                if tx.send(Candidate { origin, config: Ok(valid), reply: Some(reply) }).await.is_err() {
                    return false;
                }
                match outcome.await {
                    Ok(Ok(_)) => self.accepted(ctx, &s),
                    Ok(Err(e)) => self.nack(&s, e),
                    Err(_) => return false,
                }
            }
        }
        true
    }

    /// `s` now runs: record it, persist it, ack it.
    fn accepted(&mut self, ctx: &SourceCtx, s: &Snapshot) {
        self.follow.accepted(s);
        if let Ok(mut st) = ctx.status.lock() {
            st.versions.insert(s.kind.as_str().to_string(), s.version);
            st.deployment = Some(s.deployment.clone());
            if s.kind == Kind::Config {
                st.from_snapshot = false;
            }
        }
    }

    fn nack(&self, s: &Snapshot, why: String) {
        self.follow.refused(s, why);
    }
}

impl ConfigSource for ControlSource {
    fn describe(&self) -> String {
        format!("control {}", self.urls.join(", "))
    }

    fn initial(&mut self) -> Result<ValidConfig, meridian_model::ConfigErrors> {
        self.initial
            .take()
            .ok_or_else(|| meridian_model::ConfigError::new("", "initial config already taken").into())
    }

    fn watch(self: Box<Self>, tx: mpsc::Sender<Candidate>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(tx))
    }

    fn attach(&mut self, ctx: SourceCtx) {
        if let Some(d) = self.lkg_drains.take()
            && let Ok(content) = serde_json::from_value::<DrainsContent>(d.content.clone())
        {
            ctx.node.drains.replace(drain_set(content));
        }
        if let Ok(mut st) = ctx.status.lock() {
            st.from_snapshot = self.initial_snapshot.is_none();
            st.stale_since = self.stale_since;
            st.deployment = self.follow.running.deployment().map(str::to_string);
            st.versions = self.follow.running.versions();
        }
        self.ctx = Some(ctx);
    }

    fn keeps_snapshot(&self) -> bool {
        true
    }
}
