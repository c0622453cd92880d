//! The lab control API (JSON over HTTP/1.1, loopback only), served by the supervisor:
//!
//! | request | body | does |
//! |---|---|---|
//! | `GET /status` | | [`LabStatus`], with live readiness of every gateway |
//! | `POST /down` | `{"target": "users@eu-west-1", "mode": "kill"}` | a fault |
//! | `POST /up` | `{"target": "eu-west-1"}` | undoes the faults on the target |
//! | `POST /slow` | `{"target": "users@eu-west-1", "delay": "300ms"}` | sets the relay delay |
//!
//! Answers: 200 `{"message": ...}`, or 400 (bad request or target) / 500 `{"error": ...}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::faults::{Mode, union};
use crate::procs::{Intent, Role};
use crate::status::{
    ComponentStatus, GatewayStatus, InstanceStatus, LabStatus, RegionStatus, ServiceRegion, ServiceStatus,
};
use crate::supervisor::Supervisor;
use crate::{LabError, http1};

pub async fn serve(listener: TcpListener, sup: Arc<Supervisor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let sup = Arc::clone(&sup);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let sup = Arc::clone(&sup);
                async move { Ok::<_, Infallible>(handle(&sup, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    target: String,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    delay: Option<String>,
}

async fn handle(sup: &Supervisor, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/status" {
        return match serde_json::to_value(sup.status().await) {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({"error": e.to_string()})),
        };
    }
    if parts.method != Method::POST {
        return json(StatusCode::NOT_FOUND, serde_json::json!({"error": "unknown path"}));
    }
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let f: FaultRequest = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("bad request body: {e}")}),
            );
        }
    };
    let result = match parts.uri.path() {
        "/down" => sup.down(&f.target, f.mode.unwrap_or(Mode::Kill)).await,
        "/up" => sup.up(&f.target).await,
        "/slow" => match meridian_core::parse_duration(f.delay.as_deref().unwrap_or("")) {
            Ok(d) => sup.slow(&f.target, d).await,
            Err(e) => Err(LabError::Fault(format!("delay: {e}"))),
        },
        _ => return json(StatusCode::NOT_FOUND, serde_json::json!({"error": "unknown path"})),
    };
    match result {
        Ok(message) => json(StatusCode::OK, serde_json::json!({"message": message})),
        Err(e @ LabError::Fault(_)) => {
            json(StatusCode::BAD_REQUEST, serde_json::json!({"error": e.to_string()}))
        }
        Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({"error": e.to_string()})),
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{v}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

fn state_name(intent: Intent, blackholed: bool) -> &'static str {
    match intent {
        Intent::Killed => "killed",
        Intent::Stopped => "stopped",
        Intent::Running if blackholed => "blackholed",
        Intent::Running => "up",
    }
}

