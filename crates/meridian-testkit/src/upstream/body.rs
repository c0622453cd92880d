//! Response bodies of the test upstream: small JSON, and a generated stream of any length.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use crate::server::BoxError;

pub(crate) type TestBody = BoxBody<Bytes, BoxError>;

/// Size of each generated chunk.
const CHUNK: usize = 64 * 1024;

pub(crate) fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub(crate) fn empty() -> TestBody {
    full(Bytes::new())
}

/// `len` bytes where byte `i` is `i % 256`, produced one 64 KiB chunk at a time as the
/// connection asks for it: memory stays flat whatever `len` is.
pub(crate) fn generated(len: u64) -> TestBody {
    // 64 KiB is a multiple of 256, so every chunk continues the pattern where the last one ended.
    let chunk: Bytes = (0..CHUNK).map(|i| i as u8).collect::<Vec<u8>>().into();
    Generated { remaining: len, chunk }.boxed()
}

struct Generated {
    remaining: u64,
    chunk: Bytes,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
