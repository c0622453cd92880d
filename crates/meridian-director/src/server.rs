//! The DNS server: UDP and TCP ([`crate::transport`], hickory-proto's wire format), and the
//! config reloader (the global config file, polled; an invalid version is logged and the last
//! good one kept) or the control plane's stream ([`crate::source`]).
//!
//! SOA serial: from a file, the director's first version is served with the Unix time (seconds)
//! at start, and every config version applied after it adds 1, so the serial grows with each
//! version and across restarts (unless more than one version per second was applied before a
//! restart). From the control plane, the serial is the config version number.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use meridian_model::ConfigErrors;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use meridian_core::{Clock, SystemClock};
use meridian_health::{Quorum, QuorumConfig};

use crate::controls::Controlled;
use crate::geo::GeoDatabase;
use crate::health::{HealthView, QuorumHealth};
use crate::rrl::RateLimiter;
use crate::source::{ControlBoot, Source, SourceStatus};
use crate::view::{View, ViewError};

#[derive(Debug, thiserror::Error)]
pub enum DirectorError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid config:\n{errors}")]
    Invalid { path: PathBuf, errors: ConfigErrors },
    #[error("{path}: {source}")]
    View { path: PathBuf, source: ViewError },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// No usable config from the control plane nor the last-known-good snapshot.
    #[error("{0}")]
    Control(String),
}

/// How a director runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// UDP and TCP address (port 0: a free port, the same for both).
    pub listen: SocketAddr,
    /// Where the global config (with a `dns` section) comes from.
    pub source: Source,
    /// Idle TCP connections are closed after this.
    pub tcp_timeout: Duration,
    /// HTTP address for checkers' reports, `/v1/health` and `/v1/explain` (port 0: a free
    /// port). None: no HTTP listener.
    pub http: Option<SocketAddr>,
    /// A MaxMind-format database consulted after the config's `dns.geo` rows, for
    /// geolocation and geoproximity answers. None: the config's rows only.
    pub geo_database: Option<Arc<GeoDatabase>>,
    /// The tokens a checker's report must carry (`Authorization: Bearer`, one of them) on
    /// `POST /v1/observations`. None: reports are not authenticated.
    pub report_tokens: Option<crate::report_auth::ReportTokens>,
}

/// What the DNS handler and the HTTP listener share.
pub(crate) struct Shared {
    pub view: ArcSwap<View>,
    rrl: ArcSwap<RateLimiter>,
    /// The routing controls over the health view: what the policies ask.
    pub health: Arc<dyn HealthView>,
    pub controls: Arc<Controlled>,
    /// The checkers' quorum behind `health`, unless a fixed view was given.
    pub quorum: Option<Arc<Quorum>>,
    /// Where the config comes from and how fresh it is.
    pub source: Mutex<SourceStatus>,
    /// Given to every view put in service.
    geo_database: Option<Arc<GeoDatabase>>,
    /// Who may report to the HTTP listener, and the refusals.
    pub reports: crate::report_auth::ReportAuth,
}

impl Shared {
    /// The response rate limiter of the view in service.
    pub(crate) fn rrl(&self) -> arc_swap::Guard<Arc<RateLimiter>> {
        self.rrl.load()
    }

    /// Puts a new version's view in service (rate limiter and quorum follow it).
    pub(crate) fn swap(&self, c: &meridian_model::ValidConfig, view: View) {
        if view.rate_limit != self.view.load().rate_limit {
            self.rrl.store(Arc::new(RateLimiter::new(view.rate_limit.clone())));
        }
        if let Some(q) = &self.quorum {
            QuorumHealth(q.clone()).configure(c);
        }
        self.controls.set_config(c);
        self.view.store(Arc::new(view.with_geo_database(self.geo_database.clone())));
    }
}

/// The config a director starts with, and how it follows later versions.
pub(crate) struct Boot {
    config: meridian_model::ValidConfig,
    view: View,
    follow: Follow,
}

