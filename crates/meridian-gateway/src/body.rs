//! The one body type of the gateway: an enum, so the common cases cost no allocation.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body on its way through the gateway.
pub enum GwBody {
    /// No body.
    Empty,
    /// A body held in memory (gateway-made responses, buffered request bodies for replay).
    Full(Option<Bytes>),
    /// A body streamed from a peer as it arrives.
    Incoming(Incoming),
    /// An upstream response streamed to the client (returns its connection to the pool at the end).
    Upstream(crate::upstream::response_body::UpstreamBody),
    /// Anything else (wrapped bodies: limits, idle timeouts, accounting), with the endpoint's
    /// passed-through header fields of a wrapped upstream body ([`GwBody::wrap`]).
    Boxed(UnsyncBoxBody<Bytes, BoxError>, Option<Box<crate::raw_head::RawFields>>),
}

impl GwBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() { GwBody::Empty } else { GwBody::Full(Some(b)) }
    }

    /// An endpoint's header fields that pass through as they came ([`crate::raw_head`]): only
    /// on an upstream's body, before any wrapping.
    pub fn raw_fields(&self) -> Option<&crate::raw_head::RawFields> {
        match self {
            GwBody::Upstream(b) => b.raw_fields(),
            GwBody::Boxed(_, raw) => raw.as_deref(),
            _ => None,
        }
    }

    pub fn raw_fields_mut(&mut self) -> Option<&mut crate::raw_head::RawFields> {
        match self {
            GwBody::Upstream(b) => b.raw_fields_mut(),
            GwBody::Boxed(_, raw) => raw.as_deref_mut(),
            _ => None,
        }
    }

    pub fn take_raw_fields(&mut self) -> Option<Box<crate::raw_head::RawFields>> {
        match self {
            GwBody::Upstream(b) => b.take_raw_fields(),
            GwBody::Boxed(_, raw) => raw.take(),
            _ => None,
        }
    }

    pub fn boxed<B>(b: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        GwBody::Boxed(b.map_err(Into::into).boxed_unsync(), None)
    }

    /// This body wrapped by `f` (a response body's accounting or timeout); the endpoint's
    /// passed-through header fields stay visible on the wrapped body.
    pub fn wrap<B>(mut self, f: impl FnOnce(GwBody) -> B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        let raw = self.take_raw_fields();
        GwBody::Boxed(f(self).map_err(Into::into).boxed_unsync(), raw)
    }
}

impl Body for GwBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            GwBody::Empty => Poll::Ready(None),
            GwBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GwBody::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            GwBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            GwBody::Boxed(b, _) => Pin::new(b).poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            GwBody::Empty => true,
            GwBody::Full(b) => b.is_none(),
            GwBody::Incoming(b) => b.is_end_stream(),
            GwBody::Upstream(b) => b.is_end_stream(),
            GwBody::Boxed(b, _) => b.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            GwBody::Empty => SizeHint::with_exact(0),
            GwBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            GwBody::Incoming(b) => b.size_hint(),
            GwBody::Upstream(b) => b.size_hint(),
            GwBody::Boxed(b, _) => b.size_hint(),
        }
    }
}
