//! The byte transport under our own HTTP/1.1 client and server: plain TCP, or TLS.
//!
//! On TCP, a read shorter than the space offered leaves the socket empty, so its readiness is
//! cleared right away (as nginx does with `EPOLLRDHUP`): an idle connection then shows
//! readiness again only when the peer sends or closes, which [`Io::is_quiet`] reads without a
//! system call. Readiness that arrived meanwhile is kept: tokio clears only the readiness event
//! it saw.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A connection's transport; `T` is the TLS stream type (client or server side).
pub enum Io<T> {
    Tcp(TcpStream),
    Tls(Box<T>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> Io<T> {
    /// Reads what the transport has into `buf`'s spare room (at least `space / 2` of it);
    /// `Ok(0)` is the end of the stream. The room is made only once there is something to
    /// read: a connection waiting for its next request holds no buffer (nginx frees its
    /// read buffer between keep-alive requests too). An empty `buf` takes a buffer an idle
    /// connection of this thread gave up ([`release_read_buf`]) before it allocates one.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        space: usize,
    ) -> Poll<io::Result<usize>> {
        let make_room = |buf: &mut BytesMut| {
            if buf.capacity() == 0
                && let Some(spare) = take_read_buf()
            {
                *buf = spare;
            }
            if buf.capacity() - buf.len() < space / 2 {
                buf.reserve(space);
            }
        };
        match self {
            Io::Tcp(s) => {
                let s: &TcpStream = s;
                let had_none = buf.capacity() == 0;
                loop {
                    ready!(s.poll_read_ready(cx))?;
                    make_room(buf);
                    let room = buf.capacity() - buf.len();
                    let mut got = 0;
                    // A short read: report WouldBlock to tokio so it clears the readiness,
                    // and keep the bytes.
                    let r = s.try_io(Interest::READABLE, || {
                        got = s.try_read_buf(buf)?;
                        if got > 0 && got < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(got) }
                    });
                    match r {
                        Ok(n) => return Poll::Ready(Ok(n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if got > 0 {
                                return Poll::Ready(Ok(got));
                            }
                            // Readiness without bytes (a new connection's first event): the
                            // room made for them goes again.
                            if had_none && buf.is_empty() {
                                release_read_buf(buf);
                            }
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
            Io::Tls(s) => {
                let mut tmp = [0u8; 8 * 1024];
                let mut rb = ReadBuf::new(&mut tmp);
                ready!(Pin::new(&mut **s).poll_read(cx, &mut rb))?;
                make_room(buf);
                buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    }

    /// Whether an idle connection is still usable: nothing arrived and the peer did not close.
    /// Without readiness, no system call.
    pub fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self {
            Io::Tcp(s) => match s.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                // Readiness left from a read that filled its buffer, or the peer sent or
                // closed: only a read tells.
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            Io::Tls(s) => {
                let mut probe = [0u8; 1];
                let mut rb = ReadBuf::new(&mut probe);
                matches!(Pin::new(&mut **s).poll_read(&mut cx, &mut rb), Poll::Pending)
            }
        }
    }

    /// Writes `parts` whole (then flushes), counting into `written` what the transport took.
    pub fn poll_write_parts(
        &mut self,
        cx: &mut Context<'_>,
        parts: &mut [&[u8]],
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut slices = [IoSlice::new(&[]); 4];
            let mut n_slices = 0;
            for p in parts.iter().filter(|p| !p.is_empty()) {
                if n_slices < slices.len() {
                    slices[n_slices] = IoSlice::new(p);
                    n_slices += 1;
                }
            }
            if n_slices == 0 {
                return match self {
                    Io::Tcp(_) => Poll::Ready(Ok(())),
                    Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
                };
            }
            let n = ready!(match self {
                Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, &slices[..n_slices]),
                Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, &slices[..n_slices]),
            })?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            let mut left = n;
            for p in parts.iter_mut() {
                let k = left.min(p.len());
                *p = &p[k..];
                left -= k;
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Io<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Io<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A transport with bytes already read from it in front: what hyper gets when our server
/// hands a connection over mid-stream (HTTP/2, upgrades, anything it does not serve itself).
pub struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: Bytes, inner: I) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A deadline timer that stays armed between uses: a tokio timer per use costs a timer-wheel
/// insertion and removal, this one is only moved when it fires early (an earlier use's deadline
/// came first) or is later than the deadline asked for. Serves the server loop's head-read
/// timeout and each pooled client connection's per-try timeout.
#[derive(Default)]
pub struct LazyTimer(Option<Pin<Box<tokio::time::Sleep>>>);

impl LazyTimer {
    /// Ready once `deadline` has passed; otherwise registers `cx` to be woken by then.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, deadline: tokio::time::Instant) -> Poll<()> {
        let sleep = self.0.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        while sleep.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

thread_local! {
    /// Read buffers that idle connections of this thread gave up ([`release_read_buf`]).
    static SPARE_READ_BUFS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}
/// Most spare read buffers a thread keeps, and the largest it keeps.
const SPARE_READ_BUFS_MAX: usize = 16;
const SPARE_READ_BUF_BYTES: usize = 16 * 1024;

/// Takes `buf`, when it is empty, from a connection that has no use for it now (a request head was just
/// split off it, or it waits for its next request), for the next connection of this thread
/// that has bytes to read ([`Io::poll_read_into`]). A waiting connection still holds no
/// buffer, and request heads share buffers instead of allocating one each: the heads of a
/// batch of connections are read one after another into the rest of the same buffer (each
/// keeps only its own bytes), and once the requests that shared it are gone the buffer is
/// whole again (`BytesMut::reserve` reclaims it; while some still hold their bytes, it
/// allocates a new one).
pub fn release_read_buf(buf: &mut BytesMut) {
    if !buf.is_empty() {
        // Bytes still to be used stay with their connection.
        return;
    }
    let buf = std::mem::take(buf);
    if buf.capacity() == 0 || buf.capacity() > SPARE_READ_BUF_BYTES {
        return;
    }
    // (Thread-local storage is gone only while the thread exits.)
    let _ = SPARE_READ_BUFS.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && s.len() < SPARE_READ_BUFS_MAX
        {
            s.push(buf);
        }
    });
}

fn take_read_buf() -> Option<BytesMut> {
    SPARE_READ_BUFS.try_with(|s| s.try_borrow_mut().ok()?.pop()).ok().flatten()
}

/// Appends one header field line, `name: value` and CRLF.
pub fn put_field(buf: &mut Vec<u8>, name: &http::HeaderName, value: &http::HeaderValue) {
    buf.extend_from_slice(name.as_str().as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Byte ranges of one field in a head: name start and end, value start and end.
pub type Span = (u32, u32, u32, u32);

/// Fields whose spans live on the stack; more go to the heap. Zeroing room for the most a head
/// may carry (a hundred fields and more, 1.6 KiB) on every head cost more than handling its
/// few fields.
pub const INLINE_SPANS: usize = 24;

/// The spans of the parsed `fields` of a head that starts at address `base`: in `inline`, or
/// in `heap` past [`INLINE_SPANS`] fields.
pub fn field_spans<'a>(
    base: usize,
    fields: &[httparse::Header<'_>],
    inline: &'a mut [Span; INLINE_SPANS],
    heap: &'a mut Vec<Span>,
) -> &'a [Span] {
    let out: &mut [Span] = match inline.get_mut(..fields.len()) {
        Some(room) => room,
        None => {
            heap.resize(fields.len(), (0, 0, 0, 0));
            heap
        }
    };
    for (span, h) in out.iter_mut().zip(fields) {
        let ns = h.name.as_ptr() as usize - base;
        let vs = h.value.as_ptr() as usize - base;
        *span = (ns as u32, (ns + h.name.len()) as u32, vs as u32, (vs + h.value.len()) as u32);
    }
    out
}

/// The fields HTTP/1.1 framing and connection handling read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Te,
    Expect,
    Upgrade,
    Connection,
    ContentLength,
    TransferEncoding,
}

/// Which [`Special`] field `name` is, in any case: by length first, so most names are one
/// comparison of lengths.
#[inline]
pub fn special_field(name: &[u8]) -> Option<Special> {
    let (special, lower): (Special, &[u8]) = match name.len() {
        2 => (Special::Te, b"te"),
        6 => (Special::Expect, b"expect"),
        7 => (Special::Upgrade, b"upgrade"),
        10 => (Special::Connection, b"connection"),
        14 => (Special::ContentLength, b"content-length"),
        17 => (Special::TransferEncoding, b"transfer-encoding"),
        _ => return None,
    };
    name_is(name, lower).then_some(special)
}

/// Whether the field name `name` is `lower` (given in lowercase, as `HeaderName`s are), in
/// any case: half the work of a comparison that folds both sides.
#[inline]
pub fn name_is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(a, &b)| a.to_ascii_lowercase() == b)
}

/// Whether a comma-separated field value (`Connection`, `TE`) lists `token`, in any case and
/// whatever parameters follow it (`trailers;q=1`).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| {
        let name = t.split(|&b| b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(token)
    })
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6; no sign, no list), optional
/// surrounding whitespace. Anything else is not a length.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    #[test]
    fn read_buffers_given_up_serve_the_next_read() {
        // What this thread gave up comes back, whole once nothing holds its bytes.
        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buf.split_to(buf.len()).freeze();
        super::release_read_buf(&mut buf);
        assert_eq!(buf.capacity(), 0, "the connection keeps nothing");
        let mut next = super::take_read_buf().expect("a spare");
        assert!(next.is_empty() && next.capacity() >= 1024 - head.len());
        next.extend_from_slice(b"next");
        assert_eq!(&head[..], b"GET / HTTP/1.1\r\n\r\n", "the earlier head keeps its bytes");
        drop(head);
        next.clear();
        next.reserve(1024);
        assert!(next.capacity() >= 1024);
        // A buffer with bytes in it stays where it is; one without room is not kept.
        let mut full = BytesMut::from(&b"x"[..]);
        super::release_read_buf(&mut full);
        assert_eq!(&full[..], b"x");
        let mut none = BytesMut::new();
        super::release_read_buf(&mut none);
        assert!(super::take_read_buf().is_none());
    }

