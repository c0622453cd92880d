//! Our own HTTP/1.1 client connection to an endpoint.
//!
//! hyper's client connection runs in a task of its own and talks to the request through
//! channels; on a keep-alive GET that machinery cost about as much as everything the gateway
//! does itself (docs/benchmarks.md, issue 6). Here the request's own task writes the request
//! and reads the response head, and the response body reads straight from the socket while
//! the client connection writes it out. When the body ends cleanly on a keep-alive connection,
//! the connection goes back to its pool.
//!
//! What it implements (RFC 9112): origin-form requests, `Content-Length` or chunked request
//! bodies (or none), interim 1xx responses skipped, response framing by §6.3 (no body for HEAD,
//! 1xx, 204 and 304; chunked wins over `Content-Length`; else `Content-Length`; else the body
//! runs to the close), chunk extensions ignored, trailers passed on, keep-alive unless the
//! response says `close` or is HTTP/1.0 without `keep-alive`. An endpoint that answers before
//! it has read the whole request body gets its answer passed on, and the connection is closed.
//!
//! Idle pooled connections have no task watching them. A pooled connection that became
//! readable (the endpoint closed it, or sent something unasked) is dropped at checkout; one
//! with no readiness since its last response is known to be quiet without a system call
//! ([`crate::wire::Io`]).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use super::pool::EndpointPool;
use crate::body::{BoxError, GwBody};
use crate::forwarded::HopFields;
use crate::raw_head::RawFields;
use crate::wire::{self, LazyTimer, Special};

/// Largest response head accepted (Envoy's default limit is 60 KiB, nginx's 4–8 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in a response head (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) and most trailer bytes accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Read space offered to the kernel at least.
const READ_SPACE: usize = 8 * 1024;

/// The transport under a client connection.
pub type Io = crate::wire::Io<tokio_rustls::client::TlsStream<TcpStream>>;

/// One HTTP/1.1 connection, idle between requests. Always boxed ([`Conn::new`]): it moves
/// from the pool into the request's work and on into the response body, and a pointer moves
/// for free where its 104 bytes made every response a memcpy larger at each step.
pub struct Conn {
    io: Io,
    /// Bytes read and not yet used.
    rbuf: BytesMut,
    /// The request head being written (kept for its capacity).
    wbuf: Vec<u8>,
    /// The try timer, kept armed across requests: a tokio timer per try would cost a
    /// timer-wheel insertion and removal on every request. A firing while the connection
    /// sits in the pool wakes its last user once, for nothing.
    timer: LazyTimer,
}

/// Why a request failed, as far as retry decisions need to know.
#[derive(Debug)]
pub enum SendError {
    /// Not one byte of the request reached the transport: safe to send anywhere else.
    NotSent(io::Error),
    /// No response head before the try's deadline.
    TimedOut,
    /// The request (or part of it) went out and no usable response came back.
    Failed(String),
    /// Reading the client's request body failed; the cause is kept for classification.
    Body(BoxError),
}

/// How the request body is framed on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReqFraming {
    None,
    Length(u64),
    Chunked,
}

impl Conn {
    pub fn new(io: Io) -> Box<Conn> {
        Box::new(Conn { io, rbuf: BytesMut::new(), wbuf: Vec::new(), timer: LazyTimer::default() })
    }

    /// Whether a pooled connection can carry a request: nothing has arrived on it since its
    /// last response.
    pub fn is_quiet(&mut self) -> bool {
        self.rbuf.is_empty() && self.io.is_quiet()
    }

