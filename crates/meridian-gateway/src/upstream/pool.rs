//! Connections to one endpoint: a pool of idle HTTP/1.1 keep-alive connections (our own client,
//! [`super::h1`]), or one shared HTTP/2 connection (hyper's low-level client connection API).
//!
//! Checkout is a mutex pop on a short vector with no per-request key hashing or boxing; an
//! HTTP/1.1 connection comes back when its response body ends cleanly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_core::ErrorCode;
use meridian_model::UpstreamProtocol;
use tokio::net::{TcpSocket, TcpStream};

use super::h1;
use crate::body::GwBody;
use crate::error::{ProxyError, Retry, Source};
use crate::worker;

/// Where an endpoint is: a fixed address, or a hostname whose addresses are re-resolved.
pub struct EndpointAddr {
    /// As written in config (`10.0.0.1:80`, `orders.internal:8080`).
    pub configured: String,
    /// The hostname part when it is not an IP literal.
    pub hostname: Option<String>,
    pub port: u16,
    addrs: ArcSwap<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl EndpointAddr {
    /// Parses `ip:port` or `host:port`. Hostname endpoints start with no address until resolved.
    pub fn parse(s: &str) -> Result<EndpointAddr, String> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(EndpointAddr {
                configured: s.to_string(),
                hostname: None,
                port: sa.port(),
                addrs: ArcSwap::from_pointee(vec![sa]),
                next: AtomicUsize::new(0),
            });
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not host:port"))?;
        let port: u16 = port.parse().map_err(|_| format!("invalid port in {s:?}"))?;
        Ok(EndpointAddr {
            configured: s.to_string(),
            hostname: Some(host.to_string()),
            port,
            addrs: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
        })
    }

    /// Replaces the resolved addresses (hostname endpoints).
    pub fn set_addrs(&self, addrs: Vec<SocketAddr>) {
        self.addrs.store(Arc::new(addrs));
    }

    pub fn addrs(&self) -> Arc<Vec<SocketAddr>> {
        self.addrs.load_full()
    }

    fn pick(&self) -> Option<SocketAddr> {
        let a = self.addrs.load();
        match a.len() {
            0 => None,
            1 => Some(a[0]),
            n => Some(a[self.next.fetch_add(1, Ordering::Relaxed) % n]),
        }
    }
}

/// A connection ready to send one request.
pub enum Sender {
    H1(Box<h1::Conn>),
    H2(http2::SendRequest<GwBody>),
}

/// A checked-out connection; `reused` tells whether it carried requests before (a failure on a
/// reused connection before the request was written is safe to retry on a fresh one).
pub struct Conn {
    pub sender: Sender,
    pub reused: bool,
}

struct Idle {
    conn: Box<h1::Conn>,
    expires: Option<Instant>,
    worker: u32,
}

/// Connection pool of one endpoint.
pub struct EndpointPool {
    pub addr: EndpointAddr,
    protocol: UpstreamProtocol,
    max_idle: usize,
    idle_timeout: Duration,
    /// Idle connections, each with the instant it expires at (`None`: it does not) and the
    /// listener worker whose reactor its socket is registered with (`crate::worker`): only
    /// that worker's requests use it.
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<http2::SendRequest<GwBody>>>,
    /// Requests in flight to this endpoint (least-request balancing, status).
    pub in_flight: AtomicU32,
    opts: ConnectOpts,
}

/// How connections are opened: from which source address, and with TLS (peer gateways).
#[derive(Clone, Default)]
pub struct ConnectOpts {
    /// Bind outgoing sockets to this address (region isolation, per-region egress).
    pub source: Option<std::net::IpAddr>,
    /// TLS client side: connector (with our client certificate) and the name to verify.
    pub tls: Option<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>)>,
}

impl EndpointPool {
    pub fn new(
        addr: EndpointAddr,
        protocol: UpstreamProtocol,
        max_idle: usize,
        idle_timeout: Duration,
        opts: ConnectOpts,
    ) -> Self {
        EndpointPool {
            opts,
            addr,
            protocol,
            max_idle,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            in_flight: AtomicU32::new(0),
        }
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.protocol
    }

    /// A connection from the pool, or a new one within `connect_timeout`. `now`: the caller's
    /// clock reading, for the idle timeout of pooled connections.
    pub async fn checkout(&self, connect_timeout: Duration, now: Instant) -> Result<Conn, ProxyError> {
        match self.protocol {
            UpstreamProtocol::Http1 => {
                if let Some(s) = self.pop_idle(now) {
                    return Ok(Conn { sender: Sender::H1(s), reused: true });
                }
                // Boxed: connecting (TLS included) is rare and its future large; inline, it would
                // size every connection's task, idle ones too.
                let s = Box::pin(self.connect_h1(connect_timeout)).await?;
                Ok(Conn { sender: Sender::H1(s), reused: false })
            }
            UpstreamProtocol::Http2 => {
                if let Some(s) = self.shared_h2() {
                    return Ok(Conn { sender: Sender::H2(s), reused: true });
                }
                let s = Box::pin(self.connect_h2(connect_timeout)).await?;
                *lock(&self.h2) = Some(s.clone());
                Ok(Conn { sender: Sender::H2(s), reused: false })
            }
        }
    }

