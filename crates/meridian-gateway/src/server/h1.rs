//! Our own HTTP/1.1 server connection, for the requests that make up nearly all traffic.
//!
//! hyper's server connection reads into an 8 KiB buffer per connection, builds each request
//! through its dispatcher and arms a header-read timer per request; on a plain keep-alive GET
//! that was about a third of the gateway's instructions (docs/benchmarks.md, issue 6). This
//! loop parses the head with httparse straight from the connection's buffer (header values
//! share its bytes), calls the proxy, and writes the response head with the first piece of the
//! body in one write. Between requests an idle TCP connection keeps no buffers.
//!
//! Anything else goes to hyper, with the bytes read so far in front ([`Served::HandOver`]):
//! HTTP/2 (the h2c preface), upgrades (WebSocket) and CONNECT, `Expect`, chunked request bodies
//! and bodies over [`INLINE_BODY`] bytes, request heads over the listener's limits (431) and
//! heads that do not parse (400). Those answers stay exactly hyper's.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use meridian_core::Shutdown;
use meridian_model::ListenerLimits;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::listener::{ConnShared, ListenerKind};
use crate::ascii;
use crate::body::GwBody;
use crate::raw_head::RawFields;
use crate::wire::{self, Io, LazyTimer, Special};

/// Largest request body read whole before the request goes to the proxy (with a
/// `Content-Length`); larger bodies are streamed by hyper.
pub const INLINE_BODY: u64 = 64 * 1024;
/// Most header fields parsed here; more (when the listener allows more) go to hyper.
const MAX_FIELDS: usize = 128;
/// Read space offered for a request head (grows for larger heads and bodies).
const HEAD_SPACE: usize = 1024;
/// Time a request body read here may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a connection left this loop.
pub enum Served<T> {
    /// Closed (or to be closed).
    Closed,
    /// For hyper to serve from here on: the bytes read and not yet used, and the transport.
    HandOver(Bytes, Io<T>),
}

/// What the loop needs to know about a request besides its head, read while parsing it.
#[derive(Clone, Copy)]
struct Meta {
    /// The `Content-Length` of a body read here (0: none).
    body_len: u64,
    /// The client wants the connection kept after this request (RFC 9112 §9.3).
    keep_alive: bool,
    /// The client accepts trailers (`TE: trailers`, RFC 9110 §6.5.1).
    te_trailers: bool,
}

/// A request head parsed from the buffer, or why the request is not served here. (Returned
/// once per request and matched right away: boxing the head would cost an allocation.)
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Request(Request<()>, Meta),
    Incomplete,
    HandOver,
}