    /// Sends a request and reads the response head. The response body owns the connection
    /// and gives it back to `pool` when it ends cleanly. The head is borrowed: it is only
    /// copied onto the wire, and stays with the caller for a later try (even when this future
    /// is dropped by a timeout).
    ///
    /// Without a response head by `deadline`, the try fails with [`SendError::TimedOut`] and
    /// the connection is closed.
    pub async fn send(
        mut self: Box<Self>,
        head: &RequestHead<'_>,
        body: GwBody,
        pool: &Arc<EndpointPool>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<RespBody>, SendError> {
        let mut timer = std::mem::take(&mut self.timer);
        let answer = {
            let exchange = std::pin::pin!(self.exchange(head, body));
            let mut exchange = exchange;
            poll_fn(|cx| match exchange.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending => timer.poll_expired(cx, deadline).map(|()| Err(SendError::TimedOut)),
            })
            .await
        };
        let Head { resp, framing, keep_alive, raw } = answer?;
        self.timer = timer;
        Ok(resp.map(|()| RespBody::new(self, framing, keep_alive, raw, pool)))
    }

    /// Writes the request and reads the final response head.
    async fn exchange(&mut self, head: &RequestHead<'_>, mut body: GwBody) -> Result<Head, SendError> {
        let head_only = head.method == Method::HEAD;
        let framing = framing(head, &body);
        encode_head(&mut self.wbuf, head, framing);
        let mut written = 0usize;
        // The head, with a body held in memory in the same write.
        let full = match &mut body {
            GwBody::Empty => Some(Bytes::new()),
            GwBody::Full(b) => Some(b.take().unwrap_or_default()),
            _ => None,
        };
        let mut complete = true;
        let wire = std::mem::take(&mut self.wbuf);
        let r = {
            let b = full.as_deref().unwrap_or_default();
            let mut p: [&[u8]; 2] = [&wire, b];
            poll_fn(|cx| self.io.poll_write_parts(cx, &mut p, &mut written)).await
        };
        self.wbuf = wire;
        if let Err(e) = r {
            return Err(if written == 0 {
                SendError::NotSent(e)
            } else {
                SendError::Failed(format!("writing the request failed: {e}"))
            });
        }
        if full.is_none() {
            complete = self.send_body(&mut body, framing).await?;
        }
        drop(body);
        let mut answer = self.read_head(head_only, head.pass_through).await.map_err(SendError::Failed)?;
        answer.keep_alive &= complete;
        Ok(answer)
    }

