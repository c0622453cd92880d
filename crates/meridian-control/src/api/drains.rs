//! `/v1/drains`: drain switches; each change is a new `drains` version.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::{Principal, noted};
use super::{ApiError, AppState};
use crate::store::Role;

pub async fn list(State(c): State<AppState>) -> Result<Response, ApiError> {
    let (version, d) = c.drains().await?;
    Ok(Json(json!({"version": version, "drains": d})).into_response())
}

pub async fn get(State(c): State<AppState>, Path(target): Path<String>) -> Result<Response, ApiError> {
    let (version, drained) = c.drained(&target).await?;
    Ok(Json(json!({"target": target, "drained": drained, "version": version})).into_response())
}

pub async fn put(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    set(c, p, target, true).await
}

pub async fn delete(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    set(c, p, target, false).await
}

async fn set(c: AppState, p: Principal, target: String, drained: bool) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let change = c.set_drain(&target, drained, &p.name).await?;
    let v = change.changed.then_some(change.version);
    Ok(noted(Json(change), target, v))
}
