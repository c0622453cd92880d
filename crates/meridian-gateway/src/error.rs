//! Every gateway-made error becomes a response here, and nowhere else.
//!
//! A [`ProxyError`] says what went wrong (a stable [`ErrorCode`]), where (the client side, the
//! upstream, or inside the gateway), and whether trying again on another endpoint is safe.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, header};
use meridian_core::ErrorCode;

use crate::body::GwBody;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client (bad request, too large, too slow).
    Downstream,
    /// An upstream endpoint (refused, reset, timed out, bad response).
    Upstream,
    /// The gateway itself (no route, no endpoints, a bug).
    Internal,
}

/// Whether a failed try may be repeated on another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The request never reached the upstream application (connect failure, refused stream,
    /// a pooled connection closed before use): safe for any method.
    Safe,
    /// The upstream may have seen the request: only idempotent methods may repeat it.
    IfIdempotent,
    /// Never repeat.
    No,
}

#[derive(Debug)]
pub struct ProxyError {
    pub code: ErrorCode,
    pub source: Source,
    pub retry: Retry,
    pub message: String,
}

impl ProxyError {
    pub fn new(code: ErrorCode, source: Source, retry: Retry, message: impl Into<String>) -> Self {
        ProxyError { code, source, retry, message: message.into() }
    }

    pub fn internal(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, Source::Internal, Retry::No, message)
    }

    pub fn downstream(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code, Source::Downstream, Retry::No, message)
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?}): {}", self.code, self.source, self.message)
    }
}

/// The request id header, generated or propagated on every request.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The JSON error response for a code: `{"code","message","request_id"}` plus `x-request-id`.
pub fn respond(code: ErrorCode, message: &str, request_id: &str) -> Response<GwBody> {
    let body = Bytes::from(code.body(message, request_id));
    let mut resp = Response::new(GwBody::full(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(code.status()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, JSON.clone());
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    resp
}