    /// Streams a request body. Returns whether it was written whole: an endpoint may answer
    /// early (before reading it all); then sending stops and the answer is read.
    async fn send_body(&mut self, body: &mut GwBody, framing: ReqFraming) -> Result<bool, SendError> {
        let mut sent: u64 = 0;
        let mut pending: Option<(Vec<u8>, Bytes, &'static [u8])> = None;
        let mut finished = false;
        poll_fn(|cx| {
            loop {
                if let Some((size, data, end)) = &mut pending {
                    let mut p: [&[u8]; 3] = [size.as_slice(), data.as_ref(), end];
                    let mut w = 0;
                    let r = self.io.poll_write_parts(cx, &mut p, &mut w);
                    // Keep what is left for the next poll.
                    let left_size = p[0].len();
                    let left_data = p[1].len();
                    let left_end = p[2].len();
                    let sz_len = size.len();
                    size.drain(..sz_len - left_size);
                    data.advance(data.len() - left_data);
                    *end = &end[end.len() - left_end..];
                    match r {
                        Poll::Ready(Ok(())) => pending = None,
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(SendError::Failed(format!(
                                "writing the request body failed: {e}"
                            ))));
                        }
                        Poll::Pending => return self.poll_early_answer(cx),
                    }
                    if finished {
                        return Poll::Ready(Ok(true));
                    }
                    continue;
                }
                if finished {
                    return Poll::Ready(Ok(true));
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => return self.poll_early_answer(cx),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendError::Body(e))),
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else { continue };
                        if data.is_empty() {
                            continue;
                        }
                        sent += data.len() as u64;
                        if let ReqFraming::Length(n) = framing
                            && sent > n
                        {
                            return Poll::Ready(Err(SendError::Body(
                                "request body longer than its length".into(),
                            )));
                        }
                        let (size, end) = chunk_frame(framing, data.len());
                        pending = Some((size, data, end));
                    }
                    Poll::Ready(None) => {
                        if let ReqFraming::Length(n) = framing
                            && sent != n
                        {
                            return Poll::Ready(Err(SendError::Body(
                                "request body shorter than its length".into(),
                            )));
                        }
                        finished = true;
                        if framing == ReqFraming::Chunked {
                            pending = Some((Vec::new(), Bytes::from_static(b"0\r\n\r\n"), b""));
                        }
                    }
                }
            }
        })
        .await
    }

    /// While the request body waits, the endpoint may answer already: then stop sending.
    fn poll_early_answer(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, SendError>> {
        loop {
            match self.io.poll_read_into(cx, &mut self.rbuf, READ_SPACE) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(SendError::Failed(
                        "the endpoint closed the connection during the request".into(),
                    )));
                }
                Poll::Ready(Ok(_)) => {
                    // Interim responses (`100 Continue`) are dropped and do not stop the body; a
                    // final one does, and stays in the buffer for `read_head`.
                    loop {
                        // `HTTP/1.x NNN`: the status code's first digit is byte 9.
                        if self.rbuf.len() < 10 {
                            break;
                        }
                        if self.rbuf[9] != b'1' {
                            return Poll::Ready(Ok(false));
                        }
                        match parse_head(&mut self.rbuf, false, None) {
                            Ok(Some(Parsed::Interim)) if self.rbuf.is_empty() => break,
                            Ok(Some(Parsed::Interim)) => {}
                            Ok(None) if self.rbuf.len() < MAX_HEAD_BYTES => break,
                            // Malformed, too large, or an unasked 101: `read_head` says so.
                            _ => return Poll::Ready(Ok(false)),
                        }
                    }
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(SendError::Failed(format!("reading the response failed: {e}"))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads the final response head (skipping 1xx).
    async fn read_head(
        &mut self,
        head_only: bool,
        pass_through: Option<&[HeaderName]>,
    ) -> Result<Head, String> {
        loop {
            if !self.rbuf.is_empty() {
                match parse_head(&mut self.rbuf, head_only, pass_through)? {
                    Some(Parsed::Interim) => continue,
                    Some(Parsed::Final(r)) => return Ok(r),
                    None if self.rbuf.len() >= MAX_HEAD_BYTES => {
                        return Err(format!("response head larger than {MAX_HEAD_BYTES} bytes"));
                    }
                    None => {}
                }
            }
            let n = poll_fn(|cx| self.io.poll_read_into(cx, &mut self.rbuf, READ_SPACE))
                .await
                .map_err(|e| format!("reading the response failed: {e}"))?;
            if n == 0 {
                return Err(if self.rbuf.is_empty() {
                    "the endpoint closed the connection without answering".to_string()
                } else {
                    "the endpoint closed the connection within the response head".to_string()
                });
            }
        }
    }
}

/// What goes on the request line and in the header fields.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// Origin-form: the path and query of this URI.
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The response's fields may be passed on as they come ([`crate::raw_head`]), less these
    /// names: nothing in the gateway reads them.
    pub pass_through: Option<&'a [HeaderName]>,
    /// Fields this hop adds, written after `headers`.
    pub hop: Option<&'a HopFields>,
}

/// The request body's framing: none for an empty body (a zero length where a body is
/// expected), its length when known, else chunked.
fn framing(head: &RequestHead<'_>, body: &GwBody) -> ReqFraming {
    if body.is_end_stream() {
        let expects_body = matches!(*head.method, Method::POST | Method::PUT | Method::PATCH)
            || head.headers.contains_key(CONTENT_LENGTH);
        return if expects_body { ReqFraming::Length(0) } else { ReqFraming::None };
    }
    match body.size_hint().exact() {
        Some(n) => ReqFraming::Length(n),
        None => ReqFraming::Chunked,
    }
}

/// The chunk-size line and the chunk's end for `len` bytes of data (nothing when not chunked).
fn chunk_frame(framing: ReqFraming, len: usize) -> (Vec<u8>, &'static [u8]) {
    if framing != ReqFraming::Chunked || len == 0 {
        return (Vec::new(), b"");
    }
    let mut v = Vec::with_capacity(18);
    v.extend_from_slice(crate::ascii::hex(len as u64).as_bytes());
    v.extend_from_slice(b"\r\n");
    (v, b"\r\n")
}

/// Writes the request line and header fields; the framing header is ours, whatever the
/// client sent.
fn encode_head(buf: &mut Vec<u8>, head: &RequestHead<'_>, framing: ReqFraming) {
    buf.clear();
    buf.extend_from_slice(head.method.as_str().as_bytes());
    buf.push(b' ');
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    buf.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in head.headers {
        // The framing is ours; and the gateway has answered any `Expect` itself (it sends the
        // body whatever the endpoint says), so the endpoint must not wait for a go-ahead.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == EXPECT {
            continue;
        }
        wire::put_field(buf, name, value);
    }
    if let Some(hop) = head.hop {
        hop.write(buf);
    }
    match framing {
        ReqFraming::None => {}
        ReqFraming::Length(n) => {
            buf.extend_from_slice(b"content-length: ");
            crate::ascii::push_decimal(buf, n);
            buf.extend_from_slice(b"\r\n");
        }
        ReqFraming::Chunked => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes left.
    Length(u64),
    Chunked(ChunkState),
    /// Until the endpoint closes the connection.
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
}

enum Parsed {
    /// A 1xx response other than 101: skipped.
    Interim,
    Final(Head),
}

/// A final response head as read.
struct Head {
    /// The response without its body (its fields in the map unless passed through).
    resp: Response<()>,
    framing: Framing,
    /// The connection may be kept after the body.
    keep_alive: bool,
    /// The endpoint's fields, passed through as they came.
    raw: Option<Box<RawFields>>,
}

/// Parses a response head at the front of `rbuf` (which it then drops). `None`: incomplete.
/// With `pass_through`, the fields are kept as they came ([`RawFields`]) where possible, less
/// the names it lists.
fn parse_head(
    rbuf: &mut BytesMut,
    head_only: bool,
    pass_through: Option<&[HeaderName]>,
) -> Result<Option<Parsed>, String> {
    // Uninitialised slots: nothing to fill per response.
    let mut fields = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut r, rbuf, &mut fields)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("invalid response head: {e}")),
        };
    let code = r.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status code {code}"))?;
    let http10 = r.version == Some(0);
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err("the endpoint switched protocols unasked".into());
        }
        rbuf.advance(len);
        return Ok(Some(Parsed::Interim));
    }
    // Offsets of names and values in the head, so values can share the head's bytes; the
    // framing fields are read on the way.
    let base = rbuf.as_ptr() as usize;
    let n = r.headers.len();
    let (mut inline, mut heap) = ([(0, 0, 0, 0); wire::INLINE_SPANS], Vec::new());
    let spans = wire::field_spans(base, r.headers, &mut inline, &mut heap);
    let mut chunked = false;
    let mut te = false;
    let mut length: Option<u64> = None;
    let mut close = http10;
    for h in r.headers.iter() {
        let special = wire::special_field(h.name.as_bytes());
        if special == Some(Special::TransferEncoding) {
            te = true;
            // The last coding decides (RFC 9112 §6.3).
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if special == Some(Special::ContentLength) {
            let v = crate::wire::content_length(h.value)
                .ok_or_else(|| "invalid Content-Length in the response".to_string())?;
            if length.is_some_and(|l| l != v) {
                return Err("conflicting Content-Length values in the response".into());
            }
            length = Some(v);
        } else if special == Some(Special::Connection) {
            if wire::has_token(h.value, b"close") {
                close = true;
            } else if http10 && wire::has_token(h.value, b"keep-alive") {
                close = false;
            }
        }
    }
    let head = rbuf.split_to(len).freeze();
    let mut resp = Response::new(());
    let raw = pass_through.and_then(|drop| RawFields::new(&head, &spans[..n], length.filter(|_| !te), drop));
    if raw.is_none() {
        // Room for the fields the gateway adds (Via, the request id, the serving region).
        let mut map = HeaderMap::with_capacity(n + 4);
        for &(ns, ne, vs, ve) in &spans[..n] {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
                .map_err(|_| "invalid header name in the response".to_string())?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| format!("invalid value of {name} in the response"))?;
            map.append(name, value);
        }
        // A response with both framings might be smuggling: chunked is used and no length
        // passed on (RFC 9112 §6.3: the client would read a body of the wrong size).
        if te && length.is_some() {
            map.remove(CONTENT_LENGTH);
        }
        *resp.headers_mut() = map;
    }
    let framing = if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Done
    } else if te {
        if chunked { Framing::Chunked(ChunkState::Size) } else { Framing::Close }
    } else if let Some(l) = length {
        if l == 0 { Framing::Done } else { Framing::Length(l) }
    } else {
        Framing::Close
    };
    // Both framings (chunked wins, above): the connection is not reused.
    if te && length.is_some() {
        close = true;
    }
    *resp.status_mut() = status;
    *resp.version_mut() = if http10 { Version::HTTP_10 } else { Version::HTTP_11 };
    let keep = !close && framing != Framing::Close;
    Ok(Some(Parsed::Final(Head { resp, framing, keep_alive: keep, raw })))
}

