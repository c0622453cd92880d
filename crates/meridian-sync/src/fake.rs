//! A small but real control instance for tests of nodes: it speaks the protocol of
//! [`crate::protocol`] over HTTP on loopback (streams ndjson with pings, checks the bearer
//! token, records acks and the hello headers). Not used in production.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::protocol::{self, Ack, Kind, Push, Snapshot};

/// A fake control instance on `127.0.0.1:0`.
pub struct FakeControl {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

struct State {
    token: String,
    ping_every: Duration,
    current: Mutex<BTreeMap<Kind, Snapshot>>,
    pushes: broadcast::Sender<Snapshot>,
    acks: Mutex<Vec<Ack>>,
    /// The `x-meridian-node` header of every accepted stream.
    hellos: Mutex<Vec<String>>,
    /// While set, streams stay open but nothing (not even a ping) is written.
    silent: std::sync::atomic::AtomicBool,
}

impl FakeControl {
    /// Starts an instance that accepts `token` and pings every `ping_every`.
    pub async fn start(token: &str, ping_every: Duration) -> FakeControl {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            token: token.to_string(),
            ping_every,
            current: Mutex::new(BTreeMap::new()),
            pushes: broadcast::channel(64).0,
            acks: Mutex::new(Vec::new()),
            hellos: Mutex::new(Vec::new()),
            silent: false.into(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, Arc::clone(&state), stop.clone()));
        FakeControl { addr, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `snap` the current version of its kind and pushes it to every open stream.
    pub fn push(&self, snap: Snapshot) {
        self.state.current.lock().unwrap().insert(snap.kind, snap.clone());
        let _ = self.state.pushes.send(snap);
    }

    /// Every ack and nack received so far, in order.
    pub fn acks(&self) -> Vec<Ack> {
        self.state.acks.lock().unwrap().clone()
    }

    /// Waits up to `within` for an ack matching `f`.
    pub async fn wait_ack(&self, within: Duration, f: impl Fn(&Ack) -> bool) -> Ack {
        let end = tokio::time::Instant::now() + within;
        loop {
            if let Some(a) = self.acks().into_iter().find(&f) {
                return a;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "no matching ack within {within:?}: {:?}",
                self.acks()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Node ids of the streams opened so far.
    pub fn hellos(&self) -> Vec<String> {
        self.state.hellos.lock().unwrap().clone()
    }

    /// Keeps streams open but stops writing to them (a hung instance).
    pub fn set_silent(&self, silent: bool) {
        self.state.silent.store(silent, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops accepting and closes every stream (a killed instance).
    pub fn kill(&self) {
        self.stop.cancel();
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = stop.cancelled() => return,
        };
        let (state, stop) = (Arc::clone(&state), stop.clone());
        let conn_stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (state, stop) = (Arc::clone(&state), stop.clone());
                async move { Ok::<_, Infallible>(handle(req, &state, stop).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            tokio::select! { _ = conn => {}, _ = conn_stop.cancelled() => {} }
        });
    }
}

async fn handle(req: Request<Incoming>, state: &Arc<State>, stop: CancellationToken) -> Response<LineBody> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.strip_prefix("Bearer ") == Some(state.token.as_str()));
    if !authorized {
        return answer(StatusCode::UNAUTHORIZED);
    }
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, protocol::STREAM_PATH) => {
            let node = req.headers().get(protocol::NODE_HEADER).and_then(|v| v.to_str().ok());
            state.hellos.lock().unwrap().push(node.unwrap_or("").to_string());
            let features: Vec<String> = req
                .headers()
                .get(protocol::FEATURES_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(feed(Arc::clone(state), features, tx, stop));
            let mut r = Response::new(LineBody(rx));
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-ndjson"));
            r
        }
        (Method::POST, protocol::ACK_PATH) => {
            let Ok(body) = req.into_body().collect().await else { return answer(StatusCode::BAD_REQUEST) };
            match serde_json::from_slice::<Ack>(&body.to_bytes()) {
                Ok(ack) => {
                    state.acks.lock().unwrap().push(ack);
                    answer(StatusCode::NO_CONTENT)
                }
                Err(_) => answer(StatusCode::BAD_REQUEST),
            }
        }
        _ => answer(StatusCode::NOT_FOUND),
    }
}

/// Writes the current snapshots, then every push and a ping on every idle interval; only the
/// kinds the node announced in its features.
async fn feed(state: Arc<State>, features: Vec<String>, tx: mpsc::Sender<Bytes>, stop: CancellationToken) {
    let mut pushes = state.pushes.subscribe();
    let current: Vec<Snapshot> = state
        .current
        .lock()
        .unwrap()
        .values()
        .filter(|s| protocol::wants(&features, s.kind))
        .cloned()
        .collect();
    for s in current {
        if tx.send(line(Push::Snapshot(s))).await.is_err() {
            return;
        }
    }
    loop {
        let push = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            p = pushes.recv() => match p {
                Ok(s) if protocol::wants(&features, s.kind) => Push::Snapshot(s),
                Ok(_) => continue,
                Err(_) => return,
            },
            _ = tokio::time::sleep(state.ping_every) => Push::Ping,
        };
        if state.silent.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        if tx.send(line(push)).await.is_err() {
            return;
        }
    }
}

fn line(p: Push) -> Bytes {
    Bytes::from(protocol::encode_line(&p))
}

fn answer(status: StatusCode) -> Response<LineBody> {
    let (_, rx) = mpsc::channel(1);
    let mut r = Response::new(LineBody(rx));
    *r.status_mut() = status;
    r
}

/// A streaming body fed line by line.
pub struct LineBody(mpsc::Receiver<Bytes>);

impl Body for LineBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
