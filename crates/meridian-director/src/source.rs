//! Where the director's config comes from: the global config file (polled), or the control
//! plane (meridian-sync), as gateways take theirs.
//!
//! From the control plane, the director opens the node stream with role `director`, announcing
//! only the kinds it applies; it waits up to [`ControlSpec::initial_wait`] for a config it can
//! compile, else it boots from its last-known-good snapshot and says it is stale (log,
//! `GET /v1/status`, `GET /v1/health`, `meridian_director_config_stale`). Every later snapshot is
//! judged (same deployment, no lower version), compiled off the query path, swapped, persisted
//! and acked — or nacked while the running view keeps answering. The SOA serial is the config
//! version. Routing controls (kind `controls`) arrive the same way, are kept in the
//! last-known-good snapshot beside the config, and go on deciding answers while the control
//! plane is unreachable (`crate::controls`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_model::ValidConfig;
use meridian_sync::controls::ControlsContent;
use meridian_sync::follow::{Follower, Running, Start, Verdict, load_saved, parse_config, start_from};
use meridian_sync::protocol::{self, Kind, Snapshot};
use meridian_sync::{ClientConfig, Event, Lkg, NodeInfo, SyncClient};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::server::{DirectorError, Shared};
use crate::view::View;

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The global config file, checked every `poll_interval` for a new version.
    File { path: PathBuf, poll_interval: Duration },
    /// The control plane's node stream.
    Control(ControlSpec),
}

/// How the director follows the control plane.
#[derive(Debug, Clone)]
pub struct ControlSpec {
    /// Control instances, tried in order (the next on failure).
    pub urls: Vec<String>,
    /// File holding the node's bootstrap token.
    pub token_file: PathBuf,
    /// This director's node id (the token is bound to it and to the region).
    pub node_id: String,
    pub region: String,
    /// Prefix of the last-known-good files: `{snapshot}.config`, `{snapshot}.controls`.
    pub snapshot: PathBuf,
    /// How long to wait at boot for a config from the control plane before starting from the
    /// last-known-good snapshot. Default 10s.
    pub initial_wait: Duration,
    /// Silence after which a stream counts as dead. Default `STREAM_DEAD_AFTER` (15s).
    pub dead_after: Duration,
    /// TCP connect + HTTP handshake limit per instance. Default 2s.
    pub connect_timeout: Duration,
}

