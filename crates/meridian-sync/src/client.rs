//! The node side of the stream: connect to the first reachable control instance, read pushes,
//! hand snapshots over a channel, reconnect with backoff and fail over to the next instance
//! when the stream dies. Runs in its own task; nothing here is ever awaited by a request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::SyncError;
use crate::http::Target;
use crate::protocol::{self, Ack, Push, Snapshot};

/// Longest stream line accepted (a whole config snapshot is one line).
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Who this node is, as told to the control plane in the stream's headers.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub region: String,
    /// `gateway` or `director`.
    pub role: String,
    pub binary_version: String,
    /// Kinds the node applies, e.g. `["config", "drains"]`.
    pub features: Vec<String>,
}

/// How the client talks to the control plane.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Control instances, tried in order; the next one is tried when one fails.
    pub urls: Vec<String>,
    /// The node's bootstrap token (sent as `authorization: Bearer …`).
    pub token: String,
    pub node: NodeInfo,
    /// Silence (no line at all) after which the stream counts as dead.
    /// Default [`protocol::STREAM_DEAD_AFTER`].
    pub dead_after: Duration,
    /// Limit on TCP connect + HTTP handshake. Default 2s.
    pub connect_timeout: Duration,
    /// First pause after every instance failed in a row; doubles up to `backoff_max`.
    /// Default 200ms.
    pub backoff_min: Duration,
    /// Default 5s.
    pub backoff_max: Duration,
}

