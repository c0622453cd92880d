//! Status, tokens, audit log, export and import.

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, new_token, noted, token_hash};
use super::{ApiError, AppState};
use crate::control::{Backup, ImportMode};
use crate::store::{Role, TokenKind, TokenRecord};

pub async fn status(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(c.status().await?).into_response())
}

/// `POST /v1/tokens` body: `{"name", "role"}` for an admin-API token, or
/// `{"name", "node", "region"}` for a node token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

pub async fn create_token(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let req: NewToken = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if req.name.trim().is_empty() {
        return Err(ApiError::bad_request("name: must not be empty"));
    }
    let kind = match (req.role, req.node, req.region) {
        (Some(role), None, None) => TokenKind::Admin { role },
        (None, Some(node), Some(region)) if !node.is_empty() && !region.is_empty() => {
            TokenKind::Node { node, region }
        }
        _ => return Err(ApiError::bad_request("give either role, or node and region")),
    };
    if c.store().tokens().await?.iter().any(|t| t.name == req.name) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "Conflict",
            format!("a token named {:?} exists; revoke it first", req.name),
        ));
    }
    let token = new_token();
    let record = TokenRecord { name: req.name.clone(), kind: kind.clone(), created_at_ms: c.now_ms() };
    c.store().put_token(token_hash(&token), record).await?;
    let body = json!({"name": req.name, "kind": kind, "token": token});
    Ok(noted((axum::http::StatusCode::CREATED, Json(body)), format!("token {}", req.name), None))
}

pub async fn list_tokens(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    Ok(Json(json!({"tokens": c.store().tokens().await?})).into_response())
}

pub async fn revoke_token(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    match c.store().delete_tokens(name.clone()).await? {
        0 => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NotFound",
            format!("no token named {name:?}"),
        )),
        n => Ok(noted(Json(json!({"revoked": n})), format!("token {name}"), None)),
    }
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
}

pub async fn audit(State(c): State<AppState>, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    let entries = c.store().audit_log(q.limit.unwrap_or(100).min(10_000)).await?;
    Ok(Json(json!({"entries": entries})).into_response())
}

pub async fn export(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    // A backup holds every config ever applied; admins only.
    p.require(Role::Admin)?;
    Ok(Json(c.export().await?).into_response())
}

#[derive(Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    mode: ImportMode,
}

pub async fn import(
    State(c): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ImportQuery>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let backup: Backup =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("backup: {e}")))?;
    let versions = c.import(backup, q.mode, &p.name).await?;
    let v = versions.get(&meridian_sync::protocol::Kind::Config).copied();
    Ok(noted(Json(json!({"versions": versions})), "import", v))
}
