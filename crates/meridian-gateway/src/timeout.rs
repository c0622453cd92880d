//! Idle timeouts: on streamed bodies and on raw connections (keep-alive, upgraded tunnels).
//! Nothing here cuts a stream that keeps moving; only silence longer than the limit does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{BoxError, GwBody};

/// Activity on a connection, shared between its I/O and a watcher: a counter bumped on every
/// successful read or write (no clock read per I/O operation). The watcher samples it once per
/// idle period, so "idle for `d`" is detected between `d` and `2d` after the last activity.
#[derive(Clone, Default)]
pub struct Activity {
    ticks: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn touch(&self) {
        // A plain load + store: only this connection's task writes it.
        let t = self.ticks.load(Ordering::Relaxed);
        self.ticks.store(t.wrapping_add(1), Ordering::Relaxed);
    }

    /// Resolves once nothing moved for a whole `idle` period.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let before = self.ticks.load(Ordering::Relaxed);
            tokio::time::sleep(idle).await;
            if self.ticks.load(Ordering::Relaxed) == before {
                return;
            }
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

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = r {
            this.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(_)) = r {
            this.activity.touch();
        }
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
