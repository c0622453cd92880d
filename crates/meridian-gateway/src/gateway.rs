//! Wiring of the gateway role: listeners, admin endpoints, the config reloader, certificate
//! reloads, and the two-stage shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use http::HeaderValue;
use meridian_core::Shutdown;
use meridian_model::{Bootstrap, ConfigErrors, ValidConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::{AccessLog, LogNames};
use crate::admin::{self, AdminState, ConfigStatus};
use crate::config_source::{Candidate, ConfigSource, SourceCtx};
use crate::forwarded::TrustedProxies;
use crate::peer::PeerTls;
use crate::proxy::{NodeCtx, Proxy};
use crate::region::Drains;
use crate::server::listener::{self, Listener, ListenerKind};
use crate::server::tls::{self, CertStore};
use crate::state::{self, NodeEnv, Snapshot};
use crate::worker::{self, ListenerSpec};

/// How often certificate files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(2);

/// A started gateway.
pub struct Running {
    /// Bound listener addresses by listener name (useful with port 0).
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    pub config: Arc<Mutex<ConfigStatus>>,
    tracker: TaskTracker,
    /// Cancelled when the grace period runs out: listener workers drop what they still serve.
    abandon: CancellationToken,
    drain_period: Duration,
    grace_period: Duration,
}

impl Running {
    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    /// Graceful stop: fail readiness, keep serving for the drain period, then stop accepting,
    /// send GOAWAY / close idle keep-alives, and wait up to the grace period for requests.
    pub async fn shutdown_gracefully(self) {
        tracing::info!(drain = ?self.drain_period, "draining: readiness now fails, still serving");
        self.shutdown.begin_drain();
        tokio::time::sleep(self.drain_period).await;
        self.stop().await;
    }

    /// Stops accepting now and waits up to the grace period for in-flight requests.
    pub async fn stop(self) {
        tracing::info!("stopping listeners");
        self.shutdown.stop();
        self.tracker.close();
        if tokio::time::timeout(self.grace_period, self.tracker.wait()).await.is_err() {
            tracing::warn!(grace = ?self.grace_period, "connections still open after the grace period; closing");
        }
        self.abandon.cancel();
    }

    /// Waits for SIGTERM or SIGINT, then shuts down gracefully; a second signal stops at once.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        let shutdown = self.shutdown.clone();
        let graceful = self.shutdown_gracefully();
        tokio::select! {
            _ = graceful => {}
            _ = term.recv() => shutdown.stop(),
            _ = int.recv() => shutdown.stop(),
        }
        Ok(())
    }
}