    /// A fresh HTTP/1.1 connection that is never pooled, for protocol upgrades (WebSocket):
    /// hyper's client, which hands over the connection after `101`.
    pub async fn connect_for_upgrade(
        &self,
        connect_timeout: Duration,
    ) -> Result<http1::SendRequest<GwBody>, ProxyError> {
        match self.connect_io(connect_timeout).await? {
            h1::Io::Tcp(tcp) => self.handshake_upgrade(tcp).await,
            h1::Io::Tls(tls) => self.handshake_upgrade(tls).await,
        }
    }

    /// Returns an HTTP/1.1 connection whose response body was read to the end.
    pub fn checkin(&self, s: Box<h1::Conn>) {
        let mut idle = lock(&self.idle);
        if self.max_idle == 0 {
            return;
        }
        if idle.len() >= self.max_idle {
            // Keep the warmest connections: the oldest idle one goes.
            idle.remove(0);
        }
        idle.push(Idle {
            conn: s,
            expires: Instant::now().checked_add(self.idle_timeout),
            worker: worker::id(),
        });
    }

    /// Idle connections currently pooled (HTTP/1.1).
    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    fn pop_idle(&self, now: Instant) -> Option<Box<h1::Conn>> {
        let me = worker::id();
        loop {
            let Idle { mut conn, expires, .. } = {
                let mut idle = lock(&self.idle);
                // The most recently used connection of this worker.
                let i = idle.iter().rposition(|c| c.worker == me)?;
                idle.remove(i)
            };
            // Too old, or the endpoint closed it (or sent something unasked) while it idled.
            if expires.is_none_or(|at| now < at) && conn.is_quiet() {
                return Some(conn);
            }
        }
    }

    fn shared_h2(&self) -> Option<http2::SendRequest<GwBody>> {
        let mut g = lock(&self.h2);
        match g.as_ref() {
            // After a GOAWAY the connection is not ready for new streams: open another.
            Some(s) if s.is_ready() => Some(s.clone()),
            Some(_) => {
                *g = None;
                None
            }
            None => None,
        }
    }

