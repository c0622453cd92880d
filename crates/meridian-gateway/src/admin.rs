//! The admin endpoints of a gateway: liveness, readiness, and the running config version.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_core::Shutdown;
use tokio::net::TcpListener;

use crate::access_log::humantime_rfc3339;
use crate::body::GwBody;
use crate::proxy::Proxy;
use crate::region::DrainTarget;

/// What the reloader reports about config versions, for `/-/config`.
#[derive(Debug, Default, Clone)]
pub struct ConfigStatus {
    pub source: String,
    pub hash: Option<String>,
    pub loaded_at: Option<SystemTime>,
    pub reloads_ok: u64,
    pub reloads_rejected: u64,
    pub last_error: Option<String>,
    /// The running config came from the last-known-good snapshot, not from the source.
    pub from_snapshot: bool,
    /// Since when the running state may be out of date: the control plane has been unreachable
    /// since then, or (booted from the snapshot) the snapshot was saved then.
    pub stale_since: Option<SystemTime>,
    /// Version running per kind of pushed state (control source only).
    pub versions: std::collections::BTreeMap<String, u64>,
    /// The deployment the pushed state belongs to (control source only).
    pub deployment: Option<String>,
}

pub struct AdminState {
    pub node_id: String,
    pub region: String,
    pub shutdown: Shutdown,
    pub config: Arc<Mutex<ConfigStatus>>,
    /// The data plane, for status, per-service health and drain switches.
    pub proxy: Proxy,
}

pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let stop = state.shutdown.clone();
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.stopping() => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&state, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<GwBody> {
    let path = req.uri().path();
    if let Some(target) = path.strip_prefix("/-/drains/") {
        return drain(state, req.method(), target);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({"code": "MethodNotAllowed"}));
    }
    if let Some(service) = path.strip_prefix("/-/health/services/") {
        return service_health(state, service);
    }
    match path {
        "/-/drains" => {
            json(StatusCode::OK, serde_json::to_value(state.proxy.node.drains.snapshot()).unwrap_or_default())
        }
        "/-/status" => json(StatusCode::OK, crate::status::node_status(&state.proxy)),
        "/-/live" => json(StatusCode::OK, serde_json::json!({"status": "live"})),
        "/-/ready" => {
            let loaded = state.config.lock().map(|c| c.hash.is_some()).unwrap_or(false);
            if state.shutdown.is_draining() {
                json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "draining"}))
            } else if !loaded {
                json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"status": "no config"}))
            } else {
                json(StatusCode::OK, serde_json::json!({"status": "ready"}))
            }
        }
        "/-/config" => {
            let c = state.config.lock().map(|c| c.clone()).unwrap_or_default();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "node": state.node_id,
                    "region": state.region,
                    "source": c.source,
                    "hash": c.hash,
                    "loaded_at": c.loaded_at.map(humantime_rfc3339),
                    "from_snapshot": c.from_snapshot,
                    "stale": c.stale_since.is_some(),
                    "stale_since": c.stale_since.map(humantime_rfc3339),
                    "versions": c.versions,
                    "deployment": c.deployment,
                    "reloads_ok": c.reloads_ok,
                    "reloads_rejected": c.reloads_rejected,
                    "last_error": c.last_error,
                }),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": "NotFound", "message": "unknown admin path"}),
        ),
    }
}

/// `PUT /-/drains/{REGION|SERVICE@REGION}` drains, `DELETE` undrains.
fn drain(state: &AdminState, method: &Method, target: &str) -> Response<GwBody> {
    let drained = match *method {
        Method::PUT | Method::POST => true,
        Method::DELETE => false,
        _ => return json(StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({"code": "MethodNotAllowed"})),
    };
    match DrainTarget::parse(target) {
        Ok(t) => {
            let changed = state.proxy.node.drains.set(&t, drained);
            json(
                StatusCode::OK,
                serde_json::json!({"target": t.to_string(), "drained": drained, "changed": changed}),
            )
        }
        Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({"code": "BadRequest", "message": e})),
    }
}

/// Whether this region can serve `service` itself — never answered by failing over, so
/// checkers in other regions see the truth.
fn service_health(state: &AdminState, service: &str) -> Response<GwBody> {
    let snap = state.proxy.state.load();
    let Some(svc) = snap.services.get(service) else {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": "NotFound", "message": format!("unknown service {service:?}")}),
        );
    };
    let node = &state.proxy.node;
    let serves = crate::forward::serves_locally(svc, &node.region, &node.drains, std::time::Instant::now());
    let code = if serves { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(code, crate::status::service_status(svc, node))
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<GwBody> {
    let mut r = Response::new(GwBody::full(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}
