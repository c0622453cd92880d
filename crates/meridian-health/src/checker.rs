//! Active health checks: one task per endpoint probes it every `interval` and applies the
//! thresholds (see [`crate::active`]). A probe is an HTTP/1.1 `GET` (expected statuses, `Host`
//! set) or a bare TCP connect, bounded by `timeout` as a whole (connect + answer).
//!
//! Time here is Tokio's (`tokio::time::Instant`), so a test may pause it; the checker is not on
//! the request path.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use meridian_model::{HealthCheck, Probe};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::active::{ProbeStreak, Thresholds};
use crate::service::ServiceHealth;

/// One endpoint to probe.
pub struct CheckTarget {
    /// The endpoint's index in its [`ServiceHealth`].
    pub index: usize,
    /// Where to connect now: a function because endpoints may be hostnames that are resolved
    /// again elsewhere. `None` (not resolved) fails the probe.
    pub addr: Box<dyn Fn() -> Option<SocketAddr> + Send + Sync>,
    /// `Host` header of HTTP probes, e.g. `orders.internal:8080`.
    pub host: String,
    /// Local address to send probes from (the node's source address), if any.
    pub source: Option<IpAddr>,
}

/// Stops the checker tasks when dropped. The tasks also stop by themselves once the
/// [`ServiceHealth`] they report to is dropped (they hold it weakly).
#[must_use = "dropping the guard stops the health checks"]
pub struct CheckerGuard {
    tasks: Vec<JoinHandle<()>>,
}

impl CheckerGuard {
    /// True when every checker task has ended.
    pub fn is_finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }
}

impl Drop for CheckerGuard {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts probing `targets` as `cfg` says, on the current Tokio runtime (panics outside one).
/// First probes are spread over one interval, so endpoints are not all probed at once.
pub fn spawn_active_checks(
    health: &Arc<ServiceHealth>,
    targets: Vec<CheckTarget>,
    cfg: &HealthCheck,
) -> CheckerGuard {
    // Tokio's interval rejects zero; validation rejects it too.
    let interval = cfg.interval.get().max(Duration::from_millis(1));
    let spec = Arc::new(Spec::new(&cfg.probe, cfg.timeout.get()));
    let thresholds = Thresholds::from(cfg);
    let start = tokio::time::Instant::now();
    let n = u32::try_from(targets.len()).unwrap_or(u32::MAX).max(1);
    let tasks = targets
        .into_iter()
        .zip(0u32..)
        .map(|(target, k)| {
            let first = start + interval * k / n;
            let check = Check { health: Arc::downgrade(health), target, spec: spec.clone(), thresholds };
            tokio::spawn(check.run(first, interval))
        })
        .collect();
    CheckerGuard { tasks }
}

/// The probe of a service, prepared once.
enum Kind {
    /// A path that does not parse fails every probe with this message.
    Http {
        uri: Result<Uri, String>,
        expected: Vec<u16>,
    },
    Tcp,
}

struct Spec {
    kind: Kind,
    timeout: Duration,
}

impl Spec {
    fn new(probe: &Probe, timeout: Duration) -> Self {
        let kind = match probe {
            Probe::Http { path, expected_statuses } => Kind::Http {
                uri: Uri::try_from(path.as_str()).map_err(|e| format!("invalid path {path:?}: {e}")),
                expected: expected_statuses.clone(),
            },
            Probe::Tcp => Kind::Tcp,
        };
        Spec { kind, timeout }
    }
}

struct Check {
    health: Weak<ServiceHealth>,
    target: CheckTarget,
    spec: Arc<Spec>,
    thresholds: Thresholds,
}

impl Check {
    async fn run(self, first: tokio::time::Instant, interval: Duration) {
        let mut ticker = tokio::time::interval_at(first, interval);
        // A slow probe delays the next rather than firing a burst to catch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut streak = ProbeStreak::default();
        let i = self.target.index;
        loop {
            ticker.tick().await;
            let result = tokio::time::timeout(self.spec.timeout, self.probe())
                .await
                .unwrap_or(Err(ProbeError::Timeout(self.spec.timeout)));
            let Some(health) = self.health.upgrade() else { return };
            if i >= health.len() {
                tracing::warn!(service = %health.labels().service, endpoint = i, "no such endpoint: not checking it");
                return;
            }
            let now = tokio::time::Instant::now().into_std();
            let current = health.endpoint(i).active();
            let why: &dyn fmt::Display = match &result {
                Ok(()) => &"passed",
                Err(e) => e,
            };
            match streak.observe(result.is_ok(), current, self.thresholds) {
                Some(next) => health.set_active(i, next, now, why),
                None if result.is_err() => {
                    let labels = health.labels();
                    tracing::debug!(service = %labels.service, region = %labels.region, endpoint = i,
                        error = %why, "health probe failed")
                }
                None => {}
            }
        }
    }

    async fn probe(&self) -> Result<(), ProbeError> {
        let addr = (self.target.addr)().ok_or(ProbeError::NoAddress)?;
        let stream = connect(addr, self.target.source).await.map_err(|e| ProbeError::Connect(addr, e))?;
        match &self.spec.kind {
            Kind::Tcp => Ok(()),
            Kind::Http { uri, expected } => {
                let uri = uri.as_ref().map_err(|e| ProbeError::Request(e.clone()))?;
                let status = http_get(stream, uri, &self.target.host).await?;
                if passes(status, expected) { Ok(()) } else { Err(ProbeError::Status(status)) }
            }
        }
    }
}

pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Sends `GET uri` and returns the status; the body is not read and the connection is closed.
async fn http_get(stream: TcpStream, uri: &Uri, host: &str) -> Result<u16, ProbeError> {
    let request = Request::get(uri.clone())
        .header(HOST, host)
        .header(USER_AGENT, "meridian-health")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Request(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut conn = std::pin::pin!(conn);
    let mut response = std::pin::pin!(sender.send_request(request));
    let response = tokio::select! {
        response = &mut response => response?,
        // With `Connection: close` the connection may end in the same poll that reads the
        // answer; the answer is then waiting (or the request fails, if there was none).
        closed = &mut conn => {
            closed?;
            response.await?
        }
    };
    Ok(response.status().as_u16())
}

/// Does `status` pass? An empty list means 200–399.
fn passes(status: u16, expected: &[u16]) -> bool {
    if expected.is_empty() { (200..400).contains(&status) } else { expected.contains(&status) }
}

/// Why a probe failed; shown in log lines.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("no address to probe (not resolved)")]
    NoAddress,
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, #[source] io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(String),
    #[error("unexpected status {0}")]
    Status(u16),
}

#[cfg(test)]
mod tests {
    use super::passes;

    #[test]
    fn default_statuses_are_2xx_and_3xx() {
        assert!(passes(200, &[]) && passes(399, &[]));
        assert!(!passes(199, &[]) && !passes(404, &[]) && !passes(503, &[]));
        assert!(passes(404, &[404]) && !passes(200, &[404]));
    }
}