impl ControlSpec {
    pub fn new(
        urls: Vec<String>,
        token_file: PathBuf,
        node_id: String,
        region: String,
        snapshot: PathBuf,
    ) -> ControlSpec {
        ControlSpec {
            urls,
            token_file,
            node_id,
            region,
            snapshot,
            initial_wait: Duration::from_secs(10),
            dead_after: protocol::STREAM_DEAD_AFTER,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Where the running config came from and how fresh it is (`GET /v1/status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `file PATH` or `control URL, URL`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Version per kind applied from the control plane.
    pub versions: BTreeMap<String, u64>,
    /// The running config was read from the last-known-good snapshot, not pushed since start.
    pub from_snapshot: bool,
    /// No control instance is reachable: the director answers on the versions it has.
    pub stale: bool,
    /// Since when (Unix milliseconds), while stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_since_unix_ms: Option<u64>,
}

impl SourceStatus {
    fn set_stale(&mut self, since: Option<SystemTime>) {
        self.stale = since.is_some();
        self.stale_since_unix_ms =
            since.map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64);
    }
}

/// The SOA serial of a config version.
pub(crate) fn serial_of(version: u64) -> u32 {
    u32::try_from(version).unwrap_or(u32::MAX)
}

/// A director connected to the control plane, before it serves.
pub(crate) struct ControlBoot {
    pub config: ValidConfig,
    /// The routing controls of the last-known-good snapshot, applied from the start.
    pub controls: Option<ControlsContent>,
    pub status: SourceStatus,
    follow: Follower,
    events: mpsc::Receiver<Event>,
    /// The pushed snapshot the initial view came from: persisted and acked once serving.
    initial: Option<Snapshot>,
    /// Snapshots that arrived while booting, handled once serving.
    pending: Vec<Snapshot>,
}

/// Opens the stream and takes the first config from it, or from the last-known-good snapshot
/// when no instance gives a usable one in time.
pub(crate) async fn connect(spec: &ControlSpec) -> Result<(ControlBoot, View), DirectorError> {
    let err = |m: String| DirectorError::Control(m);
    let token = meridian_sync::read_token(&spec.token_file).map_err(err)?;
    let lkg = Lkg::new(spec.snapshot.clone());
    let mut running = Running::default();
    let saved =
        load_saved(&lkg, &mut running, |s| parse_config(s).and_then(|c| build(&c, s).map(|v| (c, v))));
    let controls = match lkg.load(Kind::Controls) {
        Ok(Some(s)) if !matches!(running.judge(&s.snapshot), Verdict::Refuse(_)) => {
            match serde_json::from_value::<ControlsContent>(s.snapshot.content.clone()) {
                Ok(c) => {
                    running.record(&s.snapshot);
                    Some(c)
                }
                Err(e) => {
                    tracing::error!(error = %e, "ignoring the last-known-good routing controls");
                    None
                }
            }
        }
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "ignoring the last-known-good routing controls");
            None
        }
    };
    let node = NodeInfo {
        id: spec.node_id.clone(),
        region: spec.region.clone(),
        role: "director".into(),
        binary_version: env!("CARGO_PKG_VERSION").into(),
        // The kinds handled in `handle`, and no other: the control plane pushes only these.
        features: vec![Kind::Config.as_str().into(), Kind::Controls.as_str().into()],
    };
    let mut cfg = ClientConfig::new(spec.urls.clone(), token, node.clone());
    cfg.dead_after = spec.dead_after;
    cfg.connect_timeout = spec.connect_timeout;
    let (client, mut events) = SyncClient::start(cfg).map_err(|e| err(e.to_string()))?;

    // The first config decides; one this director cannot run is nacked once serving.
    let meridian_sync::follow::First { from_control, pending, why } =
        meridian_sync::follow::first_config(&mut events, &running, spec.initial_wait, |s| {
            parse_config(s).and_then(|c| build(&c, s).map(|v| (c, v)))
        })
        .await;
    let mut status =
        SourceStatus { source: format!("control {}", spec.urls.join(", ")), ..Default::default() };
    let (initial, (config, view)) =
        match start_from(from_control, saved, &why, &lkg, "answering from").map_err(err)? {
            Start::Control(s, built) => (Some(s), built),
            Start::Saved(s, built) => {
                status.from_snapshot = true;
                status.set_stale(Some(s.saved_at));
                (None, built)
            }
        };
    status.deployment = Some(config.config().deployment.clone());
    status.versions = running.versions();
    if let Some(s) = &initial {
        status.versions.insert(s.kind.as_str().into(), s.version);
    }
    let boot = ControlBoot {
        config,
        controls,
        status,
        follow: Follower { running, lkg, client, node },
        events,
        initial,
        pending,
    };
    Ok((boot, view))
}

/// The view of a config snapshot, its serial the version.
fn build(c: &ValidConfig, s: &Snapshot) -> Result<View, String> {
    View::build(c, serial_of(s.version)).map_err(|e| e.to_string())
}

/// Follows the stream while the director serves.
pub(crate) async fn follow(mut boot: ControlBoot, state: Arc<Shared>, shutdown: CancellationToken) {
    if let Some(s) = boot.initial.take() {
        boot.follow.accepted(&s);
    }
    for s in std::mem::take(&mut boot.pending) {
        handle(&mut boot.follow, &state, s);
    }
    let mut lost_at = None;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = boot.events.recv() => match ev { Some(ev) => ev, None => return },
        };
        match ev {
            Event::Connected { url } => {
                lost_at = None;
                let mut st = lock(&state.source);
                if st.stale {
                    tracing::info!(%url, "control plane reachable again");
                }
                st.set_stale(None);
            }
            Event::Disconnected { .. } => {
                lost_at.get_or_insert_with(SystemTime::now);
            }
            Event::AllUnreachable => {
                let since = *lost_at.get_or_insert_with(SystemTime::now);
                let mut st = lock(&state.source);
                if !st.stale {
                    st.set_stale(Some(since));
                    tracing::warn!(
                        "no control instance reachable; answering on the running versions (stale)"
                    );
                }
            }
            Event::Snapshot(s) => handle(&mut boot.follow, &state, s),
        }
    }
}

fn lock(m: &Mutex<SourceStatus>) -> std::sync::MutexGuard<'_, SourceStatus> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies one snapshot: compile, swap, persist, ack; or nack and keep the running view.
fn handle(follow: &mut Follower, state: &Shared, s: Snapshot) {
    if !matches!(s.kind, Kind::Config | Kind::Controls) {
        // Not asked for (see `features`): neither applied nor nacked.
        return;
    }
    match follow.running.judge(&s) {
        Verdict::Refuse(why) => return follow.refused(&s, why),
        Verdict::Same => {}
        Verdict::Newer if s.kind == Kind::Controls => {
            match serde_json::from_value::<ControlsContent>(s.content.clone()) {
                Ok(c) => {
                    let off: Vec<&str> =
                        c.controls.iter().filter(|(_, st)| !st.on).map(|(n, _)| n.as_str()).collect();
                    tracing::info!(version = s.version, off = %off.join(","), "routing controls applied");
                    state.controls.set_states(c);
                }
                Err(e) => return follow.refused(&s, format!("unreadable controls content: {e}")),
            }
        }
        Verdict::Newer => match parse_config(&s).and_then(|c| build(&c, &s).map(|v| (c, v))) {
            Ok((c, view)) => {
                tracing::info!(version = s.version, serial = view.serial, hash = %view.hash, "config applied from the control plane");
                state.swap(&c, view);
            }
            Err(e) => return follow.refused(&s, e),
        },
    }
    follow.accepted(&s);
    let mut st = lock(&state.source);
    st.versions.insert(s.kind.as_str().into(), s.version);
    st.deployment = Some(s.deployment.clone());
    if s.kind == Kind::Config {
        st.from_snapshot = false;
    }
}
