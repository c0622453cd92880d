//! Idle timeouts: on streamed bodies and on raw connections (keep-alive, upgraded tunnels).
//! Nothing here cuts a stream that keeps moving; only silence longer than the limit does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{BoxError, GwBody};

/// Activity on a connection, shared between its I/O and a watcher: counters bumped on every
/// successful read or write (no clock read per I/O operation), and whether a write is waiting
/// for the peer to take bytes. The watcher samples them once per period, so "idle for `d`" is
/// detected between `d` and `2d` after the last activity, and likewise a stalled write.
#[derive(Clone, Default)]
pub struct Activity {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Successful reads and writes.
    ticks: AtomicU64,
    /// Successful writes.
    writes: AtomicU64,
    /// The last write returned `Pending`: the peer's receive window and the socket buffer are
    /// full.
    write_waiting: AtomicBool,
}

/// A plain load + store: only the connection's task writes these counters.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl Activity {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn touch(&self) {
        bump(&self.state.ticks);
    }

    #[inline]
    fn wrote(&self) {
        bump(&self.state.ticks);
        bump(&self.state.writes);
        self.state.write_waiting.store(false, Ordering::Relaxed);
    }

    #[inline]
    fn write_blocked(&self) {
        self.state.write_waiting.store(true, Ordering::Relaxed);
    }

    /// Watches the connection on one timer, sampled once per `period`, and resolves with what
    /// it found first:
    /// - [`Quiet::WriteStalled`]: a write has waited on the peer for a whole period without a
    ///   byte written (nginx's `send_timeout`): the peer takes nothing of what it is sent. Reads
    ///   do not count, so a client that keeps sending but never reads is still found.
    /// - [`Quiet::Idle`]: nothing moved for a whole period, and `idle` allows it.
    pub async fn watch(&self, period: Duration, idle: IdleRule<'_>) -> Quiet {
        let s = &*self.state;
        let sleep = tokio::time::sleep(period);
        tokio::pin!(sleep);
        let (mut ticks, mut writes) = (s.ticks.load(Ordering::Relaxed), s.writes.load(Ordering::Relaxed));
        loop {
            sleep.as_mut().await;
            let (t, w) = (s.ticks.load(Ordering::Relaxed), s.writes.load(Ordering::Relaxed));
            if s.write_waiting.load(Ordering::Relaxed) && w == writes {
                return Quiet::WriteStalled;
            }
            if t == ticks && idle.allows() {
                return Quiet::Idle;
            }
            (ticks, writes) = (t, w);
            sleep.as_mut().reset(tokio::time::Instant::now() + period);
        }
    }
}

/// What [`Activity::watch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    Idle,
    WriteStalled,
}

/// When a connection with nothing moving counts as idle.
#[derive(Clone, Copy)]
pub enum IdleRule<'a> {
    /// Only stalled writes are watched (a connection already closing).
    Never,
    Always,
    /// While no request is in progress: the count of requests whose response is not done.
    NoneActive(&'a AtomicUsize),
}

impl IdleRule<'_> {
    fn allows(self) -> bool {
        match self {
            IdleRule::Never => false,
            IdleRule::Always => true,
            IdleRule::NoneActive(active) => active.load(Ordering::Relaxed) == 0,
        }
    }
}

pin_project_lite::pin_project! {
    /// An I/O stream that records activity on every successful read or write.
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        activity: Activity,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: Activity) -> Self {
        activity.touch();
        ActivityIo { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let r = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.activity.touch();
        }
        r
    }
}

