//! Coordinated shutdown: a token every task can watch, in two stages.
//!
//! Stage one (`begin_drain`) fails readiness so load balancers and DNS move traffic away while
//! the process keeps serving; stage two (`stop`) tells listeners to stop accepting, send
//! HTTP/2 GOAWAY and close idle keep-alive connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

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
    pub fn stopping_owned(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.stopping.clone().cancelled_owned()
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
}