/// A response body read from the connection; gives the connection back to the pool when it
/// ends on a keep-alive connection.
pub struct RespBody {
    conn: Option<Box<Conn>>,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<EndpointPool>,
    /// The endpoint's header fields, passed through as they came ([`crate::raw_head`]).
    raw: Option<Box<RawFields>>,
}

impl RespBody {
    fn new(
        conn: Box<Conn>,
        framing: Framing,
        keep_alive: bool,
        raw: Option<Box<RawFields>>,
        pool: &Arc<EndpointPool>,
    ) -> RespBody {
        let mut b = RespBody { conn: Some(conn), framing, keep_alive, pool: Arc::clone(pool), raw };
        if framing == Framing::Done {
            b.done();
        }
        b
    }

    /// The endpoint's header fields when they pass through as they came.
    pub fn raw_fields(&self) -> Option<&RawFields> {
        self.raw.as_deref()
    }

    pub fn take_raw_fields(&mut self) -> Option<Box<RawFields>> {
        self.raw.take()
    }

    pub fn raw_fields_mut(&mut self) -> Option<&mut RawFields> {
        self.raw.as_deref_mut()
    }

    fn done(&mut self) {
        self.framing = Framing::Done;
        if let Some(c) = self.conn.take()
            && self.keep_alive
            && c.rbuf.is_empty()
        {
            self.pool.checkin(c);
        }
    }