/// Serves requests on `io` until the client closes, a timeout, shutdown, or a request this
/// loop leaves to hyper.
pub(super) async fn serve<T>(
    mut io: Io<T>,
    shared: &ConnShared,
    limits: &ListenerLimits,
    shutdown: &Shutdown,
) -> Served<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::new();
    // A request head must arrive within this of the previous response (or the connection's
    // start): hyper's header-read timeout, which also bounds idle keep-alive. One timer per
    // connection, moved only when it fires early (not once per request).
    let head_time = limits.header_read_timeout.get().min(limits.idle_timeout.get());
    let mut timer = LazyTimer::default();
    let stopping = shutdown.stopping_owned();
    tokio::pin!(stopping);
    let max_fields = limits.max_header_count.min(MAX_FIELDS);
    // A client that takes no response bytes for this long is gone (nginx's `send_timeout`).
    let send_stall = limits.idle_timeout.get();
    loop {
        let started = Instant::now();
        let (head, meta) = loop {
            if !rbuf.is_empty() {
                match parse(&mut rbuf, max_fields, limits) {
                    Parsed::Request(r, m) => {
                        // The rest of the buffer serves the next connection with bytes to
                        // read while this request runs (the head keeps only its own bytes).
                        if rbuf.is_empty() {
                            wire::release_read_buf(&mut rbuf);
                        }
                        break (r, m);
                    }
                    Parsed::HandOver => return Served::HandOver(rbuf.freeze(), io),
                    Parsed::Incomplete if rbuf.len() >= limits.max_header_bytes => {
                        return Served::HandOver(rbuf.freeze(), io);
                    }
                    Parsed::Incomplete => {}
                }
            } else {
                // Between requests: keep no buffers while waiting (the read makes room again
                // once bytes arrive, from the buffers waiting connections gave up).
                wire::release_read_buf(&mut rbuf);
            }
            tokio::select! {
                biased;
                r = poll_fn(|cx| io.poll_read_into(cx, &mut rbuf, HEAD_SPACE)) => match r {
                    Ok(0) | Err(_) => return Served::Closed,
                    Ok(_) => {}
                },
                () = poll_fn(|cx| timer.poll_expired(cx, started + head_time)) => {
                    tracing::debug!(peer = %shared.info.peer, "no request head in time; closing");
                    return Served::Closed;
                }
                () = stopping.as_mut(), if rbuf.is_empty() => return Served::Closed,
            }
        };
        // The request's work (reading a body that follows the head, the proxy, writing the
        // response) lives in one allocation while it runs, as nginx's request pool does:
        // inline, its futures and the request head would size the connection's task, idle or
        // not.
        let written = super::boxed_in_place(|| async {
            let (parts, ()) = head.into_parts();
            let body = if meta.body_len == 0 {
                GwBody::Empty
            } else {
                GwBody::full(read_body(&mut io, &mut rbuf, meta.body_len).await?)
            };
            let request = RequestSide {
                method_head: parts.method == Method::HEAD,
                http10: parts.version == Version::HTTP_10,
                te_trailers: meta.te_trailers,
            };
            let req = Request::from_parts(parts, body);
            let resp = match shared.kind {
                ListenerKind::Public => shared.proxy.handle(req, &shared.info).await,
                ListenerKind::Peer => shared.proxy.handle_peer(req, &shared.info).await,
            };
            let keep_alive = meta.keep_alive && !shutdown.is_stopping();
            write_response(&mut io, resp, request, keep_alive, send_stall).await
        })
        .await;
        match written {
            Ok(true) => {}
            Ok(false) => {
                let _ = io.shutdown().await;
                return Served::Closed;
            }
            Err(e) => {
                tracing::debug!(peer = %shared.info.peer, error = %e, "closing the connection");
                return Served::Closed;
            }
        }
    }
}

/// Parses the request head at the front of `rbuf`, and takes it from the buffer when this
/// loop serves the request. Returns the head and the body length (a `Content-Length`).
fn parse(rbuf: &mut BytesMut, max_fields: usize, limits: &ListenerLimits) -> Parsed {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        rbuf,
        &mut fields[..max_fields],
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        // Not HTTP/1.x (the HTTP/2 preface), too many fields, malformed: hyper answers.
        Err(_) => return Parsed::HandOver,
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::HandOver;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Parsed::HandOver };
    if method == Method::CONNECT {
        return Parsed::HandOver;
    }
    // Offsets into the head, so the URI and values can share its bytes once it is split off.
    let base = rbuf.as_ptr() as usize;
    let path_at = path.as_ptr() as usize - base;
    let path_range = path_at..path_at + path.len();
    let n = req.headers.len();
    let (mut inline, mut heap) = ([(0, 0, 0, 0); wire::INLINE_SPANS], Vec::new());
    let spans = wire::field_spans(base, req.headers, &mut inline, &mut heap);
    let mut body_len: Option<u64> = None;
    let (mut connection, mut te) = (false, false);
    for h in req.headers.iter() {
        match wire::special_field(h.name.as_bytes()) {
            // Cases hyper serves: upgrades, `Expect`, chunked or large bodies, odd lengths.
            Some(Special::Upgrade | Special::Expect | Special::TransferEncoding) => return Parsed::HandOver,
            Some(Special::ContentLength) => {
                let Some(v) = wire::content_length(h.value) else {
                    return Parsed::HandOver;
                };
                if body_len.is_some_and(|b| b != v) || v > INLINE_BODY.min(limits.max_body_bytes) {
                    return Parsed::HandOver;
                }
                body_len = Some(v);
            }
            Some(Special::Connection) => connection = true,
            Some(Special::Te) => te = true,
            None => {}
        }
    }
    let fields = |name: &'static str| {
        req.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    };
    let meta = Meta {
        body_len: body_len.unwrap_or(0),
        keep_alive: if connection { wants_keep_alive(fields("connection"), minor == 0) } else { minor != 0 },
        te_trailers: te && fields("te").any(|v| wire::has_token(v, b"trailers")),
    };
    let head = rbuf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_range)) else { return Parsed::HandOver };
    // The proxy's own fields travel beside the map (`forwarded::HopFields`): room for the
    // client's and two more (a request policy's, a Host from an absolute-form target) without
    // growing the map.
    let mut map = HeaderMap::with_capacity(n + 2);
    for &(ns, ne, vs, ve) in &spans[..n] {
        let Ok(name) = HeaderName::from_bytes(&head[ns as usize..ne as usize]) else {
            return Parsed::HandOver;
        };
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize)) else {
            return Parsed::HandOver;
        };
        map.append(name, value);
    }
    let mut r = Request::new(());
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    *r.headers_mut() = map;
    Parsed::Request(r, meta)
}

