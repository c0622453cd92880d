//! The body of an upstream response as it streams to the client (an HTTP/1.1 body gives its
//! connection back to its pool itself). In-flight counters drop when it ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use super::pool::{EndpointPool, RespStream};
use crate::body::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

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
    inner: RespStream,
    _in_flight: Option<(InFlight, [Option<ServiceSlot>; 2])>,
}

impl UpstreamBody {
    /// An HTTP/1.1 endpoint's header fields when they pass through as they came.
    pub fn raw_fields(&self) -> Option<&crate::raw_head::RawFields> {
        match &self.inner {
            RespStream::H1(b) => b.raw_fields(),
            RespStream::H2(_) => None,
        }
    }

    pub fn raw_fields_mut(&mut self) -> Option<&mut crate::raw_head::RawFields> {
        self.inner.raw_fields_mut()
    }

    pub fn take_raw_fields(&mut self) -> Option<Box<crate::raw_head::RawFields>> {
        match &mut self.inner {
            RespStream::H1(b) => b.take_raw_fields(),
            RespStream::H2(_) => None,
        }
    }

    pub fn new(inner: RespStream, in_flight: InFlight, slots: [Option<ServiceSlot>; 2]) -> Self {
        let mut b = UpstreamBody { inner, _in_flight: Some((in_flight, slots)) };
        if b.is_end_stream() {
            b._in_flight = None;
        }
        b
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
        let r = match &mut this.inner {
            RespStream::H1(b) => Pin::new(b).poll_frame(cx),
            RespStream::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        };
        match &r {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this._in_flight = None,
            Poll::Ready(Some(Ok(_))) if this.is_end_stream() => this._in_flight = None,
            _ => {}
        }
        r
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RespStream::H1(b) => b.is_end_stream(),
            RespStream::H2(b) => b.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RespStream::H1(b) => b.size_hint(),
            RespStream::H2(b) => b.size_hint(),
        }
    }
}
