//! The body of an upstream response: streams to the client, and when it ends cleanly gives the
//! HTTP/1.1 connection back to its pool. In-flight counters drop when it ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::{EndpointPool, PoolReturn};
use crate::body::BoxError;

/// Counts a request as in flight at an endpoint until dropped (one per try).
pub struct InFlight {
    endpoint: Arc<EndpointPool>,
}

impl InFlight {
    pub fn new(endpoint: Arc<EndpointPool>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { endpoint }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service concurrency slot (one per client request, across tries), given back on drop.
pub struct ServiceSlot {
    counter: Arc<AtomicU32>,
}

impl ServiceSlot {
    /// Takes a slot unless `limit` requests are already in flight.
    pub fn acquire(counter: &Arc<AtomicU32>, limit: u32) -> Option<ServiceSlot> {
        let prev = counter.fetch_add(1, Ordering::Relaxed);
        if prev >= limit {
            counter.fetch_sub(1, Ordering::Relaxed);
            None
        } else {
            Some(ServiceSlot { counter: Arc::clone(counter) })
        }
    }
}

impl Drop for ServiceSlot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct UpstreamBody {
    inner: Incoming,
    ret: Option<PoolReturn>,
    _in_flight: Option<(InFlight, [Option<ServiceSlot>; 2])>,
}

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        ret: Option<PoolReturn>,
        in_flight: InFlight,
        slots: [Option<ServiceSlot>; 2],
    ) -> Self {
        let mut b = UpstreamBody { inner, ret, _in_flight: Some((in_flight, slots)) };
        if b.inner.is_end_stream() {
            b.finish();
        }
        b
    }

    fn finish(&mut self) {
        if let Some(r) = self.ret.take() {
            r.pool.checkin(r.sender);
        }
        self._in_flight = None;
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(f))) => {
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The connection is broken: never pool it.
                this.ret = None;
                this._in_flight = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => Poll::Pending,
        }
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