/// Whether the client wants the connection kept after this request (RFC 9112 §9.3), from its
/// `Connection` field values.
fn wants_keep_alive<'a>(connection: impl IntoIterator<Item = &'a [u8]>, http10: bool) -> bool {
    let mut keep = !http10;
    for v in connection {
        if wire::has_token(v, b"close") {
            return false;
        }
        keep |= wire::has_token(v, b"keep-alive");
    }
    keep
}

/// Reads a body of `len` bytes (at most [`INLINE_BODY`]) that follows the head, within
/// [`BODY_TIMEOUT`].
async fn read_body<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<T>,
    rbuf: &mut BytesMut,
    len: u64,
) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let read = async {
        while rbuf.len() < len {
            let want = len - rbuf.len();
            if poll_fn(|cx| io.poll_read_into(cx, rbuf, want.max(HEAD_SPACE))).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the request body ended early"));
            }
        }
        Ok(rbuf.split_to(len).freeze())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the request body did not arrive in time")),
    }
}

/// How the response body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304): the header fields go as they are.
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 client, length unknown: the body ends with the connection.
    Close,
}

/// What the response's framing depends on in the request.
#[derive(Clone, Copy)]
struct RequestSide {
    method_head: bool,
    http10: bool,
    /// The client accepts trailers (`TE: trailers`).
    te_trailers: bool,
}

