//! The accept loop shared by the test upstreams: one hyper-util auto connection per socket,
//! graceful or abrupt stop, nothing left running after drop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a graceful stop waits for requests in flight before dropping their connections.
const GRACEFUL_STOP: Duration = Duration::from_secs(5);

/// Which HTTP versions a server accepts on its port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c), told apart by the connection preface.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1Only,
    /// HTTP/2 prior knowledge only.
    Http2Only,
}

/// A running accept loop.
pub(crate) struct Server {
    addr: SocketAddr,
    /// Stops accepting and asks connections to finish their requests.
    graceful: CancellationToken,
    /// Ends everything now, including upgraded (WebSocket) connections.
    kill: CancellationToken,
    connections: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds 127.0.0.1:0 and serves `handler` on every connection. `handler` gets the
    /// server's kill token so tasks it spawns (upgrades) can end with the server.
    pub(crate) async fn start<H, Fut, B, E>(protocols: Protocols, handler: H) -> Server
    where
        H: Fn(Request<Incoming>, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send + Sync + 'static,
        E: Into<BoxError> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let graceful = CancellationToken::new();
        let kill = CancellationToken::new();
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            protocols,
            handler,
            graceful.clone(),
            kill.clone(),
            connections.clone(),
        ));
        Server { addr, graceful, kill, connections, task: Some(task) }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), then closes everything.
    pub(crate) async fn stop(&mut self) {
        self.graceful.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.kill.cancel();
    }

    /// Closes the listener and every connection now, mid-response if need be.
    pub(crate) async fn stop_abruptly(&mut self) {
        self.kill.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs a hyper connection to completion; on `graceful` it stops taking new requests and
/// finishes the ones in flight. (A macro: the three connection types share no trait.)
macro_rules! drive {
    ($conn:expr, $graceful:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = $graceful.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }};
}

async fn accept_loop<H, Fut, B, E>(
    listener: TcpListener,
    protocols: Protocols,
    handler: H,
    graceful: CancellationToken,
    kill: CancellationToken,
    connections: Arc<AtomicU64>,
) where
    H: Fn(Request<Incoming>, CancellationToken) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send + Sync + 'static,
    E: Into<BoxError> + Send + Sync + 'static,
{
    // Connection tasks live in the set, so aborting this task (drop, abrupt stop) aborts them.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = graceful.cancelled() => break,
            _ = kill.cancelled() => return,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let _ = tcp.set_nodelay(true);
                let handler = handler.clone();
                let (graceful, kill) = (graceful.clone(), kill.clone());
                conns.spawn(async move {
                    let service = service_fn(move |req| handler(req, kill.clone()));
                    let io = TokioIo::new(tcp);
                    // auto's upgrade-capable connection ignores http1_only/http2_only, so the
                    // restricted modes use hyper's single-version connections.
                    match protocols {
                        Protocols::Auto => {
                            let builder = auto::Builder::new(TokioExecutor::new());
                            drive!(builder.serve_connection_with_upgrades(io, service), graceful)
                        }
                        Protocols::Http1Only => {
                            let builder = hyper::server::conn::http1::Builder::new();
                            drive!(builder.serve_connection(io, service).with_upgrades(), graceful)
                        }
                        Protocols::Http2Only => {
                            let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                            drive!(builder.serve_connection(io, service), graceful)
                        }
                    }
                });
            }
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(GRACEFUL_STOP, drain).await;
}

/// A handler error that makes hyper drop the connection (HTTP/1.1) or reset the stream (HTTP/2)
/// without sending a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("test upstream dropped the connection on purpose")
    }
}

impl std::error::Error for DropConnection {}