    fn fail(&mut self, msg: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.framing = Framing::Done;
        Poll::Ready(Some(Err(msg.into())))
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let need_more = match this.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) => {
                    if conn.rbuf.is_empty() {
                        true
                    } else {
                        let take = conn.rbuf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        let data = conn.rbuf.split_to(take).freeze();
                        let left = left - take as u64;
                        this.framing = Framing::Length(left);
                        if left == 0 {
                            this.done();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Close => {
                    if conn.rbuf.is_empty() {
                        true
                    } else {
                        let data = conn.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Framing::Chunked(st) => match step_chunked(&mut conn.rbuf, st) {
                    Err(e) => return this.fail(e),
                    Ok(Step::More(st)) => {
                        this.framing = Framing::Chunked(st);
                        true
                    }
                    Ok(Step::Data(st, data)) => {
                        this.framing = Framing::Chunked(st);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Step::Continue(st)) => {
                        this.framing = Framing::Chunked(st);
                        false
                    }
                    Ok(Step::End(trailers)) => {
                        this.done();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                },
            };
            if !need_more {
                continue;
            }
            match conn.io.poll_read_into(cx, &mut conn.rbuf, READ_SPACE) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return this.fail(format!("reading the response body failed: {e}")),
                Poll::Ready(Ok(0)) => {
                    if this.framing == Framing::Close {
                        this.conn = None;
                        this.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return this.fail("the endpoint closed the connection before the body ended".into());
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

enum Step {
    /// More bytes are needed in this state.
    More(ChunkState),
    /// A piece of chunk data.
    Data(ChunkState, Bytes),
    /// Moved on without data; go on.
    Continue(ChunkState),
    /// The body ended (with trailers, if any).
    End(Option<HeaderMap>),
}

/// One step of the chunked decoder on the bytes in `buf`.
fn step_chunked(buf: &mut BytesMut, st: ChunkState) -> Result<Step, String> {
    match st {
        ChunkState::Size => {
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() > MAX_CHUNK_LINE {
                    return Err("chunk-size line too long".into());
                }
                return Ok(Step::More(st));
            };
            let line = &buf[..nl];
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let rest = &line[digits..];
            let rest_ok = rest.is_empty()
                || rest == b"\r"
                || matches!(rest[0], b';' | b' ' | b'\t') && rest.ends_with(b"\r");
            if digits == 0 || digits > 16 || !rest_ok {
                return Err("invalid chunk-size line".into());
            }
            let size = std::str::from_utf8(&line[..digits])
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| "invalid chunk size".to_string())?;
            buf.advance(nl + 1);
            Ok(Step::Continue(if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) }))
        }
        ChunkState::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::More(st));
            }
            let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let data = buf.split_to(take).freeze();
            let left = left - take as u64;
            Ok(Step::Data(if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) }, data))
        }
        ChunkState::DataEnd => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
            } else if buf.starts_with(b"\n") {
                buf.advance(1);
            } else if buf.len() < 2 && (buf.is_empty() || buf[0] == b'\r') {
                return Ok(Step::More(st));
            } else {
                return Err("chunk data not followed by CRLF".into());
            }
            Ok(Step::Continue(ChunkState::Size))
        }
        ChunkState::Trailers => {
            // The trailer section ends at an empty line; parse it whole.
            let end = if buf.starts_with(b"\r\n") {
                Some(2)
            } else if buf.starts_with(b"\n") {
                Some(1)
            } else {
                buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
            };
            let Some(end) = end else {
                if buf.len() > MAX_TRAILER_BYTES {
                    return Err("response trailers too large".into());
                }
                return Ok(Step::More(st));
            };
            let section = buf.split_to(end);
            if end <= 2 {
                return Ok(Step::End(None));
            }
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let parsed = match httparse::parse_headers(&section, &mut fields) {
                Ok(httparse::Status::Complete((_, h))) => h,
                _ => return Err("invalid response trailers".into()),
            };
            let mut map = HeaderMap::new();
            for f in parsed {
                if let (Ok(n), Ok(v)) =
                    (HeaderName::from_bytes(f.name.as_bytes()), HeaderValue::from_bytes(f.value))
                {
                    map.append(n, v);
                }
            }
            Ok(Step::End((!map.is_empty()).then_some(map)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(mut wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
        let mut buf = BytesMut::new();
        let mut st = ChunkState::Size;
        let mut out = Vec::new();
        loop {
            match step_chunked(&mut buf, st)? {
                Step::More(s) => {
                    if wire.is_empty() {
                        return Err("ran out".into());
                    }
                    let k = step.min(wire.len());
                    buf.extend_from_slice(&wire[..k]);
                    wire = &wire[k..];
                    st = s;
                }
                Step::Data(s, d) => {
                    out.extend_from_slice(&d);
                    st = s;
                }
                Step::Continue(s) => st = s,
                Step::End(t) => return Ok((out, t)),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: abc\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let (body, trailers) = decode(wire, step).unwrap();
            assert_eq!(body, b"hello, world", "step {step}");
            assert_eq!(trailers.unwrap()["x-sum"], "abc");
        }
        let (body, trailers) = decode(b"3\r\nabc\r\n0\r\n\r\n", 1).unwrap();
        assert_eq!(body, b"abc");
        assert!(trailers.is_none());
    }

    #[test]
    fn bad_chunks_are_errors() {
        assert!(decode(b"zz\r\nabc\r\n0\r\n\r\n", 100).is_err());
        assert!(decode(b"3\r\nabcX\r\n0\r\n\r\n", 100).is_err());
        assert!(decode(b"12345678901234567\r\n", 100).is_err());
        assert!(decode(b"3 junk\r\nabc\r\n", 100).is_err());
    }

    fn head(wire: &[u8], head_only: bool) -> Result<Option<Parsed>, String> {
        let mut b = BytesMut::from(wire);
        parse_head(&mut b, head_only, None)
    }

    #[test]
    fn passed_through_heads_keep_their_fields_aside() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\nhello";
        let mut b = BytesMut::from(&wire[..]);
        let Ok(Some(Parsed::Final(h))) = parse_head(&mut b, false, Some(&[])) else { panic!("not parsed") };
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        assert!(h.resp.headers().is_empty(), "no map entries");
        let raw = h.raw.expect("fields kept as they came");
        assert_eq!(raw.content_length(), Some(5));
        let mut out = Vec::new();
        raw.write(&mut out, false);
        assert_eq!(out, b"X-A: 1\r\n");
        assert_eq!(&b[..], b"hello", "the body stays in the buffer");
        // A `Connection` naming another field: the map (which later drops both).
        let wire = b"HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n";
        let mut b = BytesMut::from(&wire[..]);
        let Ok(Some(Parsed::Final(h))) = parse_head(&mut b, false, Some(&[])) else { panic!("not parsed") };
        assert!(h.raw.is_none());
        assert_eq!(h.resp.headers()["x-a"], "1");
    }

    fn final_of(wire: &[u8], head_only: bool) -> (Response<()>, Framing, bool) {
        match head(wire, head_only).unwrap() {
            Some(Parsed::Final(h)) => (h.resp, h.framing, h.keep_alive),
            _ => panic!("not a final response"),
        }
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (r, f, keep) = final_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello", false);
        assert_eq!((r.status(), f, keep), (StatusCode::OK, Framing::Length(5), true));
        assert_eq!(r.headers()["x-a"], "1");
        let (_, f, keep) = final_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!((f, keep), (Framing::Done, true), "HEAD: no body");
        let (_, f, _) = final_of(b"HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(f, Framing::Done);
        let (_, f, keep) = final_of(b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Done, true), "an empty body ends with its head");
        let (_, f, keep) =
            final_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Chunked(ChunkState::Size), false), "chunked wins, then close");
        let (_, f, keep) = final_of(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((f, keep), (Framing::Close, false));
        let (_, _, keep) = final_of(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!keep, "HTTP/1.0 closes by default");
        let (_, _, keep) =
            final_of(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false);
        assert!(keep);
        let (_, _, keep) =
            final_of(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!keep);
        assert!(matches!(head(b"HTTP/1.1 100 Continue\r\n\r\n", false), Ok(Some(Parsed::Interim))));
        assert!(head(b"HTTP/1.1 abc OK\r\n\r\n", false).is_err());
        assert!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false).is_err());
        assert!(matches!(head(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None)));
    }

    #[test]
    fn request_heads_carry_our_framing() {
        let uri: Uri = "/a/b?c=d%20e".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("svc"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("expect", HeaderValue::from_static("100-continue"));
        let head = RequestHead {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            pass_through: None,
            hop: None,
        };
        let mut buf = Vec::new();
        encode_head(&mut buf, &head, framing(&head, &GwBody::full("abc")));
        assert_eq!(buf, b"POST /a/b?c=d%20e HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\n");
        encode_head(&mut buf, &head, framing(&head, &GwBody::Empty));
        assert!(buf.ends_with(b"content-length: 0\r\n\r\n"), "a POST says its body is empty");
        let (uri, headers) = (Uri::default(), HeaderMap::new());
        let head =
            RequestHead { method: &Method::GET, uri: &uri, headers: &headers, pass_through: None, hop: None };
        encode_head(&mut buf, &head, framing(&head, &GwBody::Empty));
        assert_eq!(buf, b"GET / HTTP/1.1\r\n\r\n");
    }
}
