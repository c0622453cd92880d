//! Coordinated shutdown: a token every task can watch, in two stages.
//!
//! Stage one (`begin_drain`) fails readiness so load balancers and DNS move traffic away while
//! the process keeps serving; stage two (`stop`) tells listeners to stop accepting, send
//! HTTP/2 GOAWAY and close idle keep-alive connections.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    stopping: CancellationToken,
    /// The two stages again as flags, set before the tokens are cancelled: a token's
    /// `is_cancelled` takes a lock that every clone of it shares, and every request asks.
    flags: Arc<Flags>,
}

#[derive(Debug, Default)]
struct Flags {
    draining: AtomicBool,
    stopping: AtomicBool,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts draining: readiness fails from now on; serving continues.
    pub fn begin_drain(&self) {
        self.flags.draining.store(true, Ordering::Release);
        self.draining.cancel();
    }

    /// Stops serving: listeners close and connections are shut down gracefully.
    pub fn stop(&self) {
        self.flags.draining.store(true, Ordering::Release);
        self.flags.stopping.store(true, Ordering::Release);
        self.draining.cancel();
        self.stopping.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.flags.draining.load(Ordering::Acquire)
    }

    pub fn is_stopping(&self) -> bool {
        self.flags.stopping.load(Ordering::Acquire)
    }

    /// Resolves when draining begins.
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Resolves when serving must stop.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await
    }

    /// [`Shutdown::stopping`] as a future that owns its token: made once, polled many times
    /// (a connection's wait for its next request).
    pub fn stopping_owned(&self) -> StopWait {
        StopWait {
            flags: Arc::clone(&self.flags),
            registered: None,
            wait: self.stopping.clone().cancelled_owned(),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Shutdown::stopping_owned`]: registers its task's waker with the token once, then
    /// reads the flag on every poll. Polling the token's own future locks its `Notify`, shared
    /// by every waiting connection of every worker.
    pub struct StopWait {
        flags: Arc<Flags>,
        // The waker `wait` holds.
        registered: Option<Waker>,
        #[pin]
        wait: WaitForCancellationFutureOwned,
    }
}

impl Future for StopWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.flags.stopping.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let polled = this.wait.poll(cx);
        *this.registered = Some(cx.waker().clone());
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_implies_drain() {
        let s = Shutdown::new();
        assert!(!s.is_draining());
        s.begin_drain();
        assert!(s.is_draining() && !s.is_stopping());
        let clone = s.clone();
        s.stop();
        assert!(s.is_stopping() && clone.is_stopping() && clone.is_draining());
    }

    #[test]
    fn a_stop_wait_polled_again_ends_at_stop() {
        let s = Shutdown::new();
        let mut wait = std::pin::pin!(s.stopping_owned());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "registered: the flag decides");
        s.stop();
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_stop() {
        let s = Shutdown::new();
        let wait = s.stopping_owned();
        let waiter = tokio::spawn(wait);
        tokio::task::yield_now().await;
        s.stop();
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.unwrap().unwrap();
    }
}
