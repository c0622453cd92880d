//! A real HTTP test upstream on 127.0.0.1:0: HTTP/1.1 and h2c (prior knowledge) on one port.
//!
//! Behaviour by path (every response carries `x-upstream: <name>`):
//!
//! | path | answer |
//! |---|---|
//! | any other path | `200` JSON echo: `{"upstream","method","path","query","version","headers","body_bytes"}` |
//! | `/status/{code}` | that status, echo body (empty for 204/304) |
//! | `/delay/{ms}` | waits `ms` milliseconds, then echoes |
//! | `/bytes/{n}` | streams `n` bytes (byte `i` is `i % 256`) in 64 KiB chunks, never buffered |
//! | `/sink` | reads the request body as a stream, answers `{"received": N}` |
//! | `/reset` | no response: HTTP/1.1 connection closed, HTTP/2 stream reset |
//! | `/fail-once/{key}` | `503` the first time a key is seen, echo `200` afterwards |
//! | `/ws` | WebSocket echo (HTTP/1.1 `Upgrade: websocket`); `426` without the upgrade |
//! | `/trailers` | a body followed by the trailer `x-checksum` (HTTP/2, or HTTP/1.1 chunked) |
//!
//! The request body is counted frame by frame and dropped, so `/sink` and the echo stay at flat
//! memory for multi-gigabyte uploads.

mod body;
mod handlers;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderMap;

use crate::server::{Protocols, Server};

/// Options for [`TestUpstream::start_with`].
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// HTTP versions accepted. Default: HTTP/1.1 and h2c on one port.
    pub protocols: Protocols,
}

/// A running test upstream. Dropping it stops it (abruptly); [`TestUpstream::stop`] is graceful.
pub struct TestUpstream {
    server: Server,
    state: Arc<State>,
}

/// What the upstream observed, for assertions.
pub(crate) struct State {
    pub(crate) name: String,
    requests: AtomicU64,
    by_prefix: Mutex<HashMap<String, u64>>,
    last_headers: Mutex<Option<HeaderMap>>,
    pub(crate) fail_once_seen: Mutex<HashSet<String>>,
}

impl State {
    fn record(&self, path: &str, headers: &HeaderMap) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *lock(&self.by_prefix).entry(prefix_of(path)).or_default() += 1;
        *lock(&self.last_headers) = Some(headers.clone());
    }
}

impl TestUpstream {
    /// Starts an upstream answering HTTP/1.1 and h2c; `name` is echoed in bodies and `x-upstream`.
    pub async fn start(name: &str) -> TestUpstream {
        TestUpstream::start_with(name, UpstreamOptions::default()).await
    }

    /// Starts an upstream with options (e.g. HTTP/2 only).
    pub async fn start_with(name: &str, options: UpstreamOptions) -> TestUpstream {
        let state = Arc::new(State {
            name: name.to_string(),
            requests: AtomicU64::new(0),
            by_prefix: Mutex::new(HashMap::new()),
            last_headers: Mutex::new(None),
            fail_once_seen: Mutex::new(HashSet::new()),
        });
        let handler_state = state.clone();
        let server = Server::start(options.protocols, move |req, kill| {
            let state = handler_state.clone();
            state.record(req.uri().path(), req.headers());
            handlers::handle(state, req, kill)
        })
        .await;
        TestUpstream { server, state }
    }

    /// The listening address (127.0.0.1 and an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Requests received so far (counted when the head arrives, before the answer).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests whose path starts with the first segment `prefix`: `"/status"`, `"/fail-once"`,
    /// `"/"` for the root. Any other path counts under its own first segment (`"/api"`).
    pub fn requests_to(&self, prefix: &str) -> u64 {
        lock(&self.state.by_prefix).get(&prefix_of(prefix)).copied().unwrap_or(0)
    }

    /// TCP connections accepted so far (tells keep-alive and pooling apart from new connections).
    pub fn connections(&self) -> u64 {
        self.server.connections()
    }

    /// Headers of the most recent request, if any arrived.
    pub fn last_request_headers(&self) -> Option<HeaderMap> {
        lock(&self.state.last_headers).clone()
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), then closes all connections.
    pub async fn stop(mut self) {
        self.server.stop().await;
    }

    /// Closes the listener and every connection at once, mid-response if need be.
    pub async fn stop_abruptly(mut self) {
        self.server.stop_abruptly().await;
    }
}

/// `/status/503` → `/status`; `/` and `` → `/`.
fn prefix_of(path: &str) -> String {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    format!("/{first}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