/// Writes the response; returns whether the connection stays open.
async fn write_response<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<T>,
    resp: Response<GwBody>,
    request: RequestSide,
    mut keep_alive: bool,
    stall: Duration,
) -> io::Result<bool> {
    let RequestSide { method_head, http10, te_trailers } = request;
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let headers = &parts.headers;
    // An endpoint's fields passed through as they came (`raw_head`), before the map's; taken
    // from the body so the head's bytes go once it is written, not when the body ends.
    let taken = body.take_raw_fields();
    let raw = taken.as_deref();
    let no_body = method_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else if let Some(n) =
        crate::forward::content_length(headers).or_else(|| raw.and_then(RawFields::content_length))
    {
        // A streamed body whose length was announced (an upstream's Content-Length).
        Framing::Length(n)
    } else if http10 {
        keep_alive = false;
        Framing::Close
    } else {
        Framing::Chunked
    };
    if headers.get_all(CONNECTION).iter().any(|v| wire::has_token(v.as_bytes(), b"close")) {
        keep_alive = false;
    }
    let mut wbuf = HeadBuf::take();
    encode_head(&mut wbuf.0, status, headers, raw, framing, http10, keep_alive);
    drop(parts);
    drop(taken);

    // The first piece of the body goes with the head when it is ready now.
    let mut sent: u64 = 0;
    let mut first: Option<Bytes> = None;
    let mut trailers: Option<HeaderMap> = None;
    let mut ended = framing == Framing::None || body.is_end_stream();
    if !ended {
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        match polled {
            Poll::Ready(Some(Ok(f))) => match f.into_data() {
                Ok(d) => first = Some(d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Poll::Ready(Some(Err(e))) => return Err(io::Error::other(e)),
            Poll::Ready(None) => ended = true,
            Poll::Pending => {}
        }
        // Trailers that came first are written with the last chunk, below.
        ended |= body.is_end_stream() && trailers.is_none();
    }
    let data = first.unwrap_or_default();
    sent += data.len() as u64;
    if let Framing::Length(n) = framing
        && sent > n
    {
        return Err(io::Error::other("response body longer than its length"));
    }
    let mut size_line = Vec::new();
    if framing == Framing::Chunked && !data.is_empty() {
        chunk_size_line(&mut size_line, data.len());
    }
    let chunk_end: &[u8] = match (framing, data.is_empty(), ended) {
        (Framing::Chunked, false, true) => b"\r\n0\r\n\r\n",
        (Framing::Chunked, false, false) => b"\r\n",
        (Framing::Chunked, true, true) => b"0\r\n\r\n",
        _ => b"",
    };
    let mut p: [&[u8]; 4] = [&wbuf.0, &size_line, &data, chunk_end];
    send(io, &mut p, stall).await?;
    drop(wbuf);
    if !ended {
        loop {
            let frame = match body.frame().await {
                None => break,
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(f)) => f,
            };
            let data = match frame.into_data() {
                Ok(d) => d,
                Err(f) => {
                    trailers = f.into_trailers().ok();
                    continue;
                }
            };
            if data.is_empty() {
                continue;
            }
            sent += data.len() as u64;
            if let Framing::Length(n) = framing
                && sent > n
            {
                return Err(io::Error::other("response body longer than its length"));
            }
            size_line.clear();
            let end: &[u8] = if framing == Framing::Chunked {
                chunk_size_line(&mut size_line, data.len());
                b"\r\n"
            } else {
                b""
            };
            let mut p: [&[u8]; 3] = [&size_line, &data, end];
            send(io, &mut p, stall).await?;
        }
        if framing == Framing::Chunked {
            size_line.clear();
            size_line.extend_from_slice(b"0\r\n");
            if te_trailers && let Some(t) = &trailers {
                for (name, value) in t {
                    wire::put_field(&mut size_line, name, value);
                }
            }
            size_line.extend_from_slice(b"\r\n");
            let mut p: [&[u8]; 1] = [&size_line];
            send(io, &mut p, stall).await?;
        }
    }
    if let Framing::Length(n) = framing
        && sent != n
    {
        return Err(io::Error::other("response body shorter than its length"));
    }
    Ok(keep_alive && framing != Framing::Close)
}

/// The buffer a response head is written into, lent by the thread: the connections of a
/// worker take turns with one buffer (a head is usually on the wire by the time the next one
/// is written; one that has to wait keeps its own), so a head costs no allocation and a
/// connection waiting for its next request holds none.
struct HeadBuf(Vec<u8>);

thread_local! {
    static SPARE_HEAD_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest head buffer kept for the next response.
const SPARE_HEAD_BUF_BYTES: usize = 16 * 1024;

impl HeadBuf {
    fn take() -> HeadBuf {
        HeadBuf(SPARE_HEAD_BUF.try_with(Cell::take).unwrap_or_default())
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        if self.0.capacity() <= SPARE_HEAD_BUF_BYTES {
            let mut buf = std::mem::take(&mut self.0);
            buf.clear();
            // (Thread-local storage is gone only while the thread exits.)
            let _ = SPARE_HEAD_BUF.try_with(|c| c.set(buf));
        }
    }
}

/// Writes `parts` whole. Fails with `TimedOut` when the client takes no bytes for `stall`. The
/// timer exists only once a write has to wait: a socket that takes the bytes at once costs none.
async fn send<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<T>,
    parts: &mut [&[u8]],
    stall: Duration,
) -> io::Result<()> {
    let mut written = 0;
    if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(io.poll_write_parts(cx, parts, &mut written))).await {
        return r;
    }
    let timer = tokio::time::sleep(stall);
    tokio::pin!(timer);
    let mut progress = written;
    loop {
        tokio::select! {
            biased;
            r = poll_fn(|cx| io.poll_write_parts(cx, parts, &mut written)) => return r,
            () = timer.as_mut() => {
                if written == progress {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the client took no response bytes in time"));
                }
                progress = written;
                timer.as_mut().reset(tokio::time::Instant::now() + stall);
            }
        }
    }
}

