//! `/v1/rollout`: staged rollout — which config version each region runs.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Principal, noted};
use super::config::{EXPECTED_VERSION_HEADER, RegionsQuery, header_u64};
use super::{ApiError, AppState};
use crate::store::Role;

pub async fn status(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(c.rollout_status().await?).into_response())
}

/// `POST /v1/rollout/promote[?regions=r1,r2]`: those regions (or every one) follow the newest
/// version. `x-meridian-expected-version` (optional) names the rollout version it was read at.
pub async fn promote(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<RegionsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let expected = header_u64(&headers, EXPECTED_VERSION_HEADER)?;
    let regions = q.list();
    let what = regions
        .as_ref()
        .map_or("rollout promote all".to_string(), |r| format!("rollout promote {}", r.join(",")));
    let change = c.promote(regions, expected, &p.name).await?;
    let v = change.changed.then_some(change.rollout_version);
    Ok(noted(Json(change), what, v))
}

/// `PUT /v1/rollout/pins/{region}` body: `{"version": N}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinBody {
    version: u64,
}

pub async fn pin(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(region): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let expected = header_u64(&headers, EXPECTED_VERSION_HEADER)?;
    let b: PinBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body: expected {{\"version\": N}}: {e}")))?;
    let change = c.pin(&region, b.version, expected, &p.name).await?;
    let v = change.changed.then_some(change.rollout_version);
    Ok(noted(Json(change), format!("rollout pin {region} at {}", b.version), v))
}