/// Starts the gateway described by `bootstrap`, taking its global config from `source`.
pub async fn start(bootstrap: Bootstrap, mut source: Box<dyn ConfigSource>) -> anyhow::Result<Running> {
    tls::install_crypto_provider();
    let region = bootstrap.node.region.clone();
    let status = Arc::new(Mutex::new(ConfigStatus { source: source.describe(), ..Default::default() }));
    // A source that keeps its own last-known-good snapshot (control) falls back to it itself.
    let snapshot_path = if source.keeps_snapshot() { None } else { bootstrap.snapshot_path.clone() };

    // The first config: from the source, else from the last-known-good snapshot.
    let (initial, from_snapshot) = match source.initial() {
        Ok(c) => (c, false),
        Err(e) => match snapshot_path.as_deref().map(read_snapshot) {
            Some(Ok(c)) => {
                tracing::warn!(errors = %e, "config source unusable; starting from the last-known-good snapshot");
                (c, true)
            }
            _ => anyhow::bail!("invalid config from {}:\n{e}", source.describe()),
        },
    };
    meridian_model::check_bootstrap(&bootstrap, &initial).map_err(|e| anyhow::anyhow!("{e}"))?;
    let peer_tls = match &bootstrap.peer {
        Some(p) => Some(Arc::new(PeerTls::load(p).context("loading the peer TLS material")?)),
        None => None,
    };
    let env = Arc::new(NodeEnv {
        region: Arc::from(region.as_str()),
        source: bootstrap.node.source_address,
        peer_tls: peer_tls.clone(),
    });
    let snap =
        state::build(Arc::new(initial), &env, None).map_err(|e| anyhow::anyhow!("{}", ConfigErrors(e)))?;
    record_applied(&status, &snap, from_snapshot);
    persist_snapshot(snapshot_path.as_deref(), &snap);
    let current = Arc::new(ArcSwap::from_pointee(snap));

    let access_log = if bootstrap.access_log.enabled {
        Some(
            AccessLog::start(bootstrap.access_log.path.as_deref(), bootstrap.access_log.flush_interval.get())
                .context("opening the access log")?,
        )
    } else {
        None
    };
    let trusted = TrustedProxies::parse(&bootstrap.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("{}", ConfigErrors(e)))?;
    let shutdown = Shutdown::new();
    let node = Arc::new(NodeCtx {
        shutdown: shutdown.clone(),
        node_id: Arc::from(bootstrap.node.id.as_str()),
        region: Arc::from(region.as_str()),
        via: HeaderValue::from_static("1.1 meridian"),
        trusted,
        access_log,
        no_route_log: LogNames::new(&region, "-", "-"),
        drains: Drains::default(),
        region_header: HeaderValue::from_str(&region).context("region name as a header value")?,
    });
    let proxy = Proxy { state: Arc::clone(&current), node };
    source.attach(SourceCtx { status: Arc::clone(&status), node: Arc::clone(&proxy.node) });
    let tracker = TaskTracker::new();
    // Listener workers besides this runtime (see `worker`): each gets a duplicate of every
    // listening socket.
    let extra_workers = bootstrap.workers.unwrap_or(1).saturating_sub(1);
    let mut specs: Vec<Vec<ListenerSpec>> = (0..extra_workers).map(|_| Vec::new()).collect();

    let mut bound = Vec::new();
    for l in &bootstrap.listeners {
        let tcp = TcpListener::bind(&l.address)
            .await
            .with_context(|| format!("binding listener {} on {}", l.name, l.address))?;
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                let store = CertStore::load(t).with_context(|| format!("listener {}", l.name))?;
                let cfg = tls::server_config(Arc::clone(&store), &t.min_version)?;
                spawn_cert_reload(store, shutdown.clone());
                Some(tokio_rustls::TlsAcceptor::from(cfg))
            }
        };
        let listener =
            Listener { name: l.name.clone(), kind: ListenerKind::Public, tcp, tls, limits: l.limits.clone() };
        bound.push((l.name.clone(), listener.local_addr()?));
        for s in &mut specs {
            s.push(ListenerSpec::of(&listener).context("duplicating a listening socket for a worker")?);
        }
        tokio::spawn(listener::serve(listener, proxy.clone(), shutdown.clone(), tracker.clone()));
        tracing::info!(listener = %l.name, addr = %bound.last().map(|b| b.1).unwrap_or(([0, 0, 0, 0], 0).into()), tls = l.tls.is_some(), "listening");
    }

    if let (Some(p), Some(tls)) = (&bootstrap.peer, &peer_tls) {
        let tcp = TcpListener::bind(&p.address)
            .await
            .with_context(|| format!("binding the peer listener on {}", p.address))?;
        let listener = Listener {
            name: "peer".into(),
            kind: ListenerKind::Peer,
            tcp,
            tls: Some(tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server))),
            limits: meridian_model::ListenerLimits { max_body_bytes: u64::MAX, ..Default::default() },
        };
        bound.push(("peer".into(), listener.local_addr()?));
        tracing::info!(addr = %p.address, "peer listener (mutual TLS)");
        for s in &mut specs {
            s.push(ListenerSpec::of(&listener).context("duplicating a listening socket for a worker")?);
        }
        tokio::spawn(listener::serve(listener, proxy.clone(), shutdown.clone(), tracker.clone()));
    }
    let abandon = CancellationToken::new();
    for (i, listeners) in specs.into_iter().enumerate() {
        let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        worker::spawn(id, listeners, proxy.clone(), shutdown.clone(), tracker.clone(), abandon.clone())
            .context("starting a listener worker")?;
    }
    if extra_workers > 0 {
        tracing::info!(workers = extra_workers + 1, "listener workers: one event loop each");
    }

    let admin_tcp = TcpListener::bind(&bootstrap.admin.address)
        .await
        .with_context(|| format!("binding admin address {}", bootstrap.admin.address))?;
    let admin_addr = admin_tcp.local_addr()?;
    let admin_state = Arc::new(AdminState {
        node_id: bootstrap.node.id.clone(),
        region: region.clone(),
        shutdown: shutdown.clone(),
        config: Arc::clone(&status),
        proxy: proxy.clone(),
    });
    tokio::spawn(admin::serve(admin_tcp, admin_state));

    let (tx, rx) = mpsc::channel(4);
    let watcher = source.watch(tx);
    tokio::spawn(reloader(
        rx,
        current,
        bootstrap.clone(),
        snapshot_path,
        env,
        Arc::clone(&status),
        shutdown.clone(),
        watcher,
    ));

    Ok(Running {
        listeners: bound,
        admin: admin_addr,
        shutdown,
        config: status,
        tracker,
        abandon,
        drain_period: bootstrap.shutdown.drain_period.get(),
        grace_period: bootstrap.shutdown.grace_period.get(),
    })
}

