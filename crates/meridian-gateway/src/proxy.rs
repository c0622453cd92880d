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
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use meridian_core::{ErrorCode, RequestId};
use meridian_model::HashOn;

use crate::access_log::{AccessLog, LogRecord, LoggedBody};
use crate::body::GwBody;
use crate::error::{Retry, respond};
use crate::forward::{ForwardCtx, Origin, content_length, forward, forward_upgrade, limit_body};
use crate::forwarded::{self, HopFields, TrustedProxies};
use crate::peer;
use crate::pipeline::{Flow, RequestFacts};
use crate::raw_head::{self, Own};
use crate::region::Drains;
use crate::state::Snapshot;
use crate::timeout::IdleTimeoutBody;

pub use crate::error::X_REQUEST_ID;

/// What every request on this node shares: identity and node-level settings.
pub struct NodeCtx {
    pub node_id: Arc<str>,
    pub region: Arc<str>,
    /// `Via` value this gateway appends, e.g. `1.1 meridian`.
    pub via: HeaderValue,
    pub trusted: TrustedProxies,
    pub access_log: Option<AccessLog>,
    /// Drain switches (admin API; later the control plane).
    pub drains: Drains,
    /// `region` as a header value.
    pub region_header: HeaderValue,
    /// Draining: HTTP/1.1 responses carry `Connection: close`, so clients reconnect elsewhere.
    pub shutdown: meridian_core::Shutdown,
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

impl Proxy {
    pub async fn handle(&self, mut req: Request<GwBody>, conn: &ConnInfo) -> Response<GwBody> {
        let start = Instant::now();
        // 1. The request runs to its end on the version it started with.
        let snap = self.state.load_full();

        // 2. Request id: propagate a sane incoming one, else make one.
        let rid = request_id(req.headers());

        // 3. Route.
        let host = request_host(&req);
        let Some(hit) = snap.router.find(host, req.uri().path(), req.method(), req.headers()) else {
            let resp = respond(ErrorCode::NotFound, "no route matches the request", rid_str(&rid));
            return self.logged(resp, &rid, no_route(), no_route(), None, start, conn.peer.ip());
        };
        let route = &snap.routes[hit.index];

        // 4. Body limit, when the length is announced.
        let max_body = route.max_body_bytes.unwrap_or(conn.max_body_bytes);
        let announced = content_length(req.headers());
        if announced.is_some_and(|n| n > max_body) {
            let resp = respond(ErrorCode::PayloadTooLarge, "request body exceeds the limit", rid_str(&rid));
            return self.logged(resp, &rid, &route.name, &route.service.name, None, start, conn.peer.ip());
        }

        let version = req.version();
        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();

        // 5. Policy chain, request phases.
        let mut facts = RequestFacts::default();
        if let Flow::Respond(r) = route.chain.on_request(&mut parts, &mut facts, rid_str(&rid)) {
            let (mut rp, b) = r.into_parts();
            set_request_id(&mut rp.headers, &rid);
            let resp = Response::from_parts(rp, GwBody::full(b));
            return self.logged(resp, &rid, &route.name, &route.service.name, None, start, conn.peer.ip());
        }

        // 6. Proxy headers and path rewrite. HTTP/2 clients name the host in `:authority`;
        // give it a Host header so forwarding headers and HTTP/1.1 upstreams see it.
        // When the target names an authority (HTTP/2, absolute-form), it wins over any Host
        // header (RFC 9112 §3.2.2, RFC 9113 §8.3.1): routing used it, so the upstream must too.
        if let Some(a) = parts.uri.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            parts.headers.insert(header::HOST, v);
        }
        // Hop headers are believed only from authenticated peers (the peer listener).
        peer::strip_hop_headers(&mut parts.headers);
        let ctx = forwarded::ForwardCtx {
            peer: conn.peer,
            tls: conn.tls,
            trusted: &self.node.trusted,
            via: &self.node.via,
        };
        let (client_ip, hop) =
            forwarded::prepare_request(&mut parts.headers, parts.version, &ctx, upgrade, &rid);
        // This hop's fields travel beside the request's map to the HTTP/1.1 writer, unless
        // something before it reads the map: an upgrade (hyper sends it), or a service that
        // hashes on one of them.
        let hashes_on_hop = matches!(route.service.hash_on(), Some(HashOn::Header(n)) if HopFields::sets(n));
        let hop = if client_upgrade.is_some() || hashes_on_hop {
            hop.apply(&mut parts.headers);
            None
        } else {
            Some(hop)
        };
        if route.strip_prefix && hit.prefix_len > 0 {
            parts.uri = strip_prefix(&parts.uri, hit.prefix_len);
        }

        // 7. Upstream: this region first, then peer regions.
        let body = limit_body(body, announced, max_body);
        let cx = ForwardCtx {
            tries: &route.tries,
            service: &route.service,
            region: &self.node.region,
            drains: &self.node.drains,
            origin: Origin::Client,
            client_ip,
            start,
            region_header: &self.node.region_header,
            pass_through: route.chain.pass_through(&facts),
            hop: hop.as_ref(),
        };
        let result = match client_upgrade {
            Some(on_upgrade) => Box::pin(forward_upgrade(&cx, parts, body, on_upgrade)).await,
            None => forward(&cx, parts, body, None).await,
        };
        let (mut resp, endpoint) = match result {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(request_id = rid_str(&rid), route = %route.name, error = %e, "request failed");
                // Gateway-made errors get the route's response phases too (CORS, so browsers
                // can read the error body).
                let mut resp = respond(e.code, &e.message, rid_str(&rid));
                route.chain.on_response(&facts, resp.headers_mut());
                return self.logged(resp, &rid, &route.name, &route.service.name, None, start, client_ip);
            }
        };

