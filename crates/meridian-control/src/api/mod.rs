//! The admin API and the node endpoints, on one listener.
//!
//! Roles: viewer reads; operator also sets drain switches; admin does everything. Every write
//! (any method but GET) on the admin API is written to the audit log with its status, refused
//! ones included. Node endpoints take node tokens and are not audited (acks are node state).

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::control::Control;

pub mod auth;
pub mod config;
mod controls;
mod drains;
pub mod error;
mod fleet;
mod nodes;
pub mod openapi;
mod rollout;

pub use error::ApiError;

/// Shared by every handler.
pub type AppState = Arc<Control>;

/// Every route as (method, path); the OpenAPI document lists exactly these (a test checks it).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/config"),
    ("post", "/v1/config"),
    ("post", "/v1/config/plan"),
    ("get", "/v1/config/history"),
    ("post", "/v1/config/rollback/{version}"),
    ("get", "/v1/drains"),
    ("get", "/v1/drains/{target}"),
    ("put", "/v1/drains/{target}"),
    ("delete", "/v1/drains/{target}"),
    ("get", "/v1/routing-controls"),
    ("put", "/v1/routing-controls/{name}"),
    ("get", "/v1/status"),
    ("get", "/v1/rollout"),
    ("post", "/v1/rollout/promote"),
    ("put", "/v1/rollout/pins/{region}"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{name}"),
    ("get", "/v1/audit"),
    ("get", "/v1/export"),
    ("post", "/v1/import"),
    ("get", "/v1/nodes/stream"),
    ("post", "/v1/nodes/ack"),
    ("get", "/v1/openapi.json"),
];

/// The router of one control instance.
pub fn router(control: AppState) -> Router {
    let admin = Router::new()
        .route("/v1/config", get(config::get).post(config::apply))
        .route("/v1/config/plan", post(config::plan))
        .route("/v1/config/history", get(config::history))
        .route("/v1/config/rollback/{version}", post(config::rollback))
        .route("/v1/drains", get(drains::list))
        .route("/v1/drains/{target}", put(drains::put).get(drains::get).delete(drains::delete))
        .route("/v1/routing-controls", get(controls::list))
        .route("/v1/routing-controls/{name}", put(controls::put))
        .route("/v1/status", get(fleet::status))
        .route("/v1/rollout", get(rollout::status))
        .route("/v1/rollout/promote", post(rollout::promote))
        .route("/v1/rollout/pins/{region}", put(rollout::pin))
        .route("/v1/tokens", post(fleet::create_token).get(fleet::list_tokens))
        .route("/v1/tokens/{name}", axum::routing::delete(fleet::revoke_token))
        .route("/v1/audit", get(fleet::audit))
        .route("/v1/export", get(fleet::export))
        .route("/v1/import", post(fleet::import))
        .route_layer(axum::middleware::from_fn_with_state(control.clone(), auth::admin));
    Router::new()
        .merge(admin)
        .route(meridian_sync::protocol::STREAM_PATH, get(nodes::stream))
        .route(meridian_sync::protocol::ACK_PATH, post(nodes::ack))
        .route("/v1/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Configs are small; a backup with a long history is the largest body.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(control)
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "UnknownPath", "no such API path").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed on this path")
        .into_response()
}