    #[test]
    fn names_compare_without_case() {
        assert!(super::name_is(b"Content-Length", b"content-length"));
        assert!(super::name_is(b"CONNECTION", b"connection"));
        assert!(!super::name_is(b"connection", b"content-length"));
        assert!(!super::name_is(b"x_request-id", b"x-request-id"));
        assert!(super::name_is(b"X_Custom-2", b"x_custom-2"));
        assert!(!super::name_is(b"te", b"ten"));
    }

    #[test]
    fn special_fields_are_found_in_any_case() {
        use super::{Special, special_field};
        assert_eq!(special_field(b"TE"), Some(Special::Te));
        assert_eq!(special_field(b"Expect"), Some(Special::Expect));
        assert_eq!(special_field(b"upgrade"), Some(Special::Upgrade));
        assert_eq!(special_field(b"Connection"), Some(Special::Connection));
        assert_eq!(special_field(b"Content-Length"), Some(Special::ContentLength));
        assert_eq!(special_field(b"TRANSFER-ENCODING"), Some(Special::TransferEncoding));
        for other in
            [&b"tf"[..], b"accept", b"trailer", b"keep-alive", b"content-type", b"x-forwarded-proto", b""]
        {
            assert_eq!(special_field(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn content_lengths_are_digits_only() {
        assert_eq!(super::content_length(b"0"), Some(0));
        assert_eq!(super::content_length(b" 1024 "), Some(1024));
        for bad in [&b""[..], b"+5", b"-1", b"5,5", b"0x10", b"1 2", b"99999999999999999999"] {
            assert_eq!(super::content_length(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A connection waiting for bytes holds no read buffer; one is made when bytes arrive.
    #[tokio::test]
    async fn a_waiting_read_holds_no_buffer() {
        use std::future::poll_fn;
        use std::task::Poll;

        use bytes::BytesMut;
        use tokio::io::AsyncWriteExt;
        use tokio::net::{TcpListener, TcpStream};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut io: super::Io<TcpStream> = super::Io::Tcp(server);
        let mut buf = BytesMut::new();
        let waiting = poll_fn(|cx| Poll::Ready(io.poll_read_into(cx, &mut buf, 1024))).await;
        assert!(waiting.is_pending());
        assert_eq!(buf.capacity(), 0, "no buffer while nothing has arrived");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let n = poll_fn(|cx| io.poll_read_into(cx, &mut buf, 1024)).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        assert!(buf.capacity() >= 512);
    }
}
