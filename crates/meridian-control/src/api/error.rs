//! Every admin API error becomes one JSON shape: `{code, message}` plus, for an invalid config,
//! `errors: [{path, message}]` and, for a conflict, `current_version`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::control::ControlError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Option<(&'static str, Value)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "NotAuthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let message = e.to_string();
        match e {
            ControlError::Invalid(errors) => {
                let list: Vec<Value> =
                    errors.iter().map(|e| json!({"path": e.path, "message": e.message})).collect();
                let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                ApiError {
                    extra: Some(("errors", Value::Array(list))),
                    ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "InvalidConfig", text.join("\n"))
                }
            }
            ControlError::Conflict { current } => ApiError {
                extra: Some(("current_version", json!(current))),
                ..ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            },
            ControlError::RolloutConflict { current } => ApiError {
                extra: Some(("current_rollout_version", json!(current))),
                ..ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            },
            ControlError::Regression(m) => ApiError::new(StatusCode::CONFLICT, "VersionRegression", m),
            ControlError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "NotFound", m),
            ControlError::BadRequest(m) => ApiError::bad_request(m),
            ControlError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { current } => ControlError::Conflict { current }.into(),
            e => {
                tracing::error!(error = %e, "store failure");
                // The message names the backend (an etcd error names its endpoints); the
                // request may be retried once the store is back.
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let (Some((k, v)), Some(obj)) = (self.extra, body.as_object_mut()) {
            obj.insert(k.to_string(), v);
        }
        (self.status, axum::Json(body)).into_response()
    }
}
