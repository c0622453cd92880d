//! Connections to one endpoint: a pool of idle HTTP/1.1 keep-alive connections, or one shared
//! HTTP/2 connection, built on hyper's low-level client connection API.
//!
//! We keep our own pool rather than hyper-util's pooled client: checkout is a mutex pop on a
//! short vector with no per-request key hashing or boxing, and returning a connection happens
//! when the response body ends (see [`PoolReturn`]).

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

use crate::body::GwBody;
use crate::error::{ProxyError, Retry, Source};

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
    H1(http1::SendRequest<GwBody>),
    H2(http2::SendRequest<GwBody>),
}

/// A checked-out connection; `reused` tells whether it carried requests before (a failure on a
/// reused connection before the request was written is safe to retry on a fresh one).
pub struct Conn {
    pub sender: Sender,
    pub reused: bool,
}

/// Connection pool of one endpoint.
pub struct EndpointPool {
    pub addr: EndpointAddr,
    protocol: UpstreamProtocol,
    max_idle: usize,
    idle_timeout: Duration,
    idle: Mutex<Vec<(http1::SendRequest<GwBody>, Instant)>>,
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
                let s = self.connect_h1(connect_timeout, false).await?;
                Ok(Conn { sender: Sender::H1(s), reused: false })
            }
            UpstreamProtocol::Http2 => {
                if let Some(s) = self.shared_h2() {
                    return Ok(Conn { sender: Sender::H2(s), reused: true });
                }
                let s = self.connect_h2(connect_timeout).await?;
                *lock(&self.h2) = Some(s.clone());
                Ok(Conn { sender: Sender::H2(s), reused: false })
            }
        }
    }

    /// A fresh HTTP/1.1 connection that is never pooled, for protocol upgrades (WebSocket).
    pub async fn connect_for_upgrade(
        &self,
        connect_timeout: Duration,
    ) -> Result<http1::SendRequest<GwBody>, ProxyError> {
        self.connect_h1(connect_timeout, true).await
    }

    /// Returns an HTTP/1.1 connection whose response body was read to the end.
    pub fn checkin(&self, s: http1::SendRequest<GwBody>) {
        if s.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if self.max_idle == 0 {
            return;
        }
        if idle.len() >= self.max_idle {
            // Keep the warmest connections: the oldest idle one goes.
            idle.remove(0);
        }
        idle.push((s, Instant::now()));
    }

    /// Idle connections currently pooled (HTTP/1.1).
    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    fn pop_idle(&self, now: Instant) -> Option<http1::SendRequest<GwBody>> {
        let mut idle = lock(&self.idle);
        while let Some((s, since)) = idle.pop() {
            // `send` waits for readiness; a connection whose previous response just ended may
            // not have signalled it yet and is still good.
            if !s.is_closed() && now.saturating_duration_since(since) < self.idle_timeout {
                return Some(s);
            }
        }
        None
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

    async fn connect_h1(
        &self,
        t: Duration,
        upgrades: bool,
    ) -> Result<http1::SendRequest<GwBody>, ProxyError> {
        let tcp = self.tcp(t).await?;
        match &self.opts.tls {
            None => self.handshake_h1(tcp, upgrades).await,
            Some(tls) => self.handshake_h1(self.tls(tcp, tls, t).await?, upgrades).await,
        }
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

    async fn handshake_h1<I>(&self, io: I, upgrades: bool) -> Result<http1::SendRequest<GwBody>, ProxyError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| handshake_error(&self.addr.configured, e))?;
        if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
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

/// Sends one request on a checked-out connection and classifies failures for retry decisions.
/// With `headers_back`, a failed HTTP/1.1 request that was never written gives its headers
/// back (for the next try); hyper's sending path that can do so costs a little more.
pub async fn send(
    conn: &mut Conn,
    req: http::Request<GwBody>,
    headers_back: bool,
) -> Result<http::Response<hyper::body::Incoming>, (ProxyError, Option<http::HeaderMap>)> {
    let reused = conn.reused;
    match &mut conn.sender {
        Sender::H1(s) => {
            if s.ready().await.is_err() {
                let e = ProxyError::new(
                    ErrorCode::BadGateway,
                    Source::Upstream,
                    Retry::Safe,
                    "pooled connection closed before use",
                );
                return Err((e, Some(req.into_parts().0.headers)));
            }
            if !headers_back {
                return s.send_request(req).await.map_err(|e| (classify(e, reused), None));
            }
            // hyper returns a request it never started writing (every "canceled" error).
            s.try_send_request(req).await.map_err(|mut e| {
                let unsent = e.take_message().map(|r| r.into_parts().0.headers);
                (classify(e.into_error(), reused), unsent)
            })
        }
        Sender::H2(s) => s.send_request(req).await.map_err(|e| (classify(e, reused), None)),
    }
}

/// Maps a hyper client error to a proxy error with a retry verdict.
pub fn classify(e: hyper::Error, reused: bool) -> ProxyError {
    use std::error::Error as _;
    let msg = e.to_string();
    // The client's body crossed its size limit while we streamed it: the client's fault.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ProxyError::new(
                ErrorCode::PayloadTooLarge,
                Source::Downstream,
                Retry::No,
                "request body exceeds the limit",
            );
        }
        cause = c.source();
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

/// What a response body gives back when it ends: the HTTP/1.1 connection, to its pool.
pub struct PoolReturn {
    pub sender: http1::SendRequest<GwBody>,
    pub pool: Arc<EndpointPool>,
}