    async fn tcp(&self, connect_timeout: Duration) -> Result<TcpStream, ProxyError> {
        let Some(sa) = self.addr.pick() else {
            return Err(ProxyError::new(
                ErrorCode::ServiceUnavailable,
                Source::Upstream,
                Retry::Safe,
                format!("endpoint {} has no resolved address", self.addr.configured),
            ));
        };
        let connect = async {
            match self.opts.source {
                None => TcpStream::connect(sa).await,
                Some(ip) => {
                    let sock = if sa.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                    sock.bind(std::net::SocketAddr::new(ip, 0))?;
                    sock.connect(sa).await
                }
            }
        };
        let stream = match tokio::time::timeout(connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(ProxyError::new(
                    ErrorCode::BadGateway,
                    Source::Upstream,
                    Retry::Safe,
                    format!("connect to {sa} failed: {e}"),
                ));
            }
            Err(_) => {
                return Err(ProxyError::new(
                    ErrorCode::GatewayTimeout,
                    Source::Upstream,
                    Retry::Safe,
                    format!("connect to {sa} timed out after {connect_timeout:?}"),
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn connect_io(&self, t: Duration) -> Result<h1::Io, ProxyError> {
        let tcp = self.tcp(t).await?;
        Ok(match &self.opts.tls {
            None => h1::Io::Tcp(tcp),
            Some(tls) => h1::Io::Tls(Box::new(self.tls(tcp, tls, t).await?)),
        })
    }

    async fn connect_h1(&self, t: Duration) -> Result<Box<h1::Conn>, ProxyError> {
        Ok(h1::Conn::new(self.connect_io(t).await?))
    }

    async fn connect_h2(&self, t: Duration) -> Result<http2::SendRequest<GwBody>, ProxyError> {
        let tcp = self.tcp(t).await?;
        match &self.opts.tls {
            None => self.handshake_h2(tcp).await,
            Some(tls) => self.handshake_h2(self.tls(tcp, tls, t).await?).await,
        }
    }

    async fn tls(
        &self,
        tcp: TcpStream,
        (connector, name): &(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>),
        t: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProxyError> {
        match tokio::time::timeout(t, connector.connect(name.clone(), tcp)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(ProxyError::new(
                ErrorCode::BadGateway,
                Source::Upstream,
                Retry::Safe,
                format!("TLS with {} failed: {e}", self.addr.configured),
            )),
            Err(_) => Err(ProxyError::new(
                ErrorCode::GatewayTimeout,
                Source::Upstream,
                Retry::Safe,
                format!("TLS with {} timed out", self.addr.configured),
            )),
        }
    }

    async fn handshake_upgrade<I>(&self, io: I) -> Result<http1::SendRequest<GwBody>, ProxyError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| handshake_error(&self.addr.configured, e))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    async fn handshake_h2<I>(&self, io: I) -> Result<http2::SendRequest<GwBody>, ProxyError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| handshake_error(&self.addr.configured, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

fn handshake_error(addr: &str, e: hyper::Error) -> ProxyError {
    ProxyError::new(
        ErrorCode::BadGateway,
        Source::Upstream,
        Retry::Safe,
        format!("handshake with {addr} failed: {e}"),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The outcome of [`h1::Conn::send`] on a checked-out connection, failures classified for
/// retry decisions. (Not a wrapping future: every level of nesting copies the future below it
/// into its own state once per request.)
pub fn sent_h1(
    sent: Result<http::Response<h1::RespBody>, h1::SendError>,
    per_try: std::time::Duration,
) -> Result<http::Response<RespStream>, ProxyError> {
    match sent {
        Ok(resp) => Ok(resp.map(RespStream::H1)),
        Err(h1::SendError::NotSent(e)) => Err(ProxyError::new(
            ErrorCode::BadGateway,
            Source::Upstream,
            Retry::Safe,
            format!("upstream connection failed before the request was sent: {e}"),
        )),
        // Written (maybe processed): repeatable for idempotent methods only, as with a
        // keep-alive connection the endpoint closed under us.
        Err(h1::SendError::Failed(msg)) => Err(ProxyError::new(
            ErrorCode::BadGateway,
            Source::Upstream,
            Retry::IfIdempotent,
            format!("upstream request failed: {msg}"),
        )),
        Err(h1::SendError::Body(e)) => Err(request_body_error(&*e)),
        Err(h1::SendError::TimedOut) => Err(crate::forward::timeout_error("per-try", Some(per_try))),
    }
}

/// Sends one request as a stream of a shared HTTP/2 connection.
pub async fn send_h2(
    mut sender: http2::SendRequest<GwBody>,
    req: http::Request<GwBody>,
    reused: bool,
) -> Result<http::Response<RespStream>, ProxyError> {
    match sender.send_request(req).await {
        Ok(r) => Ok(r.map(RespStream::H2)),
        Err(e) => Err(classify(e, reused)),
    }
}

/// A failure reading the client's request body while it streamed upstream.
fn request_body_error(e: &(dyn std::error::Error + 'static)) -> ProxyError {
    if over_limit(e) {
        return ProxyError::new(
            ErrorCode::PayloadTooLarge,
            Source::Downstream,
            Retry::No,
            "request body exceeds the limit",
        );
    }
    ProxyError::new(
        ErrorCode::BadRequest,
        Source::Downstream,
        Retry::No,
        format!("reading the request body failed: {e}"),
    )
}

/// Whether `e` or one of its causes is the body size limit.
fn over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Maps a hyper client error to a proxy error with a retry verdict.
pub fn classify(e: hyper::Error, reused: bool) -> ProxyError {
    use std::error::Error as _;
    let msg = e.to_string();
    // The client's body crossed its size limit while we streamed it: the client's fault.
    if e.source().is_some_and(over_limit) {
        return request_body_error(&e);
    }
    let mut retry = Retry::IfIdempotent;
    if e.is_canceled() {
        // hyper never wrote the request (e.g. the pooled connection closed first).
        retry = Retry::Safe;
    }
    if let Some(h2e) = e.source().and_then(|s| s.downcast_ref::<h2::Error>())
        && (h2e.reason() == Some(h2::Reason::REFUSED_STREAM)
            || (h2e.is_go_away() && h2e.reason() == Some(h2::Reason::NO_ERROR)))
    {
        // RFC 9113 §8.7: a refused stream was not processed; neither were streams cut by a
        // graceful GOAWAY (h2 resets only those above its last stream id). Any other GOAWAY
        // (errors) may have cut a processed stream: idempotent methods only.
        retry = Retry::Safe;
    }
    if reused && e.is_incomplete_message() {
        // A keep-alive connection the server closed while we were reusing it.
        retry = Retry::IfIdempotent;
    }
    let detail = e.source().map(|s| format!(": {s}")).unwrap_or_default();
    ProxyError::new(
        ErrorCode::BadGateway,
        Source::Upstream,
        retry,
        format!("upstream request failed: {msg}{detail}"),
    )
}

/// An upstream response body: read from our HTTP/1.1 connection, or an HTTP/2 stream.
pub enum RespStream {
    H1(h1::RespBody),
    H2(hyper::body::Incoming),
}

impl RespStream {
    /// An HTTP/1.1 endpoint's header fields when they pass through as they came.
    pub fn raw_fields_mut(&mut self) -> Option<&mut crate::raw_head::RawFields> {
        match self {
            RespStream::H1(b) => b.raw_fields_mut(),
            RespStream::H2(_) => None,
        }
    }
}
