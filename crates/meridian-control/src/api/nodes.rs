//! The node side of `meridian_sync::protocol`: the push stream and acks, authenticated by node
//! tokens bound to a node id and region.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use meridian_sync::protocol::{
    self, Ack, BINARY_VERSION_HEADER, FEATURES_HEADER, NODE_HEADER, PING_INTERVAL, Push, REGION_HEADER,
    ROLE_HEADER, Snapshot,
};
use tokio::sync::mpsc;

use super::auth::resolve;
use super::{ApiError, AppState};
use crate::control::{SnapshotRx, StreamGuard};
use crate::store::{NodeRecord, TokenKind};

/// The node id and region a node token is bound to.
async fn node_identity(c: &AppState, headers: &HeaderMap) -> Result<(String, String), ApiError> {
    match resolve(c, headers).await?.kind {
        TokenKind::Node { node, region } => Ok((node, region)),
        TokenKind::Admin { .. } => Err(ApiError::forbidden("not a node token")),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim()
}

pub async fn stream(State(c): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (node, region) = node_identity(&c, &headers).await?;
    if header(&headers, NODE_HEADER) != node || header(&headers, REGION_HEADER) != region {
        return Err(ApiError::forbidden(format!("this token belongs to node {node:?} in region {region:?}")));
    }
    let role = match header(&headers, ROLE_HEADER) {
        "" => "gateway",
        r => r,
    };
    let hello = NodeRecord {
        id: node.clone(),
        region,
        role: role.to_string(),
        binary_version: header(&headers, BINARY_VERSION_HEADER).to_string(),
        features: header(&headers, FEATURES_HEADER)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        ..Default::default()
    };
    c.node_seen(hello.clone()).await?;
    let guard = c.stream_opened(&node);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(pump(c, hello, guard, tx));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-store")], body)
        .into_response())
}

/// Writes the current snapshot of every kind, then every new version and a ping every
/// `PING_INTERVAL`, until the node goes away. Config follows the node's region target.
async fn pump(c: AppState, hello: NodeRecord, _guard: StreamGuard, tx: mpsc::Sender<Bytes>) {
    let (snap_tx, mut snap_rx) = mpsc::channel::<Arc<Snapshot>>(8);
    for kind in protocol::Kind::ALL {
        // Only the kinds the node applies (its features): a gateway never gets routing controls.
        if !protocol::wants(&hello.features, kind) {
            continue;
        }
        let Some(mut rx) = c.subscribe(kind) else { continue };
        let snap_tx = snap_tx.clone();
        if kind == protocol::Kind::Config {
            let (c, region) = (c.clone(), hello.region.clone());
            tokio::spawn(async move { follow_region(c, region, rx, snap_tx).await });
            continue;
        }
        tokio::spawn(async move {
            loop {
                let cur = rx.borrow_and_update().clone();
                if let Some(s) = cur
                    && snap_tx.send(s).await.is_err()
                {
                    return;
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = snap_tx.closed() => return,
                }
            }
        });
    }
    drop(snap_tx);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    loop {
        let push = tokio::select! {
            _ = tx.closed() => return,
            s = snap_rx.recv() => match s {
                Some(s) => Push::Snapshot((*s).clone()),
                None => return,
            },
            _ = ping.tick() => {
                if let Err(e) = c.node_seen(hello.clone()).await {
                    tracing::warn!(error = %e, node = %hello.id, "cannot record a node's lease");
                }
                Push::Ping
            }
        };
        if tx.send(Bytes::from(protocol::encode_line(&push))).await.is_err() {
            return;
        }
    }
}

/// Sends a node the config version its region's rollout target names: the newest, or the
/// version its region is pinned at; again whenever the newest version or the rollout moves the
/// target forward (never back: a node refuses a lower version).
async fn follow_region(
    c: AppState,
    region: String,
    mut cfg: SnapshotRx,
    snap_tx: mpsc::Sender<Arc<Snapshot>>,
) {
    let mut ro = c.subscribe_rollout();
    let mut sent = 0;
    loop {
        // The hub before the rollout: a pin is published before the version it holds back, so
        // whatever version is read here, the rollout read after it already holds it back.
        let latest = cfg.borrow_and_update().clone();
        let pins = ro.borrow_and_update().clone();
        let mut retry = false;
        if let Some(latest) = latest {
            let target = pins.target(&region, latest.version);
            if target > sent {
                let snap =
                    if target == latest.version { Ok(Some(latest)) } else { c.config_snapshot(target).await };
                match snap {
                    Ok(Some(s)) => {
                        if snap_tx.send(s).await.is_err() {
                            return;
                        }
                        sent = target;
                    }
                    Ok(None) => {
                        tracing::warn!(region, version = target, "pinned config version not in the store")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, region, version = target, "cannot read a pinned config version; retrying");
                        retry = true;
                    }
                }
            }
        }
        tokio::select! {
            r = cfg.changed() => if r.is_err() { return },
            r = ro.changed() => if r.is_err() { return },
            _ = snap_tx.closed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if retry => {}
        }
    }
}

pub async fn ack(State(c): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let (node, region) = node_identity(&c, &headers).await?;
    let ack: Ack = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("ack: {e}")))?;
    if ack.node != node || ack.region != region {
        return Err(ApiError::forbidden(format!("this token belongs to node {node:?} in region {region:?}")));
    }
    if !ack.ok {
        tracing::warn!(node = %node, kind = ack.kind.as_str(), version = ack.version,
            error = ack.error.as_deref().unwrap_or(""), "node refused a snapshot");
    }
    c.node_ack(ack).await?;
    Ok((StatusCode::OK, Json(serde_json::json!({"recorded": true}))).into_response())
}
