//! `/v1/config`: read, plan, apply, history, rollback.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use meridian_sync::protocol::Kind;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, noted};
use super::{ApiError, AppState};
use crate::store::Role;

/// The header naming the version a change was planned against.
pub const EXPECTED_VERSION_HEADER: &str = "x-meridian-expected-version";
/// An optional comment stored with the version.
pub const COMMENT_HEADER: &str = "x-meridian-comment";

pub(super) fn header_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{name}: expected a version number"))),
    }
}

fn body_text(body: bytes::Bytes) -> Result<String, ApiError> {
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the body is not UTF-8"))
}

pub async fn get(State(c): State<AppState>) -> Result<Response, ApiError> {
    let Some((r, valid)) = c.current_config().await? else {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, "NotFound", "no config applied yet"));
    };
    Ok(Json(json!({
        "version": r.version, "hash": r.hash, "yaml": valid.to_yaml(),
        "created_at_ms": r.created_at_ms, "author": r.author, "comment": r.comment,
    }))
    .into_response())
}

pub async fn plan(State(c): State<AppState>, body: bytes::Bytes) -> Result<Response, ApiError> {
    let plan = c.plan(&body_text(body)?).await?;
    Ok(Json(plan).into_response())
}

/// `?regions=r1,r2`: a staged write that only those regions get (the others stay where they are).
#[derive(Deserialize)]
pub struct RegionsQuery {
    #[serde(default)]
    regions: Option<String>,
}

impl RegionsQuery {
    pub fn list(&self) -> Option<Vec<String>> {
        self.regions
            .as_ref()
            .map(|s| s.split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect())
    }
}

/// The audit target of a config write: the kind, and the regions of a staged one.
fn target(what: String, regions: &Option<Vec<String>>) -> String {
    match regions {
        Some(r) => format!("{what} regions {}", r.join(",")),
        None => what,
    }
}

pub async fn apply(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<RegionsQuery>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let expected = header_u64(&headers, EXPECTED_VERSION_HEADER)?.ok_or_else(|| {
        ApiError::bad_request(format!("{EXPECTED_VERSION_HEADER} is required (plan first)"))
    })?;
    let comment = headers.get(COMMENT_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let regions = q.list();
    let applied = c.apply(&body_text(body)?, expected, &p.name, comment, regions.as_deref()).await?;
    let v = applied.changed.then_some(applied.version);
    Ok(noted(Json(applied), target("config".into(), &regions), v))
}

#[derive(Deserialize)]
pub struct KindQuery {
    #[serde(default)]
    kind: Option<Kind>,
}

pub async fn history(State(c): State<AppState>, Query(q): Query<KindQuery>) -> Result<Response, ApiError> {
    let kind = q.kind.unwrap_or(Kind::Config);
    let list: Vec<_> = c
        .store()
        .history(kind)
        .await?
        .into_iter()
        .rev()
        .map(|r| {
            json!({"version": r.version, "hash": r.hash, "created_at_ms": r.created_at_ms,
                   "author": r.author, "comment": r.comment})
        })
        .collect();
    Ok(Json(json!({"kind": kind, "versions": list})).into_response())
}

pub async fn rollback(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(version): Path<u64>,
    Query(q): Query<RegionsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let expected = header_u64(&headers, EXPECTED_VERSION_HEADER)?;
    let regions = q.list();
    let applied = c.rollback(version, expected, &p.name, regions.as_deref()).await?;
    let v = applied.changed.then_some(applied.version);
    Ok(noted(Json(applied), target(format!("config (rollback to {version})"), &regions), v))
}
