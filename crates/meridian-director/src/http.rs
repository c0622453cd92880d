//! The director's HTTP listener (`--http`): checkers' reports in, health and explanations out.
//!
//! - `POST /v1/observations`: a checker's [`Report`] (JSON); 204, or 400 naming the problem;
//!   with report tokens configured, 401 without `Authorization: Bearer` and one of them
//!   ([`crate::report_auth`]).
//! - `GET /v1/health`: per check, the verdict, why, and each vantage point's observation
//!   (fresh or stale, counted or not), whether the director is partitioned, and under
//!   `config` the [`SourceStatus`](crate::SourceStatus).
//! - `GET /v1/status`: the [`SourceStatus`](crate::SourceStatus): where the config comes from,
//!   the versions applied, whether they are stale (no control instance reachable) and since when.
//! - `GET /v1/explain?name=N&type=A&client_subnet=CIDR&resolver=IP[&format=text]`: what
//!   `meridian director explain` prints, as JSON (or the text), with live health.
//! - `GET /metrics`: Prometheus text: `meridian_director_health_partitioned`,
//!   `meridian_director_vantage_points{state="known"|"fresh"}`,
//!   `meridian_director_check_healthy{check}`, `meridian_director_config_serial`,
//!   `meridian_director_config_stale`, `meridian_director_reports_refused_total{reason}`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meridian_health::Report;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::explain::explain_view;
use crate::server::Shared;

pub(crate) async fn serve(listener: TcpListener, state: Arc<Shared>, shutdown: CancellationToken) {
    let app = axum::Router::new()
        .route("/v1/observations", post(observations))
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/explain", get(explain))
        .route("/metrics", get(metrics))
        .with_state(state);
    let stop = async move { shutdown.cancelled().await };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "director http listener stopped with an error");
    }
}

fn problem(status: StatusCode, code: &str, message: impl ToString) -> Response {
    (status, Json(serde_json::json!({"code": code, "message": message.to_string()}))).into_response()
}

fn no_quorum() -> Response {
    problem(StatusCode::NOT_FOUND, "NotFound", "this director answers from a fixed health view, not checkers")
}

async fn observations(State(s): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    // Authentication first: a refused report is not even parsed.
    if let Err(refusal) = s.reports.check(&headers) {
        let mut r = problem(StatusCode::UNAUTHORIZED, "Unauthorized", refusal);
        r.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let Some(q) = &s.quorum else { return no_quorum() };
    let report: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "BadRequest", format!("invalid report: {e}")),
    };
    match q.ingest(report) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, "BadRequest", e),
    }
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    match &s.quorum {
        Some(q) => {
            let mut v = serde_json::to_value(q.status()).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("config".into(), serde_json::to_value(source(&s)).unwrap_or_default());
            }
            Json(v).into_response()
        }
        None => no_quorum(),
    }
}

fn source(s: &Shared) -> crate::SourceStatus {
    s.source.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    Json(source(&s)).into_response()
}

#[derive(Deserialize)]
struct ExplainQuery {
    name: String,
    #[serde(rename = "type", default = "a")]
    record_type: String,
    client_subnet: Option<String>,
    resolver: Option<IpAddr>,
    format: Option<String>,
}

fn a() -> String {
    "A".into()
}

async fn explain(State(s): State<Arc<Shared>>, Query(q): Query<ExplainQuery>) -> Response {
    let view = s.view.load();
    let resolver = q.resolver.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let e = explain_view(
        &view,
        &q.name,
        &q.record_type,
        resolver,
        q.client_subnet.as_deref(),
        s.health.as_ref(),
        s.quorum.as_deref(),
    );
    match e {
        Ok(e) if q.format.as_deref() == Some("text") => e.to_string().into_response(),
        Ok(e) => Json(e).into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, "BadRequest", e),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    if let Some(q) = &s.quorum {
        let st = q.status();
        let _ = write!(
            out,
            "# HELP meridian_director_health_partitioned 1 while most vantage points are silent and the last verdicts are kept.\n\
             # TYPE meridian_director_health_partitioned gauge\n\
             meridian_director_health_partitioned {}\n\
             # HELP meridian_director_vantage_points Checkers known (not silent for forget_after) and fresh now.\n\
             # TYPE meridian_director_vantage_points gauge\n\
             meridian_director_vantage_points{{state=\"known\"}} {}\n\
             meridian_director_vantage_points{{state=\"fresh\"}} {}\n\
             # HELP meridian_director_check_healthy The quorum's verdict per health check (1 healthy).\n\
             # TYPE meridian_director_check_healthy gauge\n",
            u8::from(st.partitioned),
            st.vantage_points_known,
            st.vantage_points_fresh
        );
        for c in &st.checks {
            let _ = writeln!(
                out,
                "meridian_director_check_healthy{{check=\"{}\"}} {}",
                c.name,
                u8::from(c.healthy)
            );
        }
    }
    let _ = writeln!(
        out,
        "# TYPE meridian_director_config_serial gauge\nmeridian_director_config_serial {}",
        s.view.load().serial
    );
    let _ = writeln!(
        out,
        "# HELP meridian_director_config_stale 1 while no control instance is reachable and the director answers on the versions it has.\n\
         # TYPE meridian_director_config_stale gauge\nmeridian_director_config_stale {}",
        u8::from(source(&s).stale)
    );
    let _ = writeln!(
        out,
        "# HELP meridian_director_reports_refused_total Checkers' reports refused; unauthorized: no or a wrong bearer token.\n\
         # TYPE meridian_director_reports_refused_total counter\n\
         meridian_director_reports_refused_total{{reason=\"unauthorized\"}} {}",
        s.reports.refused_unauthorized()
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
