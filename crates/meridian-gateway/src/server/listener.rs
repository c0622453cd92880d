//! One listener: accept loop, optional TLS, HTTP/1.1 and HTTP/2 on one port, per-connection
//! limits, idle timeout and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use meridian_core::Shutdown;
use meridian_model::ListenerLimits;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::h1::{self, Served};
use crate::body::{BoxError, GwBody};
use crate::wire::{Io, Prefixed};

/// A client connection's transport.
type ServerIo = Io<tokio_rustls::server::TlsStream<TcpStream>>;
use crate::proxy::{ConnInfo, Proxy};
use crate::timeout::{Activity, ActivityIo, IdleRule, Quiet};

/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Period of the accept loop's timer anchor (see [`serve`]); shorter than any sensible
/// `header_read_timeout`, long enough to cost nothing (one wake-up per second).
const TIMER_ANCHOR: Duration = Duration::from_secs(1);

/// A listener ready to serve.
pub struct Listener {
    pub name: String,
    /// Client traffic, or the peer listener (mutual TLS, hop contract).
    pub kind: ListenerKind,
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub limits: ListenerLimits,
}

impl Listener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Public,
    Peer,
}

pub(super) struct ConnShared {
    pub(super) kind: ListenerKind,
    pub(super) proxy: Proxy,
    pub(super) info: ConnInfo,
}

/// Accepts until `shutdown` stops, then asks every connection to finish gracefully (HTTP/2
/// GOAWAY, idle HTTP/1.1 keep-alives closed). Connections are tracked by `tracker`.
pub async fn serve(l: Listener, proxy: Proxy, shutdown: Shutdown, tracker: TaskTracker) {
    let builder = Arc::new(http_builder(&l.limits));
    let limits = Arc::new(l.limits.clone());
    // A timer that is always due within a second. tokio wakes its parked driver (an eventfd
    // write, then one more epoll event) whenever a new timer is due before every pending one,
    // and hyper arms a header-read timer (10 s by default) each time a keep-alive connection
    // goes back to reading its next request: at low concurrency that was one extra syscall and
    // wake-up per request (strace, docs/benchmarks.md). With this timer pending, a header-read
    // timer is never the earliest one.
    let mut anchor = tokio::time::interval(TIMER_ANCHOR);
    anchor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, peer) = tokio::select! {
            r = l.tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %l.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = anchor.tick() => continue,
            _ = shutdown.stopping() => break,
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let tls = l.tls.clone();
        let builder = Arc::clone(&builder);
        let limits = Arc::clone(&limits);
        let shutdown = shutdown.clone();
        let kind = l.kind;
        tracker.spawn(async move {
            serve_conn(stream, peer, kind, tls, proxy, &builder, &limits, shutdown).await;
        });
    }
    tracing::info!(listener = %l.name, "listener closed");
}

/// hyper's HTTP/1.1 header count limit when none is set (`proto::h1::role::DEFAULT_MAX_HEADERS`).
const HYPER_MAX_HEADERS: usize = 100;

fn http_builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.get())
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    // hyper's own limit is 100 headers, parsed into a fixed array on the stack. Any explicit
    // limit, even 100, makes it fill a vector of that many slots per request instead
    // (≈ 1,700 instructions per request, docs/benchmarks.md): set it only when it differs.
    if limits.max_header_count != HYPER_MAX_HEADERS {
        b.http1().max_headers(limits.max_header_count);
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256));
    b
}

#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    tls: Option<TlsAcceptor>,
    proxy: Proxy,
    builder: &auto::Builder<TokioExecutor>,
    limits: &ListenerLimits,
    shutdown: Shutdown,
) {
    let shared = Arc::new(ConnShared {
        kind,
        proxy,
        info: ConnInfo { peer, tls: tls.is_some(), max_body_bytes: limits.max_body_bytes },
    });
    let io = match tls {
        None => ServerIo::Tcp(stream),
        Some(acceptor) => {
            // Boxed where it is made: held inline, the 1.2 KB TLS stream would stay in this
            // future's state (and so in every connection's task) while the connection is served.
            let Some(tls) = Box::pin(handshake(acceptor, stream, peer)).await else { return };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                return Box::pin(drive(tls, shared, builder, limits.idle_timeout.get(), shutdown)).await;
            }
            ServerIo::Tls(tls)
        }
    };
    // HTTP/1.1 is served by our own loop; what it leaves (HTTP/2, upgrades, …) by hyper.
    let (prefix, io) = match h1::serve(io, &shared, limits, &shutdown).await {
        Served::Closed => return,
        Served::HandOver(prefix, io) => (prefix, io),
    };
    Box::pin(drive(Prefixed::new(prefix, io), shared, builder, limits.idle_timeout.get(), shutdown)).await
}

/// The TLS handshake of a client connection, within [`TLS_HANDSHAKE_TIMEOUT`].
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<Box<tokio_rustls::server::TlsStream<TcpStream>>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Serves the rest of a connection with hyper. The activity clock and the count of requests in
/// progress, which its idle timeout needs, exist only here: our own HTTP/1.1 loop needs neither.
async fn drive<I>(
    io: I,
    shared: Arc<ConnShared>,
    builder: &auto::Builder<TokioExecutor>,
    idle: Duration,
    shutdown: Shutdown,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(ActivityIo::new(io, activity.clone()));
    // Requests whose response has not finished on this connection.
    let active = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&active);
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let guard = ActiveGuard::new(&counter);
        // Boxed where it is made: hyper runs each HTTP/2 stream as a task of its own, and
        // spawning it copied this future (4 KiB, the whole request's work) three times.
        super::boxed_in_place(move || async move {
            let req = req.map(GwBody::Incoming);
            let resp = match shared.kind {
                ListenerKind::Public => shared.proxy.handle(req, &shared.info).await,
                ListenerKind::Peer => shared.proxy.handle_peer(req, &shared.info).await,
            };
            // hyper writes the `HeaderMap` only: an endpoint's passed-through fields go into it.
            let resp = crate::raw_head::materialize(resp);
            Ok::<_, Infallible>(resp.map(|b| ServerBody { inner: b, _guard: guard }))
        })
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    // Polled with the connection on every wake-up of its task: the stop flag (the token's own
    // future locks its `Notify`), and one timer for both watches.
    let stop = shutdown.stopping_owned();
    tokio::pin!(stop);
    let mut closing = false;
    loop {
        let rule = if closing { IdleRule::Never } else { IdleRule::NoneActive(&active) };
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = stop.as_mut(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            quiet = activity.watch(idle, rule) => match quiet {
                Quiet::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                // A client that takes no response bytes for the idle timeout is gone (nginx's
                // `send_timeout`, as the HTTP/1.1 loop does): dropping the connection ends it.
                Quiet::WriteStalled => {
                    tracing::debug!("client took no response bytes in time; closing");
                    return;
                }
            },
        }
    }
}

/// Marks a request active on its connection until its response body is done.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(c))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body as the server sends it: the gateway body plus the active-request mark.
pub struct ServerBody {
    inner: GwBody,
    _guard: ActiveGuard,
}

impl Body for ServerBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