fn chunk_size_line(buf: &mut Vec<u8>, len: usize) {
    buf.extend_from_slice(ascii::hex(len as u64).as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// The status line and header fields; the framing fields are ours (except for bodiless
/// responses, whose fields go as they are), and a `Date` is added when missing.
fn encode_head(
    buf: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    raw: Option<&RawFields>,
    framing: Framing,
    http10: bool,
    keep_alive: bool,
) {
    // One allocation for a typical head (the buffer is dropped while the connection idles).
    buf.reserve(256 + 32 * headers.len() + raw.map_or(0, RawFields::size));
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    buf.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let mut length_written = false;
    if let Some(raw) = raw {
        // The endpoint's `Content-Length` goes on where it is the framing (or, for bodiless
        // responses, the length announced); never a `Transfer-Encoding`.
        let keep_length = match framing {
            Framing::None => true,
            Framing::Length(n) => raw.content_length() == Some(n),
            Framing::Chunked | Framing::Close => false,
        };
        raw.write(buf, keep_length);
        length_written = keep_length && raw.content_length().is_some();
        has_date = raw.has_date();
    }
    let mut has_connection = false;
    for (name, value) in headers {
        if framing != Framing::None && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING) {
            continue;
        }
        has_date |= name == DATE;
        has_connection |= name == CONNECTION;
        wire::put_field(buf, name, value);
    }
    if let Some(raw) = raw {
        raw.write_own(buf);
    }
    match framing {
        Framing::Length(_) if length_written => {}
        Framing::Length(n) => {
            buf.extend_from_slice(b"content-length: ");
            ascii::push_decimal(buf, n);
            buf.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    if !has_connection {
        if !keep_alive && !http10 {
            buf.extend_from_slice(b"connection: close\r\n");
        } else if keep_alive && http10 {
            buf.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    if !has_date {
        buf.extend_from_slice(b"date: ");
        buf.extend_from_slice(&http_date());
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// The current time as an HTTP date, formatted once per second per thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut out = [0u8; 29];
        let s = httpdate::fmt_http_date(now);
        let n = s.len().min(29);
        out[..n].copy_from_slice(&s.as_bytes()[..n]);
        c.set((secs, out));
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ListenerLimits {
        ListenerLimits::default()
    }

    fn parse_str(s: &str) -> Parsed {
        let mut b = BytesMut::from(s);
        parse(&mut b, 100, &limits())
    }

    #[test]
    fn plain_requests_are_parsed_here() {
        let mut b = BytesMut::from("GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nGET /next");
        let Parsed::Request(r, Meta { body_len: n, .. }) = parse(&mut b, 100, &limits()) else {
            panic!("not parsed")
        };
        assert_eq!((r.method(), r.uri().path(), r.uri().query(), n), (&Method::GET, "/a", Some("b=c"), 0));
        assert_eq!(r.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(&b[..], b"GET /next", "the next request stays in the buffer");
        let Parsed::Request(r, Meta { body_len: n, .. }) =
            parse_str("POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
        else {
            panic!("not parsed")
        };
        assert_eq!((r.version(), n), (Version::HTTP_10, 5));
        assert!(matches!(parse_str("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Incomplete));
    }

    #[test]
    fn unusual_requests_go_to_hyper() {
        for s in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GET / HTTP/9.9\r\n\r\n",
        ] {
            assert!(matches!(parse_str(s), Parsed::HandOver), "{s:?}");
        }
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(matches!(parse_str(&format!("GET / HTTP/1.1\r\n{many}\r\n")), Parsed::HandOver));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        let h = |v: &'static str| [v.as_bytes()];
        let none: [&[u8]; 0] = [];
        assert!(wants_keep_alive(none, false));
        assert!(!wants_keep_alive(none, true));
        assert!(!wants_keep_alive(h("close"), false));
        assert!(wants_keep_alive(h("Keep-Alive"), true));
        assert!(!wants_keep_alive(h("keep-alive, close"), false));
    }

    #[test]
    fn response_heads_carry_our_framing_and_a_date() {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("99"));
        h.insert("x-a", HeaderValue::from_static("1"));
        let mut buf = Vec::new();
        encode_head(&mut buf, StatusCode::OK, &h, None, Framing::Length(5), false, true);
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\ndate: "), "{text}");
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        buf.clear();
        encode_head(&mut buf, StatusCode::OK, &h, None, Framing::None, false, false);
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("content-length: 99\r\n"), "HEAD keeps the announced length: {text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        let mut line = Vec::new();
        chunk_size_line(&mut line, 0x1f4);
        assert_eq!(line, b"1f4\r\n");
    }
}