enum Follow {
    File { path: PathBuf, poll_interval: Duration, text: String },
    Control(Box<ControlBoot>),
}

impl Boot {
    async fn new(source: &Source) -> Result<Boot, DirectorError> {
        match source {
            Source::File { path, poll_interval } => {
                let (text, config) = load(path)?;
                let serial = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32);
                let view = View::build(&config, serial)
                    .map_err(|source| DirectorError::View { path: path.clone(), source })?;
                let follow = Follow::File { path: path.clone(), poll_interval: *poll_interval, text };
                Ok(Boot { config, view, follow })
            }
            Source::Control(spec) => {
                let (b, view) = crate::source::connect(spec).await?;
                Ok(Boot { config: b.config.clone(), view, follow: Follow::Control(Box::new(b)) })
            }
        }
    }

    fn status(&self) -> SourceStatus {
        match &self.follow {
            Follow::File { path, .. } => {
                SourceStatus { source: format!("file {}", path.display()), ..Default::default() }
            }
            Follow::Control(b) => b.status.clone(),
        }
    }
}

/// A running director.
pub struct Director {
    state: Arc<Shared>,
    addr: SocketAddr,
    http: Option<SocketAddr>,
    done: tokio::task::JoinHandle<()>,
}

impl Director {
    /// Loads the config (it must be valid at start), binds UDP and TCP (and HTTP, if asked)
    /// and starts serving and polling the file, until `shutdown` is cancelled. Health is the
    /// checkers' quorum over the reports they POST.
    pub async fn start(opts: Options, shutdown: CancellationToken) -> Result<Director, DirectorError> {
        Self::start_with_clock(opts, Arc::new(SystemClock), shutdown).await
    }