/// Applies candidates: validate against the bootstrap, build off the hot path, swap. A bad
/// candidate is logged and the running version kept. The outcome goes back to the source when
/// it asks (control: ack or nack).
#[allow(clippy::too_many_arguments)]
async fn reloader(
    mut rx: mpsc::Receiver<Candidate>,
    current: Arc<ArcSwap<Snapshot>>,
    bootstrap: Bootstrap,
    snapshot_path: Option<PathBuf>,
    env: Arc<NodeEnv>,
    status: Arc<Mutex<ConfigStatus>>,
    shutdown: Shutdown,
    watcher: tokio::task::JoinHandle<()>,
) {
    loop {
        let cand = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => break },
            _ = shutdown.stopping() => break,
        };
        let old = current.load_full();
        let result = cand.config.and_then(|valid| {
            meridian_model::check_bootstrap(&bootstrap, &valid)?;
            if valid.hash() == old.config.hash() {
                return Ok(None);
            }
            state::build(Arc::new(valid), &env, Some(&old)).map(Some).map_err(ConfigErrors)
        });
        let outcome = match result {
            Ok(None) => {
                tracing::debug!(origin = %cand.origin, "config unchanged");
                Ok(old.config.hash().to_string())
            }
            Ok(Some(snap)) => {
                tracing::info!(origin = %cand.origin, hash = %snap.config.hash(), previous = %old.config.hash(), "config applied");
                record_applied(&status, &snap, false);
                persist_snapshot(snapshot_path.as_deref(), &snap);
                let hash = snap.config.hash().to_string();
                current.store(Arc::new(snap));
                Ok(hash)
            }
            Err(e) => {
                tracing::error!(origin = %cand.origin, running = %old.config.hash(), "config rejected; keeping the running version:\n{e}");
                if let Ok(mut s) = status.lock() {
                    s.reloads_rejected += 1;
                    s.last_error = Some(e.to_string());
                }
                Err(e.to_string())
            }
        };
        if let Some(reply) = cand.reply {
            let _ = reply.send(outcome);
        }
    }
    watcher.abort();
}

fn record_applied(status: &Mutex<ConfigStatus>, snap: &Snapshot, from_snapshot: bool) {
    if let Ok(mut s) = status.lock() {
        s.hash = Some(snap.config.hash().to_string());
        s.loaded_at = Some(SystemTime::now());
        s.from_snapshot = from_snapshot;
        s.reloads_ok += 1;
        s.last_error = None;
    }
}

/// Writes the applied config as the last-known-good snapshot: canonical JSON, written to a
/// temporary file and renamed, so a crash never leaves a torn file.
fn persist_snapshot(path: Option<&Path>, snap: &Snapshot) {
    let Some(path) = path else { return };
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, snap.config.canonical_json()).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot persist the config snapshot");
    }
}

fn read_snapshot(path: &Path) -> Result<ValidConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let cfg: meridian_model::GlobalConfig = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    meridian_model::validate_global(cfg).map_err(|e| e.to_string())
}

fn spawn_cert_reload(store: Arc<CertStore>, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CERT_POLL) => if !store.files_changed() { continue },
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {},
                _ = shutdown.stopping() => return,
            }
            match store.reload() {
                Ok(()) => tracing::info!("certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload failed; keeping the current certificates")
                }
            }
        }
    });
}
