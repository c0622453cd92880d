//! The life of a request, top to bottom. Read this file as the table of contents of the
//! data plane (docs/architecture.md draws the same path):
//!
//! 1. snapshot — the config version this request runs on (kept to the end)
//! 2. request id (framing conflicts never get here: hyper applies RFC 9112 §6.1, reading
//!    Transfer-Encoding over Content-Length and closing the connection after the response)
//! 3. router — host, path, method, headers → route
//! 4. body limit (413)
//! 5. policy chain, request phases (admission → authn → authz → rate limit → cache → transform)
//! 6. proxy headers (hop-by-hop, X-Forwarded-*, Forwarded, Via), path rewrite
//! 7. upstream: concurrency slot, endpoint pick, pooled connection, tries within timeouts,
//!    retry budget and replay limits ([`forward`])
//! 8. response: proxy headers, policy chain response phases, request id
//! 9. access log when the response body ends

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use meridian_core::{ErrorCode, RequestId};

use crate::access_log::{AccessLog, LogRecord, LoggedBody};
use crate::body::GwBody;
use crate::error::{ProxyError, Retry, respond};
use crate::forwarded::{self, ForwardCtx, TrustedProxies};
use crate::pipeline::{Flow, RequestFacts};
use crate::retry::is_idempotent;
use crate::state::{RouteRuntime, Snapshot};
use crate::timeout::{Activity, ActivityIo, IdleTimeoutBody};
use crate::upstream::lb::hash_key;
use crate::upstream::pool::{self, PoolReturn, Sender};
use crate::upstream::response_body::{InFlight, UpstreamBody};

pub use crate::error::X_REQUEST_ID;

/// What every request on this node shares: identity and node-level settings.
pub struct NodeCtx {
    pub node_id: Arc<str>,
    pub region: Arc<str>,
    /// `Via` value this gateway appends, e.g. `1.1 meridian`.
    pub via: HeaderValue,
    pub trusted: TrustedProxies,
    pub access_log: Option<AccessLog>,
}

/// What a request knows about the connection it came on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// The listener's body limit, unless the route sets its own.
    pub max_body_bytes: u64,
}

/// The proxy: the current snapshot (swapped by reloads) and the node context.
#[derive(Clone)]
pub struct Proxy {
    pub state: Arc<ArcSwap<Snapshot>>,
    pub node: Arc<NodeCtx>,
}

/// Most tries of one request we track (first try plus retries).
const MAX_TRIED: usize = 8;

impl Proxy {
    pub async fn handle(&self, mut req: Request<Incoming>, conn: &ConnInfo) -> Response<GwBody> {
        let start = Instant::now();
        // 1. The request runs to its end on the version it started with.
        let snap = self.state.load_full();

        // 2. Request id: propagate a sane incoming one, else make one.
        let rid = req
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| RequestId::from_incoming(v.as_bytes()))
            .unwrap_or_else(RequestId::generate);

        // 3. Route.
        let host = request_host(&req);
        let Some(hit) = snap.router.find(host, req.uri().path(), req.method(), req.headers()) else {
            return respond(ErrorCode::NotFound, "no route matches the request", rid.as_str());
        };
        let route = &snap.routes[hit.index];

        // 4. Body limit, when the length is announced.
        let max_body = route.max_body_bytes.unwrap_or(conn.max_body_bytes);
        let announced = content_length(req.headers());
        if announced.is_some_and(|n| n > max_body) {
            return respond(ErrorCode::PayloadTooLarge, "request body exceeds the limit", rid.as_str());
        }

        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();

        // 5. Policy chain, request phases.
        let mut facts = RequestFacts::default();
        if let Flow::Respond(r) = route.chain.on_request(&mut parts, &mut facts, rid.as_str()) {
            let (mut rp, b) = r.into_parts();
            set_request_id(&mut rp.headers, &rid);
            return Response::from_parts(rp, GwBody::full(b));
        }

        // 6. Proxy headers and path rewrite. HTTP/2 clients name the host in `:authority`;
        // give it a Host header so forwarding headers and HTTP/1.1 upstreams see it.
        if !parts.headers.contains_key(header::HOST)
            && let Some(a) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        let ctx =
            ForwardCtx { peer: conn.peer, tls: conn.tls, trusted: &self.node.trusted, via: &self.node.via };
        let client_ip = forwarded::prepare_request(&mut parts.headers, parts.version, &ctx, upgrade);
        set_request_id(&mut parts.headers, &rid);
        if route.strip_prefix && hit.prefix_len > 0 {
            parts.uri = strip_prefix(&parts.uri, hit.prefix_len);
        }