impl ClientConfig {
    pub fn new(urls: Vec<String>, token: String, node: NodeInfo) -> ClientConfig {
        ClientConfig {
            urls,
            token,
            node,
            dead_after: protocol::STREAM_DEAD_AFTER,
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// What the client reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A stream is open to `url` (the current state follows).
    Connected { url: String },
    /// A pushed snapshot, in stream order.
    Snapshot(Snapshot),
    /// The stream to (or the connection attempt at) `url` failed; the client moves on.
    Disconnected { url: String, error: String },
    /// Every instance failed once in a row; the client backs off and starts over.
    AllUnreachable,
}

/// A running client. Clones share the task, which stops when the last clone is dropped or the
/// event receiver is dropped.
#[derive(Clone)]
pub struct SyncClient {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Vec<Target>,
    token: String,
    node: NodeInfo,
    connect_timeout: Duration,
    /// Index of the instance the stream is open to (acks go there first).
    current: Mutex<usize>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.task.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}

impl SyncClient {
    /// Starts the client task; events arrive on the returned receiver.
    pub fn start(cfg: ClientConfig) -> Result<(SyncClient, mpsc::Receiver<Event>), SyncError> {
        if cfg.urls.is_empty() {
            return Err(SyncError::NoUrls);
        }
        let targets = cfg.urls.iter().map(|u| Target::parse(u)).collect::<Result<Vec<_>, _>>()?;
        let inner = Arc::new(Inner {
            targets,
            token: cfg.token.clone(),
            node: cfg.node.clone(),
            connect_timeout: cfg.connect_timeout,
            current: Mutex::new(0),
            task: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(16);
        // The task holds only a weak reference, so dropping every `SyncClient` stops it.
        let task = tokio::spawn(run(Arc::downgrade(&inner), cfg, tx));
        if let Ok(mut t) = inner.task.lock() {
            *t = Some(task);
        }
        Ok((SyncClient { inner }, rx))
    }

    /// Posts an ack (or nack) to the instance the stream is open to, else to the others in
    /// order.
    pub async fn post_ack(&self, ack: &Ack) -> Result<(), SyncError> {
        let body = Bytes::from(serde_json::to_vec(ack).map_err(|e| SyncError::Encode(e.to_string()))?);
        let n = self.inner.targets.len();
        let first = self.inner.current.lock().map(|c| *c).unwrap_or(0);
        let mut last = SyncError::NoUrls;
        for i in 0..n {
            let t = &self.inner.targets[(first + i) % n];
            let req = Request::builder()
                .method(Method::POST)
                .uri(protocol::ACK_PATH)
                .header(header::AUTHORIZATION, format!("Bearer {}", self.inner.token))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| SyncError::Encode(e.to_string()))?;
            match t.send(req, self.inner.connect_timeout).await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => last = SyncError::Status { url: t.url.clone(), status: resp.status().as_u16() },
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

async fn run(inner: std::sync::Weak<Inner>, cfg: ClientConfig, tx: mpsc::Sender<Event>) {
    let mut backoff = cfg.backoff_min;
    let mut failed_in_a_row = 0;
    let mut i = 0;
    loop {
        let Some(me) = inner.upgrade() else { return };
        let target = me.targets[i].clone();
        let req = stream_request(&me);
        drop(me);
        let result = match req {
            Ok(req) => stream(&inner, i, &target, req, &cfg, &tx).await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(Opened::ReceiverGone) => return,
            Ok(Opened::Ended(why)) => {
                // The stream was open: start the failure count again.
                failed_in_a_row = 0;
                backoff = cfg.backoff_min;
                why
            }
            Err(e) => {
                failed_in_a_row += 1;
                e.to_string()
            }
        };
        tracing::warn!(url = %target.url, %error, "control stream lost; trying the next instance");
        if tx.send(Event::Disconnected { url: target.url.clone(), error }).await.is_err() {
            return;
        }
        i = (i + 1) % cfg.urls.len();
        if failed_in_a_row >= cfg.urls.len() {
            failed_in_a_row = 0;
            if tx.send(Event::AllUnreachable).await.is_err() {
                return;
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(cfg.backoff_max);
        }
    }
}

/// `d` scaled by a factor in [0.5, 1): a fleet that lost the same instance does not come back
/// in lockstep. The sub-second clock is random enough for spreading reconnects.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    d.mul_f64(0.5 + f64::from(nanos.subsec_nanos() % 1000) / 2000.0)
}

enum Opened {
    /// The stream ended or went silent, with the reason.
    Ended(String),
    ReceiverGone,
}

fn stream_request(me: &Inner) -> Result<Request<Full<Bytes>>, SyncError> {
    Request::builder()
        .method(Method::GET)
        .uri(protocol::STREAM_PATH)
        .header(header::AUTHORIZATION, format!("Bearer {}", me.token))
        .header(header::ACCEPT, "application/x-ndjson")
        .header(protocol::NODE_HEADER, &me.node.id)
        .header(protocol::REGION_HEADER, &me.node.region)
        .header(protocol::ROLE_HEADER, &me.node.role)
        .header(protocol::BINARY_VERSION_HEADER, &me.node.binary_version)
        .header(protocol::FEATURES_HEADER, me.node.features.join(","))
        .body(Full::new(Bytes::new()))
        .map_err(|e| SyncError::Encode(e.to_string()))
}

async fn stream(
    inner: &std::sync::Weak<Inner>,
    index: usize,
    target: &Target,
    req: Request<Full<Bytes>>,
    cfg: &ClientConfig,
    tx: &mpsc::Sender<Event>,
) -> Result<Opened, SyncError> {
    let resp = target.send(req, cfg.connect_timeout).await?;
    if resp.status() != StatusCode::OK {
        return Err(SyncError::Status { url: target.url.clone(), status: resp.status().as_u16() });
    }
    if let Some(me) = inner.upgrade()
        && let Ok(mut c) = me.current.lock()
    {
        *c = index;
    }
    tracing::info!(url = %target.url, "control stream open");
    if tx.send(Event::Connected { url: target.url.clone() }).await.is_err() {
        return Ok(Opened::ReceiverGone);
    }
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    let mut last_line = Instant::now();
    loop {
        let frame = match tokio::time::timeout_at(last_line + cfg.dead_after, body.frame()).await {
            Err(_) => return Ok(Opened::Ended(format!("no line for {:?}", cfg.dead_after))),
            Ok(None) => return Ok(Opened::Ended("stream ended".into())),
            Ok(Some(Err(e))) => return Ok(Opened::Ended(format!("stream broken: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        if buf.len() > MAX_LINE && !buf.contains(&b'\n') {
            return Ok(Opened::Ended(format!("a line longer than {MAX_LINE} bytes")));
        }
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(nl + 1);
            last_line = Instant::now();
            let text = String::from_utf8_lossy(&line);
            if text.trim().is_empty() {
                continue;
            }
            match protocol::decode_line(&text) {
                Ok(Push::Ping) => {}
                Ok(Push::Snapshot(s)) => {
                    if tx.send(Event::Snapshot(s)).await.is_err() {
                        return Ok(Opened::ReceiverGone);
                    }
                }
                // A newer control instance may push kinds this node does not know yet.
                Err(e) => tracing::warn!(url = %target.url, error = %e, "ignoring an unreadable stream line"),
            }
        }
    }
}