    /// As [`Director::start`], the quorum's freshness measured by `clock`.
    pub async fn start_with_clock(
        opts: Options,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Director, DirectorError> {
        let boot = Boot::new(&opts.source).await?;
        let h = boot.config.config().dns.as_ref().and_then(|d| d.health.as_ref());
        let quorum = Arc::new(Quorum::new(QuorumConfig::from_dns(h), clock));
        let health = Arc::new(QuorumHealth(quorum.clone()));
        Self::start_inner(opts, boot, health, Some(quorum), shutdown).await
    }

    /// As [`Director::start`], answering from a fixed `health` view instead of checkers.
    pub async fn start_with_health(
        opts: Options,
        health: Arc<dyn HealthView>,
        shutdown: CancellationToken,
    ) -> Result<Director, DirectorError> {
        let boot = Boot::new(&opts.source).await?;
        Self::start_inner(opts, boot, health, None, shutdown).await
    }

    async fn start_inner(
        opts: Options,
        boot: Boot,
        health: Arc<dyn HealthView>,
        quorum: Option<Arc<Quorum>>,
        shutdown: CancellationToken,
    ) -> Result<Director, DirectorError> {
        let status = boot.status();
        let controls = Arc::new(Controlled::new(health));
        controls.set_config(&boot.config);
        if let Follow::Control(b) = &boot.follow
            && let Some(states) = b.controls.clone()
        {
            controls.set_states(states);
        }
        let Boot { view, follow, .. } = boot;
        let serial = view.serial;
        let state = Arc::new(Shared {
            rrl: ArcSwap::from_pointee(RateLimiter::new(view.rate_limit.clone())),
            view: ArcSwap::from_pointee(view.with_geo_database(opts.geo_database.clone())),
            health: controls.clone(),
            controls,
            quorum,
            source: Mutex::new(status),
            geo_database: opts.geo_database.clone(),
            reports: crate::report_auth::ReportAuth::new(opts.report_tokens.clone()),
        });
        let (udp, tcp) = bind(opts.listen).await?;
        let http = match opts.http {
            None => None,
            Some(at) => {
                let err = |source| DirectorError::Bind { addr: at, source };
                let listener = TcpListener::bind(at).await.map_err(err)?;
                let bound = listener.local_addr().map_err(err)?;
                tokio::spawn(crate::http::serve(listener, state.clone(), shutdown.clone()));
                tracing::info!(addr = %bound, "director http listening (/v1/observations, /v1/health, /v1/explain)");
                Some(bound)
            }
        };
        if let Some(q) = &state.quorum {
            tokio::spawn(evaluate_loop(q.clone(), shutdown.clone()));
        }
        let addr = udp.local_addr().map_err(|source| DirectorError::Bind { addr: opts.listen, source })?;
        let udp = tokio::spawn(crate::transport::serve_udp(udp, state.clone(), shutdown.clone()));
        let tcp =
            tokio::spawn(crate::transport::serve_tcp(tcp, opts.tcp_timeout, state.clone(), shutdown.clone()));
        match follow {
            Follow::File { path, poll_interval, text } => {
                tokio::spawn(reload_loop(path, poll_interval, text, state.clone(), shutdown.clone()));
            }
            Follow::Control(b) => {
                tokio::spawn(crate::source::follow(*b, state.clone(), shutdown.clone()));
            }
        }
        let done = tokio::spawn(async move {
            let _ = udp.await;
            let _ = tcp.await;
        });
        tracing::info!(%addr, serial, "director serving (udp, tcp)");
        Ok(Director { state, addr, http, done })
    }

    /// The bound HTTP address, if there is a listener.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The checkers' quorum, unless started with a fixed health view.
    pub fn quorum(&self) -> Option<Arc<Quorum>> {
        self.state.quorum.clone()
    }

    /// The bound UDP and TCP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SOA serial being served.
    pub fn serial(&self) -> u32 {
        self.state.view.load().serial
    }

    /// Where the config comes from, the versions applied, and whether they are stale.
    pub fn source_status(&self) -> SourceStatus {
        self.state.source.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

fn load(path: &PathBuf) -> Result<(String, meridian_model::ValidConfig), DirectorError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| DirectorError::Read { path: path.clone(), source })?;
    let config = meridian_model::parse_global(&text)
        .map_err(|errors| DirectorError::Invalid { path: path.clone(), errors })?;
    Ok((text, config))
}

/// Binds UDP then TCP on the same port; with port 0, retries when the TCP side is taken.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DirectorError> {
    let err = |source| DirectorError::Bind { addr: listen, source };
    let mut attempt = 0;
    loop {
        let udp = UdpSocket::bind(listen).await.map_err(err)?;
        let addr = udp.local_addr().map_err(err)?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if listen.port() == 0 && attempt < 20 => attempt += 1,
            Err(e) => return Err(err(e)),
        }
    }
}

/// Re-evaluates the quorum regularly, so observations going stale (and a partition) take
/// effect without new reports: four times per staleness period, 50 ms to 1 s apart.
async fn evaluate_loop(quorum: Arc<Quorum>, shutdown: CancellationToken) {
    loop {
        let every = (quorum.staleness() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => quorum.evaluate(),
        }
    }
}

async fn reload_loop(
    path: PathBuf,
    poll_interval: Duration,
    mut last_text: String,
    state: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(poll_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        if text == last_text {
            continue;
        }
        last_text = text;
        let current = state.view.load_full();
        match meridian_model::parse_global(&last_text) {
            Err(errors) => {
                tracing::warn!(path = %path.display(), %errors, "invalid config rejected; keeping the last good one")
            }
            Ok(c) if c.hash() == current.hash => {}
            Ok(c) => match View::build(&c, current.serial.wrapping_add(1)) {
                Err(e) => tracing::warn!(error = %e, "config rejected; keeping the last good one"),
                Ok(view) => {
                    tracing::info!(serial = view.serial, hash = %view.hash, "config applied");
                    state.swap(&c, view);
                }
            },
        }
    }
}