        // 7. Upstream.
        let body = limit_body(body, announced, max_body);
        let result = match client_upgrade {
            Some(on_upgrade) => forward_upgrade(route, parts, body, on_upgrade).await,
            None => forward(route, parts, body, client_ip, start).await,
        };
        let (mut resp, endpoint) = match result {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(request_id = %rid, route = %route.name, error = %e, "request failed");
                let resp = respond(e.code, &e.message, rid.as_str());
                return self.logged(resp, &rid, route, None, start, conn, &snap);
            }
        };

        // 8. Response.
        let status = resp.status();
        let (mut rp, b) = resp.into_parts();
        forwarded::prepare_response(&mut rp.headers, status, &self.node.via);
        route.chain.on_response(&facts, &mut rp);
        set_request_id(&mut rp.headers, &rid);
        resp = Response::from_parts(rp, b);
        if let Some(idle) = route.idle_timeout {
            resp = resp.map(|b| GwBody::boxed(IdleTimeoutBody::new(b, idle)));
        }
        self.logged(resp, &rid, route, endpoint, start, conn, &snap)
    }

    /// 9. Access log, written when the response body ends (only when enabled).
    #[allow(clippy::too_many_arguments)]
    fn logged(
        &self,
        resp: Response<GwBody>,
        rid: &RequestId,
        route: &RouteRuntime,
        endpoint: Option<SocketAddr>,
        start: Instant,
        conn: &ConnInfo,
        _snap: &Arc<Snapshot>,
    ) -> Response<GwBody> {
        let Some(log) = &self.node.access_log else { return resp };
        let rec = LogRecord {
            request_id: rid.as_str().to_string(),
            route: route.name.clone(),
            service: route.service.name.clone(),
            region: self.node.region.clone(),
            endpoint,
            client: conn.peer,
            status: resp.status().as_u16(),
            start,
            headers_ms: start.elapsed().as_secs_f64() * 1000.0,
        };
        let log = log.clone();
        resp.map(|b| GwBody::boxed(LoggedBody::new(b, rec, log)))
    }
}

/// The host the client asked for, without port, from the URI (HTTP/2, absolute-form) or Host.
fn request_host(req: &Request<Incoming>) -> &str {
    if let Some(h) = req.uri().host() {
        return h;
    }
    let Some(h) = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()) else { return "" };
    strip_port(h)
}

fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rfind(':') {
        Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
        _ => h,
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

fn set_request_id(h: &mut http::HeaderMap, rid: &RequestId) {
    if let Ok(v) = HeaderValue::from_str(rid.as_str()) {
        h.insert(X_REQUEST_ID, v);
    }
}

fn strip_prefix(uri: &Uri, n: usize) -> Uri {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let rest = pq.get(n..).unwrap_or("");
    let new = if rest.starts_with('/') { rest.to_string() } else { format!("/{rest}") };
    let mut p = uri.clone().into_parts();
    p.path_and_query = new.parse().ok();
    Uri::from_parts(p).unwrap_or_else(|_| uri.clone())
}

/// The request body as the tries see it.
enum ReqBody {
    /// Held in memory (absent or small): every try gets a copy.
    Replayable(Option<Bytes>),
    /// Streamed: only the first try can send it.
    Stream(Option<GwBody>),
}

impl ReqBody {
    fn take(&mut self) -> Option<GwBody> {
        match self {
            ReqBody::Replayable(None) => Some(GwBody::Empty),
            ReqBody::Replayable(Some(b)) => Some(GwBody::Full(Some(b.clone()))),
            ReqBody::Stream(b) => b.take(),
        }
    }
}

/// Enforces the body limit on bodies of unannounced length (chunked, HTTP/2 without length).
fn limit_body(body: Incoming, announced: Option<u64>, max: u64) -> GwBody {
    use http_body::Body as _;
    if body.is_end_stream() || announced.is_some() {
        // hyper enforces an announced Content-Length exactly.
        return GwBody::Incoming(body);
    }
    GwBody::boxed(http_body_util::Limited::new(body, max as usize))
}

/// Sends the request to the route's service: picks endpoints, tries within the timeouts, and
/// retries what is safe within the budget. Returns the response and the endpoint that gave it.
async fn forward(
    route: &RouteRuntime,
    parts: http::request::Parts,
    body: GwBody,
    client_ip: IpAddr,
    start: Instant,
) -> Result<(Response<GwBody>, Option<SocketAddr>), ProxyError> {
    let service = &route.service;
    if service.endpoints.is_empty() {
        return Err(ProxyError::internal(
            ErrorCode::ServiceUnavailable,
            format!("service {} has no endpoints in region {}", service.name, service.region),
        ));
    }
    let Some(slot) = service.acquire() else {
        return Err(ProxyError::internal(
            ErrorCode::ServiceUnavailable,
            format!("service {} is at its concurrency limit", service.name),
        ));
    };

    let may_repeat =
        route.retry.attempts > 0 && (route.retry.allow_non_idempotent || is_idempotent(&parts.method));
    let mut body = if http_body::Body::is_end_stream(&body) {
        ReqBody::Replayable(None)
    } else if may_repeat
        && content_length(&parts.headers).is_some_and(|n| n <= route.retry.max_replay_body_bytes)
    {
        match body.collect().await {
            Ok(c) => ReqBody::Replayable(Some(c.to_bytes())),
            Err(e) => {
                return Err(ProxyError::downstream(
                    ErrorCode::BadRequest,
                    format!("reading the request body failed: {e}"),
                ));
            }
        }
    } else {
        ReqBody::Stream(Some(body))
    };

    let now = Instant::now();
    route.budget.deposit(now);
    let deadline = route.request_timeout.map(|d| start + d);
    let hash = service.hash_on().and_then(|h| hash_key(h, &parts.headers, client_ip));
    let mut tried = [usize::MAX; MAX_TRIED];
    let mut n_tried = 0usize;
    let max_tries = (route.retry.attempts as usize + 1).min(MAX_TRIED);
    let mut slot = Some(slot);
    let mut last_err: Option<ProxyError> = None;

    while n_tried < max_tries {
        if n_tried > 0 && !route.budget.try_withdraw(Instant::now()) {
            break;
        }
        // A fresh pick each try; once every endpoint was tried, allow repeats.
        let idx = match service.pick(hash, &tried[..n_tried]) {
            Some(i) => i,
            None => match service.pick(hash, &[]) {
                Some(i) => i,
                None => break,
            },
        };
        tried[n_tried] = idx;
        n_tried += 1;
        let ep = &service.endpoints[idx];

        let Some(remaining) = remaining(deadline) else {
            last_err = Some(timeout_error("request", route.request_timeout));
            break;
        };
        let in_flight = InFlight::new(Arc::clone(ep));
        let mut conn = match ep.checkout(route.connect_timeout.min(remaining)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(endpoint = %ep.addr.configured, error = %e, "connect failed");
                last_err = Some(e);
                continue; // nothing was sent: safe for any method
            }
        };
        let Some(req_body) = body.take() else { break };
        let req = upstream_request(&parts, req_body, conn_is_h2(&conn));
        let per_try = route.per_try_timeout.map_or(remaining, |t| t.min(remaining));
        let sent = tokio::time::timeout(per_try, pool::send(&mut conn, req)).await;
        let err = match sent {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let more = n_tried < max_tries && may_repeat && matches!(body, ReqBody::Replayable(_));
                if more && route.retry_on_status(status) {
                    last_err = Some(ProxyError::new(
                        status_code(status),
                        crate::error::Source::Upstream,
                        Retry::IfIdempotent,
                        format!("upstream answered {status}"),
                    ));
                    // The response is dropped unread, which closes its connection.
                    drop(resp);
                    drop(in_flight);
                    continue;
                }
                let ret = match conn.sender {
                    Sender::H1(s) => Some(PoolReturn { sender: s, pool: Arc::clone(ep) }),
                    Sender::H2(_) => None,
                };
                let sa = ep.addr.addrs().first().copied();
                let resp = resp.map(|b| GwBody::Upstream(UpstreamBody::new(b, ret, in_flight, slot.take())));
                return Ok((resp, sa));
            }
            Ok(Err(e)) => e,
            Err(_) => timeout_error("per-try", Some(per_try)),
        };
        tracing::debug!(endpoint = %ep.addr.configured, error = %err, "try failed");
        let retry_ok = match err.retry {
            Retry::Safe => true,
            Retry::IfIdempotent => may_repeat,
            Retry::No => false,
        };
        last_err = Some(err);
        if !retry_ok {
            break;
        }
    }
    Err(last_err
        .unwrap_or_else(|| ProxyError::internal(ErrorCode::ServiceUnavailable, "no endpoint available")))
}

