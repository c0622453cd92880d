//! `/v1/routing-controls`: routing controls; each change is a new `controls` version, judged
//! by the config's safety rules. A refused change is a 409 naming the rule (`rule`); like every
//! write, it is in the audit log.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Principal, noted};
use super::{ApiError, AppState};
use crate::control::ControlsError;
use crate::store::Role;

pub async fn list(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(c.list_controls().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// `on` or `off`.
    state: String,
}

pub async fn put(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let b: SetBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"state\": \"on\"|\"off\"}}: {e}")))?;
    let on = match b.state.as_str() {
        "on" => true,
        "off" => false,
        s => return Err(ApiError::bad_request(format!("state: {s:?} is neither \"on\" nor \"off\""))),
    };
    match c.set_control(&name, on, &p.name).await {
        Ok(change) => {
            let v = change.changed.then_some(change.version);
            Ok(noted(Json(change), name, v))
        }
        Err(ControlsError::Control(e)) => Err(e.into()),
        Err(ControlsError::Refused(r)) => Err(match r.rule() {
            Some(rule) => ApiError {
                extra: Some(("rule", serde_json::json!(rule))),
                ..ApiError::new(StatusCode::CONFLICT, "UnsafeChange", r.to_string())
            },
            None => ApiError::new(StatusCode::NOT_FOUND, "NotFound", r.to_string()),
        }),
    }
}