impl<T> ActivityIo<T> {
    #[inline]
    fn record_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(_)) => self.activity.wrote(),
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = self.as_mut().project().inner.poll_write(cx, buf);
        self.record_write(&r);
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.as_mut().project().inner.poll_write_vectored(cx, bufs);
        self.record_write(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// A body that fails when no frame arrives for the idle duration.
pub struct IdleTimeoutBody {
    inner: GwBody,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// False after a frame was handed out: the next poll starts a fresh wait, so time the
    /// client spends not reading never counts as the upstream being idle.
    waiting: bool,
}

impl IdleTimeoutBody {
    pub fn new(inner: GwBody, idle: Duration) -> Self {
        IdleTimeoutBody { inner, idle, sleep: Box::pin(tokio::time::sleep(idle)), waiting: true }
    }
}

impl Body for IdleTimeoutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.waiting {
            this.sleep.as_mut().reset(tokio::time::Instant::now() + this.idle);
            this.waiting = true;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err("stream idle timeout".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// The watch period of these tests.
    const PERIOD: Duration = Duration::from_millis(300);

    /// Writes through `io` until a write has to wait for the peer.
    async fn fill(io: &mut ActivityIo<tokio::io::DuplexStream>) {
        let chunk = [b'x'; 64];
        loop {
            let pending =
                poll_fn(|cx| Poll::Ready(Pin::new(&mut *io).poll_write(cx, &chunk).is_pending())).await;
            if pending {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_write_that_waits_a_whole_period_is_a_stall() {
        let (ours, _peer) = tokio::io::duplex(256);
        let activity = Activity::new();
        let mut io = ActivityIo::new(ours, activity.clone());
        fill(&mut io).await;
        let r = tokio::time::timeout(Duration::from_secs(3), activity.watch(PERIOD, IdleRule::Never)).await;
        assert_eq!(r.ok(), Some(Quiet::WriteStalled), "a write waiting on a peer that reads nothing");
    }

    #[tokio::test]
    async fn writes_that_make_progress_or_nothing_to_write_are_no_stall() {
        // Nothing written at all: idle, not stalled.
        let (ours, _peer) = tokio::io::duplex(256);
        let activity = Activity::new();
        let _io = ActivityIo::new(ours, activity.clone());
        let r = tokio::time::timeout(Duration::from_secs(3), activity.watch(PERIOD, IdleRule::Never)).await;
        assert!(r.is_err(), "a connection with nothing to write was reported as stalled");

        // Blocked, but the peer takes bytes every tenth of a period and each write goes through.
        let (ours, mut peer) = tokio::io::duplex(256);
        let activity = Activity::new();
        let mut io = ActivityIo::new(ours, activity.clone());
        let writer = async {
            loop {
                fill(&mut io).await;
                tokio::time::sleep(PERIOD / 10).await;
                let mut buf = [0u8; 128];
                peer.read_exact(&mut buf).await.unwrap();
                let _ = poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, &buf))).await;
            }
        };
        tokio::select! {
            _ = activity.watch(PERIOD, IdleRule::Never) => panic!("a slow reader that keeps reading was reported as stalled"),
            () = writer => unreachable!(),
            () = tokio::time::sleep(PERIOD * 5) => {}
        }
    }

    #[tokio::test]
    async fn silence_is_idle_only_where_the_rule_allows() {
        let (ours, _peer) = tokio::io::duplex(256);
        let activity = Activity::new();
        let _io = ActivityIo::new(ours, activity.clone());
        let r = tokio::time::timeout(Duration::from_secs(3), activity.watch(PERIOD, IdleRule::Always)).await;
        assert_eq!(r.ok(), Some(Quiet::Idle));
        let none = AtomicUsize::new(0);
        let r =
            tokio::time::timeout(Duration::from_secs(3), activity.watch(PERIOD, IdleRule::NoneActive(&none)))
                .await;
        assert_eq!(r.ok(), Some(Quiet::Idle));

        // A request in progress, or a connection already closing: silence is not idleness.
        let one = AtomicUsize::new(1);
        for rule in [IdleRule::NoneActive(&one), IdleRule::Never] {
            let r = tokio::time::timeout(PERIOD * 4, activity.watch(PERIOD, rule)).await;
            assert!(r.is_err(), "reported {r:?}");
        }
    }

    #[tokio::test]
    async fn a_peer_that_sends_but_never_reads_is_a_stall_not_activity() {
        // The peer's bytes keep arriving (reads tick) while our writes wait on it.
        let (ours, mut peer) = tokio::io::duplex(256);
        let activity = Activity::new();
        let mut io = ActivityIo::new(ours, activity.clone());
        fill(&mut io).await;
        let chatter = async {
            loop {
                use tokio::io::AsyncWriteExt;
                peer.write_all(b"ping").await.unwrap();
                let mut buf = [0u8; 4];
                io.read_exact(&mut buf).await.unwrap();
                tokio::time::sleep(PERIOD / 10).await;
            }
        };
        tokio::select! {
            q = activity.watch(PERIOD, IdleRule::Always) => assert_eq!(q, Quiet::WriteStalled),
            () = chatter => unreachable!(),
            () = tokio::time::sleep(PERIOD * 10) => panic!("no stall reported"),
        }
    }
}