        // 8. Response.
        // (The response is edited in place: taking it apart and putting it together again
        // copies it twice.)
        forwarded::prepare_response(&mut resp, &self.node.via);
        route.chain.on_response(&facts, resp.headers_mut());
        raw_head::set_own_on(&mut resp, Own::RequestId, rid.clone());
        if self.node.shutdown.is_draining()
            && version == Version::HTTP_11
            && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
        {
            // Draining: finish this request, then let the client reconnect (to another node).
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(idle) = route.tries.idle_timeout {
            resp = resp.map(|b| b.wrap(|b| IdleTimeoutBody::new(b, idle)));
        }
        self.logged(resp, &rid, &route.name, &route.service.name, endpoint, start, client_ip)
    }

    /// A request from a peer region's gateway (peer listener, mutual TLS): serve the named
    /// service from this region only, or answer "region unavailable" so the sender moves on.
    pub async fn handle_peer(&self, req: Request<GwBody>, conn: &ConnInfo) -> Response<GwBody> {
        let start = Instant::now();
        let snap = self.state.load_full();
        let rid = request_id(req.headers());
        let service_name = req.headers().get(&peer::SERVICE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(service) = snap.services.get(service_name) else {
            return region_unavailable(
                &rid,
                &format!("unknown service {service_name:?} in this region's config"),
            );
        };
        let Some(slot) = service.acquire_peer() else {
            return region_unavailable(&rid, "peer request limit reached");
        };
        if !crate::forward::serves_locally(service, &self.node.region, &self.node.drains, Instant::now()) {
            return region_unavailable(&rid, "the service cannot be served in this region");
        }
        let client_ip = req
            .headers()
            .get(&peer::CLIENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<IpAddr>().ok())
            .unwrap_or(conn.peer.ip());
        let (mut parts, body) = req.into_parts();
        peer::strip_hop_headers(&mut parts.headers);
        set_request_id(&mut parts.headers, &rid);
        let cx = ForwardCtx {
            tries: &service.peer_tries,
            service,
            region: &self.node.region,
            drains: &self.node.drains,
            origin: Origin::Peer,
            client_ip,
            start,
            region_header: &self.node.region_header,
            pass_through: None,
            hop: None,
        };
        let body = limit_body(body, content_length(&parts.headers), u64::MAX);
        let resp = match forward(&cx, parts, body, Some(slot)).await {
            Ok((mut resp, _)) => {
                forwarded::prepare_response(&mut resp, &self.node.via);
                resp
            }
            // Every local try failed: let the sender try the next region.
            Err(e) if e.retry == Retry::Safe || e.code == ErrorCode::ServiceUnavailable => {
                region_unavailable(&rid, &e.message)
            }
            Err(e) => respond(e.code, &e.message, rid_str(&rid)),
        };
        static PEER_ROUTE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let route = PEER_ROUTE.get_or_init(|| Arc::from("(peer)"));
        self.logged(resp, &rid, route, &service.name, None, start, client_ip)
    }

    /// 9. Access log, written when the response body ends (only when enabled).
    #[allow(clippy::too_many_arguments)]
    fn logged(
        &self,
        resp: Response<GwBody>,
        rid: &HeaderValue,
        route: &Arc<str>,
        service: &Arc<str>,
        endpoint: Option<SocketAddr>,
        start: Instant,
        client: IpAddr,
    ) -> Response<GwBody> {
        let Some(log) = &self.node.access_log else { return resp };
        let rec = LogRecord {
            request_id: rid.clone(),
            route: Arc::clone(route),
            service: Arc::clone(service),
            region: self.node.region.clone(),
            endpoint,
            client,
            status: resp.status().as_u16(),
            start,
            headers_ms: start.elapsed().as_secs_f64() * 1000.0,
        };
        let log = log.clone();
        resp.map(|b| b.wrap(|b| LoggedBody::new(b, rec, log)))
    }
}

/// The route and service name logged for requests that matched no route.
fn no_route() -> &'static Arc<str> {
    static NONE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::from("-"))
}

/// 503 with the peer hop's "region unavailable" marker: the sender tries its next region.
fn region_unavailable(rid: &HeaderValue, why: &str) -> Response<GwBody> {
    let mut r = respond(ErrorCode::ServiceUnavailable, why, rid_str(rid));
    r.headers_mut().insert(peer::REGION_UNAVAILABLE, HeaderValue::from_static("1"));
    r
}

/// The host the client asked for, without port, from the URI (HTTP/2, absolute-form) or Host.
fn request_host<B>(req: &Request<B>) -> &str {
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
    // By bytes: `rfind(':')` here was an out-of-line searcher call per request.
    match h.bytes().rposition(|b| b == b':') {
        Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
        _ => h,
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

fn set_request_id(h: &mut http::HeaderMap, rid: &HeaderValue) {
    h.insert(X_REQUEST_ID, rid.clone());
}

/// The request id: a sane incoming `X-Request-Id` as it is, else a fresh one. A fresh one is
/// one reference-counted allocation: the upstream request, the response and the log clone it
/// without copying (a value made from a `Vec` would allocate again on its first clone).
fn request_id(h: &http::HeaderMap) -> HeaderValue {
    if let Some(v) = h.get(&X_REQUEST_ID)
        && RequestId::is_valid(v.as_bytes())
    {
        return v.clone();
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(RequestId::generate_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn rid_str(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("-")
}

fn strip_prefix(uri: &Uri, n: usize) -> Uri {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let rest = pq.get(n..).unwrap_or("");
    let new = if rest.starts_with('/') { rest.to_string() } else { format!("/{rest}") };
    let mut p = uri.clone().into_parts();
    p.path_and_query = new.parse().ok();
    Uri::from_parts(p).unwrap_or_else(|_| uri.clone())
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
