//! Stable error codes carried in every gateway-made error body.
//!
//! The names are part of the public API: clients match on them, so they never change once
//! shipped. Each code owns its HTTP status here so that one table decides both.

use serde::Serialize;

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorCode {
    /// 400: the request is malformed (bad framing, invalid header values).
    BadRequest,
    /// 401: credentials are missing or invalid.
    NotAuthorized,
    /// 403: the principal may not do this.
    AccessDenied,
    /// 404: no route matches.
    NotFound,
    /// 405: a route matches the path but not the method.
    MethodNotAllowed,
    /// 408: the client was too slow sending its request.
    RequestTimeout,
    /// 413: the request body is larger than allowed.
    PayloadTooLarge,
    /// 431: too many or too large request headers.
    RequestHeaderFieldsTooLarge,
    /// 429: a rate limit was hit.
    Throttling,
    /// 500: a bug or an unexpected state inside the gateway.
    InternalFailure,
    /// 502: the upstream failed (connect refused, reset, invalid response).
    BadGateway,
    /// 503: no endpoint can take the request (none configured, all unhealthy, limit reached).
    ServiceUnavailable,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
}

impl ErrorCode {
    /// The HTTP status code this error is answered with.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::NotAuthorized => 401,
            ErrorCode::AccessDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Throttling => 429,
            ErrorCode::RequestHeaderFieldsTooLarge => 431,
            ErrorCode::InternalFailure => 500,
            ErrorCode::BadGateway => 502,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::GatewayTimeout => 504,
        }
    }

    /// The code as it appears in JSON bodies and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BadRequest",
            ErrorCode::NotAuthorized => "NotAuthorized",
            ErrorCode::AccessDenied => "AccessDenied",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::MethodNotAllowed => "MethodNotAllowed",
            ErrorCode::RequestTimeout => "RequestTimeout",
            ErrorCode::PayloadTooLarge => "PayloadTooLarge",
            ErrorCode::Throttling => "Throttling",
            ErrorCode::RequestHeaderFieldsTooLarge => "RequestHeaderFieldsTooLarge",
            ErrorCode::InternalFailure => "InternalFailure",
            ErrorCode::BadGateway => "BadGateway",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            ErrorCode::GatewayTimeout => "GatewayTimeout",
        }
    }

    /// The JSON body of a gateway-made error: `{"code","message","request_id"}`.
    pub fn body(self, message: &str, request_id: &str) -> String {
        serde_json::json!({
            "code": self.as_str(),
            "message": message,
            "request_id": request_id,
        })
        .to_string()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_code_message_and_request_id() {
        let body = ErrorCode::NotFound.body("no route", "abc");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "NotFound");
        assert_eq!(v["message"], "no route");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(ErrorCode::NotFound.status(), 404);
    }

    #[test]
    fn serialized_name_matches_as_str() {
        let s = serde_json::to_string(&ErrorCode::GatewayTimeout).unwrap();
        assert_eq!(s, "\"GatewayTimeout\"");
    }
}
