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

use crate::access_log::{AccessLog, LogNames, LogRecord, LoggedBody};
use crate::body::GwBody;
use crate::error::{Retry, respond};
use crate::forward::{
    ForwardCtx, Origin, content_length, forward, forward_upgrade, length_value, limit_body,
};
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
    /// Names in the access log lines of requests that matched no route.
    pub no_route_log: LogNames,
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
        let seen = Seen::scan(req.headers());
        let rid = request_id(seen.request_id);

        // 3. Route: the host the client asked for, without port, from the URI (HTTP/2,
        // absolute-form) or Host.
        let host = match req.uri().host() {
            Some(h) => h,
            None => seen.host.and_then(|v| v.to_str().ok()).map_or("", strip_port),
        };
        let Some(hit) = snap.router.find(host, req.uri().path(), req.method(), req.headers()) else {
            let resp = respond(ErrorCode::NotFound, "no route matches the request", rid_str(&rid));
            return self.logged(resp, &rid, &self.node.no_route_log, None, start, conn.peer.ip());
        };
        let route = &snap.routes[hit.index];

        // 4. Body limit, when the length is announced.
        let max_body = route.max_body_bytes.unwrap_or(conn.max_body_bytes);
        let announced = seen.content_length.and_then(length_value);
        if announced.is_some_and(|n| n > max_body) {
            let resp = respond(ErrorCode::PayloadTooLarge, "request body exceeds the limit", rid_str(&rid));
            return self.logged(resp, &rid, &route.log_names, None, start, conn.peer.ip());
        }

        let version = req.version();
        let upgrade = version == Version::HTTP_11 && seen.upgrade && seen.connection_upgrade;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();

        // 5. Policy chain, request phases.
        let mut facts = RequestFacts::default();
        if let Flow::Respond(r) = route.chain.on_request(&mut parts, &mut facts, rid_str(&rid)) {
            let (mut rp, b) = r.into_parts();
            set_request_id(&mut rp.headers, &rid);
            let resp = Response::from_parts(rp, GwBody::full(b));
            return self.logged(resp, &rid, &route.log_names, None, start, conn.peer.ip());
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
            // An HTTP/2 client's answer goes out through hyper, which writes the map only: the
            // endpoint's fields go straight into it rather than aside and then into it.
            pass_through: route.chain.pass_through(&facts).filter(|_| version != Version::HTTP_2),
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
                return self.logged(resp, &rid, &route.log_names, None, start, client_ip);
            }
        };

        // 8. Response.
        // (The response is edited in place: taking it apart and putting it together again
        // copies it twice.)
        forwarded::prepare_response(&mut resp, &self.node.via);
        route.chain.on_response(&facts, resp.headers_mut());
        raw_head::set_own(&mut resp, Own::RequestId, rid.clone());
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
        self.logged(resp, &rid, &route.log_names, endpoint, start, client_ip)
    }

    /// A request from a peer region's gateway (peer listener, mutual TLS): serve the named
    /// service from this region only, or answer "region unavailable" so the sender moves on.
    pub async fn handle_peer(&self, req: Request<GwBody>, conn: &ConnInfo) -> Response<GwBody> {
        let start = Instant::now();
        let snap = self.state.load_full();
        let rid = request_id(req.headers().get(&X_REQUEST_ID));
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
        self.logged(resp, &rid, &service.peer_log_names, None, start, client_ip)
    }

    /// 9. Access log, written when the response body ends (only when enabled).
    #[allow(clippy::too_many_arguments)]
    fn logged(
        &self,
        resp: Response<GwBody>,
        rid: &HeaderValue,
        names: &LogNames,
        endpoint: Option<SocketAddr>,
        start: Instant,
        client: IpAddr,
    ) -> Response<GwBody> {
        let Some(log) = &self.node.access_log else { return resp };
        let rec = LogRecord {
            request_id: rid.clone(),
            names: names.clone(),
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

/// 503 with the peer hop's "region unavailable" marker: the sender tries its next region.
fn region_unavailable(rid: &HeaderValue, why: &str) -> Response<GwBody> {
    let mut r = respond(ErrorCode::ServiceUnavailable, why, rid_str(rid));
    r.headers_mut().insert(peer::REGION_UNAVAILABLE, HeaderValue::from_static("1"));
    r
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

fn set_request_id(h: &mut http::HeaderMap, rid: &HeaderValue) {
    h.insert(X_REQUEST_ID, rid.clone());
}

/// The fields the proxy reads before routing, found in one pass over the names: a lookup by
/// name hashes the name, and most requests carry a handful of fields. The first value of each,
/// as `HeaderMap::get` gives.
#[derive(Default)]
struct Seen<'a> {
    request_id: Option<&'a HeaderValue>,
    host: Option<&'a HeaderValue>,
    content_length: Option<&'a HeaderValue>,
    upgrade: bool,
    /// A `Connection` field lists `upgrade`.
    connection_upgrade: bool,
}

impl<'a> Seen<'a> {
    fn scan(h: &'a http::HeaderMap) -> Self {
        let mut seen = Seen::default();
        for (name, value) in h {
            if name == header::HOST {
                seen.host = seen.host.or(Some(value));
            } else if name == header::CONTENT_LENGTH {
                seen.content_length = seen.content_length.or(Some(value));
            } else if name == header::UPGRADE {
                seen.upgrade = true;
            } else if name == header::CONNECTION {
                seen.connection_upgrade |= crate::wire::has_token(value.as_bytes(), b"upgrade");
            } else if name == X_REQUEST_ID {
                seen.request_id = seen.request_id.or(Some(value));
            }
        }
        seen
    }
}

/// The request id: a sane incoming `X-Request-Id` as it is, else a fresh one. A fresh one is
/// one reference-counted allocation: the upstream request, the response and the log clone it
/// without copying (a value made from a `Vec` would allocate again on its first clone).
///
/// Marked sensitive, which HTTP/1.1 ignores and HPACK reads as "never indexed": a value
/// unique to one request would only push useful entries out of an HTTP/2 connection's
/// compression table (and searching and evicting them cost more than the rest of its fields).
fn request_id(incoming: Option<&HeaderValue>) -> HeaderValue {
    let mut id = match incoming {
        Some(v) if RequestId::is_valid(v.as_bytes()) => v.clone(),
        _ => HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(RequestId::generate_bytes()))
            .unwrap_or_else(|_| HeaderValue::from_static("-")),
    };
    id.set_sensitive(true);
    id
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
    fn request_ids_are_kept_out_of_hpack_tables() {
        let fresh = request_id(None);
        assert!(fresh.is_sensitive() && RequestId::is_valid(fresh.as_bytes()));
        let incoming = HeaderValue::from_static("abc-123");
        let kept = request_id(Some(&incoming));
        assert_eq!(kept, incoming);
        assert!(kept.is_sensitive());
        let replaced = request_id(Some(&HeaderValue::from_static("a b")));
        assert!(replaced != "a b" && replaced.is_sensitive());
    }

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