fn conn_is_h2(c: &pool::Conn) -> bool {
    matches!(c.sender, Sender::H2(_))
}

fn status_code(s: u16) -> ErrorCode {
    match s {
        504 => ErrorCode::GatewayTimeout,
        503 => ErrorCode::ServiceUnavailable,
        _ => ErrorCode::BadGateway,
    }
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        None => Some(Duration::from_secs(24 * 3600)),
        Some(d) => d.checked_duration_since(Instant::now()).filter(|r| !r.is_zero()),
    }
}

fn timeout_error(which: &str, d: Option<Duration>) -> ProxyError {
    ProxyError::new(
        ErrorCode::GatewayTimeout,
        crate::error::Source::Upstream,
        Retry::IfIdempotent,
        format!("upstream {which} timeout ({:?}) elapsed", d.unwrap_or_default()),
    )
}

/// The request as an endpoint receives it: origin-form with Host for HTTP/1.1, absolute URI
/// (`:authority`) for HTTP/2.
fn upstream_request(parts: &http::request::Parts, body: GwBody, h2: bool) -> Request<GwBody> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.headers_mut() = parts.headers.clone();
    let pq = parts.uri.path_and_query().cloned();
    let authority = parts.uri.authority().cloned().or_else(|| {
        parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).and_then(|h| h.parse().ok())
    });
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        let mut up = http::uri::Parts::default();
        up.scheme = Some(http::uri::Scheme::HTTP);
        up.authority = authority.or_else(|| Some(http::uri::Authority::from_static("upstream")));
        up.path_and_query = pq.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        *req.uri_mut() = Uri::from_parts(up).unwrap_or_default();
        req.headers_mut().remove(header::HOST);
    } else {
        *req.version_mut() = Version::HTTP_11;
        if let Some(pq) = pq {
            *req.uri_mut() = Uri::from(pq);
        }
        if !req.headers().contains_key(header::HOST)
            && let Some(a) = authority
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    req
}

/// WebSocket and other HTTP/1.1 upgrades: a fresh connection, no retries, then bytes both ways.
async fn forward_upgrade(
    route: &RouteRuntime,
    parts: http::request::Parts,
    body: GwBody,
    client: hyper::upgrade::OnUpgrade,
) -> Result<(Response<GwBody>, Option<SocketAddr>), ProxyError> {
    let service = &route.service;
    let Some(idx) = service.pick(None, &[]) else {
        return Err(ProxyError::internal(
            ErrorCode::ServiceUnavailable,
            format!("service {} has no endpoints in region {}", service.name, service.region),
        ));
    };
    let ep = &service.endpoints[idx];
    let mut sender = ep.connect_for_upgrade(route.connect_timeout).await?;
    let req = upstream_request(&parts, body, false);
    let per_try = route.per_try_timeout.unwrap_or(Duration::from_secs(24 * 3600));
    let mut resp = match tokio::time::timeout(per_try, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(pool::classify(e, false)),
        Err(_) => return Err(timeout_error("per-try", Some(per_try))),
    };
    let sa = ep.addr.addrs().first().copied();
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok((resp.map(GwBody::Incoming), sa));
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let idle = route.idle_timeout;
    tokio::spawn(async move {
        let (c, u) = match tokio::join!(client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            _ => return,
        };
        let activity = Activity::new();
        let mut c = ActivityIo::new(hyper_util::rt::TokioIo::new(c), activity.clone());
        let mut u = hyper_util::rt::TokioIo::new(u);
        let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
        match idle {
            // Tunnels live as long as both sides want unless an idle timeout is configured.
            None => {
                let _ = copy.await;
            }
            Some(idle) => {
                tokio::select! {
                    _ = copy => {}
                    _ = activity.idle_for(idle) => tracing::debug!("upgraded connection idle; closing"),
                }
            }
        }
    });
    Ok((resp.map(|_| GwBody::Empty), sa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
    }

    #[test]
    fn strip_prefix_keeps_query_and_leading_slash() {
        let u: Uri = "/api/users?x=1".parse().unwrap();
        assert_eq!(strip_prefix(&u, 4).to_string(), "/users?x=1");
        let u: Uri = "/api".parse().unwrap();
        assert_eq!(strip_prefix(&u, 4).to_string(), "/");
    }
}