impl Supervisor {
    /// Every region and service with its state, and each gateway's live readiness.
    pub async fn status(&self) -> LabStatus {
        let (mut regions, mut services, mut components) = (Vec::new(), Vec::new(), Vec::new());
        let isolated;
        {
            let inner = self.inner.lock().await;
            isolated = !inner.isolated.is_empty();
            let dropped = union(&inner);
            for r in &self.lab.regions {
                let gw = inner
                    .procs
                    .iter()
                    .find(|p| matches!(&p.role, Role::Gateway { region } if *region == r.name));
                let (state, pid) = gw.map_or(("killed", None), |p| {
                    (state_name(p.intent, dropped.contains(&crate::nft::Hole::To(r.public()))), p.pid())
                });
                let g = GatewayStatus {
                    id: r.gateway_id(),
                    public_url: format!("http://{}", r.public()),
                    admin_url: format!("http://{}", r.admin()),
                    peer_address: r.peer().to_string(),
                    state: state.into(),
                    pid,
                    ready: false,
                    ready_detail: String::new(),
                    status: None,
                };
                regions.push(RegionStatus { name: r.name.clone(), state: state.into(), gateways: vec![g] });
            }
            for p in &inner.procs {
                let (what, hole) = match &p.role {
                    Role::ControlPlane => (
                        format!("control plane, admin API http://{}", crate::plane::ADDRESS),
                        crate::nft::Hole::To(crate::plane::ADDRESS),
                    ),
                    Role::Director => (
                        format!(
                            "DNS director, {} (UDP and TCP), HTTP http://{}",
                            crate::dns::DIRECTOR_DNS,
                            crate::dns::DIRECTOR_HTTP
                        ),
                        crate::nft::Hole::To(crate::dns::DIRECTOR_DNS),
                    ),
                    Role::Checker { region } => {
                        let Some(r) = self.lab.region(region) else { continue };
                        let src = crate::dns::checker_source(r);
                        (
                            format!("health checker of {region}, probes from {src}"),
                            crate::nft::Hole::From(src),
                        )
                    }
                    Role::Gateway { .. } | Role::Instance { .. } => continue,
                };
                components.push(ComponentStatus {
                    name: p.name.clone(),
                    what,
                    state: state_name(p.intent, dropped.contains(&hole)).into(),
                    pid: p.pid(),
                });
            }
            for (k, s) in self.lab.services.iter().enumerate() {
                let mut per_region = Vec::new();
                for r in &self.lab.regions {
                    let instances = (0..s.instances)
                        .map(|i| {
                            let name = format!("{}-{}-{}", s.name, r.name, i + 1);
                            let p = inner.procs.iter().find(|p| p.name == name);
                            let relay = inner.relays.iter().find(|e| e.relay.listen == r.endpoint(k, i));
                            InstanceStatus {
                                state: p
                                    .map_or("killed", |p| {
                                        state_name(
                                            p.intent,
                                            dropped.contains(&crate::nft::Hole::To(r.endpoint(k, i))),
                                        )
                                    })
                                    .into(),
                                pid: p.and_then(|p| p.pid()),
                                instance: name,
                                endpoint: r.endpoint(k, i).to_string(),
                                backend: r.backend(k, i).to_string(),
                                delay_ms: relay.map_or(0, |e| e.relay.delay_ms()),
                                delayed_chunks: relay.map_or(0, |e| e.relay.delayed_chunks()),
                            }
                        })
                        .collect();
                    per_region.push(ServiceRegion { region: r.name.clone(), instances });
                }
                services.push(ServiceStatus {
                    name: s.name.clone(),
                    path: s.path.clone(),
                    regions: per_region,
                });
            }
        }
        // Live readiness, all gateways at once and without the lock: a stopped or blackholed
        // gateway takes the whole timeout.
        let probes: Vec<_> = self.lab.regions.iter().map(|r| tokio::spawn(probe(r.admin()))).collect();
        for (region, probe) in regions.iter_mut().zip(probes) {
            if let (Some(g), Ok((ready, detail, status))) = (region.gateways.first_mut(), probe.await) {
                (g.ready, g.ready_detail, g.status) = (ready, detail, status);
            }
        }
        LabStatus {
            control: self.control.to_string(),
            dir: self.generated.dir.display().to_string(),
            isolated,
            regions,
            services,
            components,
        }
    }
}

async fn probe(admin: std::net::SocketAddr) -> (bool, String, Option<serde_json::Value>) {
    const TIMEOUT: Duration = Duration::from_millis(700);
    let (ready, detail) = match http1::Request::get(admin, "/-/ready", TIMEOUT).send().await {
        Ok(r) => (r.status.is_success(), String::from_utf8_lossy(&r.body).trim().to_string()),
        Err(e) => (false, e.to_string()),
    };
    let status = match ready {
        true => match http1::Request::get(admin, "/-/status", TIMEOUT).send().await {
            Ok(r) if r.status.is_success() => serde_json::from_slice(&r.body).ok(),
            _ => None,
        },
        false => None,
    };
    (ready, detail, status)
}
