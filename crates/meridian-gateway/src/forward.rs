//! Sending a request to a service: endpoint choice in this region, tries within timeouts,
//! retries within the budget and replay limits, and cross-region failover through the peer
//! gateway tier when this region cannot serve (see [`crate::peer`] for the hop contract).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use meridian_core::ErrorCode;
use meridian_health::{BreakerState, Outcome};
use meridian_model::HashOn;

use crate::body::GwBody;
use crate::error::{ProxyError, Retry, Source};
use crate::forwarded::HopFields;
use crate::peer::{self, Backoff, PeerRegion};
use crate::raw_head::{self, Own};
use crate::region::Drains;
use crate::retry::is_idempotent;
use crate::state::TryPolicy;
use crate::timeout::{Activity, ActivityIo, IdleRule};
use crate::upstream::h1;
use crate::upstream::lb::{hash_bytes, hash_key};
use crate::upstream::pool::{self, EndpointPool, Sender};
use crate::upstream::response_body::{InFlight, ServiceSlot, UpstreamBody};
use crate::upstream::service::ServiceRuntime;

/// Most tries of one request we track (first try plus retries).
const MAX_TRIED: usize = 8;

/// Who sent the request: a client (may fail over), or a peer region (served locally only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Peer,
}

/// A peer region and this service's back-off there.
type PeerTarget<'a> = (&'a Arc<PeerRegion>, &'a Backoff);

/// Where one try goes.
enum Target<'a> {
    Local(usize),
    /// A peer region and this service's back-off there.
    Peer(&'a Arc<PeerRegion>, &'a Backoff),
}

/// What a forward needs besides the request.
pub struct ForwardCtx<'a> {
    pub tries: &'a TryPolicy,
    pub service: &'a ServiceRuntime,
    pub region: &'a str,
    pub drains: &'a Drains,
    pub origin: Origin,
    pub client_ip: IpAddr,
    pub start: Instant,
    /// This region's name as a header value (`x-meridian-region` on local answers).
    pub region_header: &'a HeaderValue,
    /// Nothing reads the endpoint's response fields on the way back: an HTTP/1.1 endpoint's
    /// may pass through as they came ([`crate::raw_head`]), less these (the route's response
    /// policies replace or remove them). `None`: into the `HeaderMap`.
    pub pass_through: Option<&'a [http::HeaderName]>,
    /// The fields this hop adds, when they are not in the request's map yet.
    pub hop: Option<&'a HopFields>,
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
pub fn limit_body(body: GwBody, announced: Option<u64>, max: u64) -> GwBody {
    use http_body::Body as _;
    if body.is_end_stream() || announced.is_some() || !matches!(body, GwBody::Incoming(_)) {
        // hyper enforces an announced Content-Length exactly; the server's own bodies are read
        // whole within their announced length.
        return body;
    }
    GwBody::boxed(http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)))
}

/// Whether this region can serve `service` itself right now (not drained, allowed here, has
/// endpoints). What `/-/health/services/{service}` reports, and the first choice of every request.
pub fn serves_locally(service: &ServiceRuntime, region: &str, drains: &Drains, now: Instant) -> bool {
    local_candidate(service, region, drains)
        && service.health.available(now).0 > 0
        && service.health.breaker().state(now) != BreakerState::Open
}

/// Allowed here, has endpoints, not drained: health aside, this region could serve.
fn local_candidate(service: &ServiceRuntime, region: &str, drains: &Drains) -> bool {
    service.local_allowed && !service.endpoints.is_empty() && !drains.is_drained(region, &service.name)
}

/// Envoy's priority-level rule: a region keeps all its traffic while its available endpoints
/// × the overprovisioning factor cover all of them; past that, the missing share spills over.
///
/// Endpoints in slow start count by their current weight, so a region whose endpoints all
/// come back at once takes its traffic back gradually instead of all at once.
fn spill_share(service: &ServiceRuntime, now: Instant) -> f64 {
    let total = service.endpoints.len();
    let slow_start = service.config.failover.slow_start.get();
    let capacity: f64 = (0..total)
        .map(|i| service.health.endpoint(i))
        .filter(|e| e.is_available(now))
        .map(|e| if slow_start.is_zero() { 1.0 } else { e.slow_start_factor(now, slow_start) })
        .sum();
    spill_for(capacity, total, service.config.failover.overprovisioning_percent)
}

/// The share of traffic that spills over given the available capacity (in endpoints, slow
/// start weighted), the endpoint count and the overprovisioning factor in percent.
fn spill_for(capacity: f64, total: usize, overprovisioning_percent: u32) -> f64 {
    if total == 0 || capacity >= total as f64 {
        return 0.0;
    }
    let factor = f64::from(overprovisioning_percent) / 100.0;
    (1.0 - capacity * factor / total as f64).clamp(0.0, 1.0)
}

/// Panic mode: with too few available endpoints and nowhere else to go, use them all.
fn panics(service: &ServiceRuntime, (available, total): (usize, usize)) -> bool {
    available * 100 < total * service.config.failover.panic_threshold_percent as usize
}

/// How long a small request body may take to arrive when it is buffered for replay.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the request: local endpoints first, then peer regions in failover order. Returns the
/// response and the endpoint (or peer gateway) that gave it.
///
/// Two kinds of "another try": retries (bounded by `retries.attempts` and the budget, only
/// when repeating is safe) and region hops (each failover region at most once; a hop after an
/// answer that proves nothing was processed — connect failure, "region unavailable" — costs no
/// budget).
///
/// `admission`: another slot the response body holds until it ends (a peer request's slot).
pub async fn forward(
    cx: &ForwardCtx<'_>,
    mut parts: http::request::Parts,
    body: GwBody,
    admission: Option<ServiceSlot>,
) -> Result<(Response<GwBody>, Option<SocketAddr>), ProxyError> {
    let service = cx.service;
    let tries = cx.tries;
    let deadline = tries.request_timeout.map(|d| cx.start + d);
    let may_repeat =
        tries.retry.attempts > 0 && (tries.retry.allow_non_idempotent || is_idempotent(&parts.method));

    // One clock read serves the decisions of the first try: the request's start, unless the
    // body was waited for.
    let mut now = cx.start;
    // Buffer a small body for replay first (bounded in time), so a slow client holds no slot.
    let mut body = if http_body::Body::is_end_stream(&body) {
        ReqBody::Replayable(None)
    } else if may_repeat
        && content_length(&parts.headers).is_some_and(|n| n <= tries.retry.max_replay_body_bytes)
    {
        let wait = remaining(deadline).unwrap_or_default().min(BODY_READ_TIMEOUT);
        let collected = tokio::time::timeout(wait, body.collect()).await;
        now = Instant::now();
        match collected {
            Ok(Ok(c)) => ReqBody::Replayable(Some(c.to_bytes())),
            Ok(Err(e)) => {
                return Err(ProxyError::downstream(
                    ErrorCode::BadRequest,
                    format!("reading the request body failed: {e}"),
                ));
            }
            Err(_) => {
                return Err(ProxyError::downstream(
                    ErrorCode::RequestTimeout,
                    "the request body arrived too slowly",
                ));
            }
        }
    } else {
        ReqBody::Stream(Some(body))
    };

    // HTTP/1.1 endpoints get origin-form targets: an authority in the target travels as Host.
    if let Some(a) = parts.uri.authority()
        && !parts.headers.contains_key(header::HOST)
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    let candidate = local_candidate(service, cx.region, cx.drains);
    // Counted once per request: every decision below reads the same view.
    let health = if candidate { service.health.available(now) } else { (0, 0) };
    let local_ok = candidate && health.0 > 0 && service.health.breaker().try_acquire(now);
    let may_fail_over = cx.origin == Origin::Client && !service.failover_to.is_empty();
    let panic_ok = candidate && !local_ok && panics(service, health);
    if !local_ok && !may_fail_over && !panic_ok {
        return Err(unavailable(service, cx.region));
    }
    // Part of the traffic of a region short of endpoints starts at the next region.
    let spill = local_ok && may_fail_over && rand::random::<f64>() < spill_share(service, now);
    let Some(slot) = service.acquire() else {
        return Err(ProxyError::internal(
            ErrorCode::ServiceUnavailable,
            format!("service {} is at its concurrency limit", service.name),
        ));
    };

    tries.budget.deposit(now);
    let mut hash = service.hash_on().and_then(|h| hash_key(h, &parts.headers, cx.client_ip));
    // Cookie stickiness: a client without the cookie gets one, so its next requests stay on
    // the endpoint this one lands on (and move cleanly when it becomes unavailable).
    let mut new_cookie = None;
    if hash.is_none()
        && let Some(HashOn::Cookie(name)) = service.hash_on()
    {
        let value = format!("{:016x}", rand::random::<u64>());
        hash = Some(hash_bytes(value.as_bytes()));
        new_cookie = HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly")).ok();
    }
    let mut tried = [usize::MAX; MAX_TRIED];
    let mut n_local = 0usize;
    let mut next_peer = 0usize;
    let mut retries_left = tries.retry.attempts as usize;
    let mut first = true;
    // After a failed try: whether it was safe (nothing processed). The next try is a retry,
    // paid from the attempts and the budget, unless it is a region hop after a safe failure.
    let mut pending: Option<bool> = None;
    let mut slot = Some(slot);
    let mut admission = admission;
    let mut last_err: Option<ProxyError> = None;

    loop {
        if !first {
            now = Instant::now();
        }
        // Local endpoints not yet tried, then the next usable peer region, then local
        // endpoints again (a single-endpoint region still gets its retries), then — with
        // nothing else left — every local endpoint whatever its health (panic mode).
        let untried_local = (local_ok && !(spill && first))
            .then(|| service.pick(hash, &tried[..n_local], now, false))
            .flatten();
        let target = match untried_local {
            Some(i) => Target::Local(i),
            None => {
                let mut found = None;
                while may_fail_over && let Some(p) = service.failover_to.get(next_peer) {
                    let per_service = &service.failover_backoff[next_peer];
                    next_peer += 1;
                    if !p.backoff.is_active(now)
                        && !per_service.is_active(now)
                        && !cx.drains.is_drained(&p.region, &service.name)
                    {
                        found = Some((p, per_service));
                        break;
                    }
                }
                let again = if found.is_some() {
                    None
                } else if local_ok && !first {
                    service.pick(hash, &[], now, false)
                } else if panic_ok {
                    tracing::warn!(service = %service.name, region = %cx.region, "panic mode: no region can take the request; using every local endpoint");
                    service.pick(hash, &[], now, true)
                } else {
                    None
                };
                match (found, again) {
                    (Some((p, b)), _) => Target::Peer(p, b),
                    (None, Some(i)) => Target::Local(i),
                    (None, None) => break,
                }
            }
        };
        first = false;
        if let Some(safe) = pending.take() {
            let free_hop = safe && matches!(target, Target::Peer(..));
            if !free_hop {
                if retries_left == 0 || !tries.budget.try_withdraw(now) {
                    break;
                }
                retries_left -= 1;
            }
        }
        let Some(remaining) = remaining(deadline) else {
            last_err = Some(timeout_error("request", tries.request_timeout));
            break;
        };
        let (ep, peer, local): (&Arc<EndpointPool>, Option<PeerTarget<'_>>, Option<usize>) = match target {
            Target::Local(i) => {
                if n_local < MAX_TRIED {
                    tried[n_local] = i;
                    n_local += 1;
                }
                (&service.endpoints[i], None, Some(i))
            }
            Target::Peer(p, b) => (&p.pool, Some((p, b)), None),
        };
        // Passive health: every local try's outcome feeds outlier detection and the breaker.
        let record = |outcome: Outcome| {
            if let Some(i) = local {
                service.health.record(i, outcome, Instant::now());
            }
        };
        let in_flight = InFlight::new(Arc::clone(ep));
        let conn = match ep.checkout(tries.connect_timeout.min(remaining), now).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(endpoint = %ep.addr.configured, error = %e, "connect failed");
                record(Outcome::GatewayFailure);
                if let Some((p, _)) = peer
                    && p.backoff.fail(Instant::now())
                {
                    tracing::warn!(region = %p.region, error = %e, "peer region unreachable; backing off");
                }
                last_err = Some(e);
                // Nothing was sent: safe for any method.
                pending = Some(true);
                continue;
            }
        };
        let Some(req_body) = body.take() else { break };
        let per_try = tries.per_try_timeout.map_or(remaining, |t| t.min(remaining));
        // A peer hop carries hop headers that a later local try must not: its own copy.
        let hop_headers = peer.map(|(p, _)| {
            let mut h = parts.headers.clone();
            if let Some(hop) = cx.hop {
                hop.apply(&mut h);
            }
            add_hop_headers(&mut h, cx.region, &service.name, cx.client_ip, p);
            h
        });
        let sent = match conn.sender {
            // HTTP/1.1 only copies the head onto the wire: it stays here for a later try.
            Sender::H1(c) => {
                let head = h1::RequestHead {
                    method: &parts.method,
                    uri: &parts.uri,
                    headers: hop_headers.as_ref().unwrap_or(&parts.headers),
                    hop: cx.hop.filter(|_| hop_headers.is_none()),
                    // A peer's answer is read here (`region unavailable`).
                    pass_through: cx.pass_through.filter(|_| peer.is_none()),
                };
                // The connection's own timer (no timer-wheel work per request).
                let by = tokio::time::Instant::from_std(now) + per_try;
                Ok(pool::sent_h1(c.send(&head, req_body, ep, by).await, per_try))
            }
            Sender::H2(s) => {
                let headers = hop_headers.unwrap_or_else(|| {
                    let mut h = parts.headers.clone();
                    if let Some(hop) = cx.hop {
                        hop.apply(&mut h);
                    }
                    h
                });
                let req = upstream_request(&parts, headers, req_body, true);
                tokio::time::timeout(per_try, pool::send_h2(s, req, conn.reused)).await
            }
        };
        let replayable = !matches!(body, ReqBody::Stream(None));
        let err = match sent {
            Ok(Ok(mut resp)) => {
                let status = resp.status().as_u16();
                record(if status >= 500 { Outcome::Http5xx } else { Outcome::Success });
                if let Some((p, per_service)) = peer {
                    if p.backoff.succeed() {
                        tracing::info!(region = %p.region, "peer region reachable again");
                    }
                    if status == 503 && resp.headers().contains_key(&peer::REGION_UNAVAILABLE) {
                        // The peer's region cannot serve this service: the next region,
                        // whatever the method (the peer processed nothing).
                        if per_service.fail(Instant::now()) {
                            tracing::warn!(region = %p.region, service = %service.name, "peer region cannot serve the service; backing off");
                        }
                        last_err = Some(unavailable_in(service, &p.region));
                        if !replayable {
                            break;
                        }
                        pending = Some(true);
                        continue;
                    }
                    if per_service.succeed() {
                        tracing::info!(region = %p.region, service = %service.name, "peer region serves the service again");
                    }
                } else {
                    // Only the peer hop may say "region unavailable"; never an upstream. The
                    // serving region is ours to state.
                    peer::strip_region_unavailable(resp.headers_mut());
                    let region = cx.region_header.clone();
                    if let Some(v) = raw_head::hold_own(resp.body_mut().raw_fields_mut(), Own::Region, region)
                    {
                        raw_head::put_own(resp.headers_mut(), Own::Region, v);
                    }
                }
                // A retriable status is retried only if a retry can really happen; otherwise
                // the client gets the upstream's own answer.
                let retry_status = tries.retry.on_statuses.contains(&status)
                    && may_repeat
                    && replayable
                    && retries_left > 0
                    && self::remaining(deadline).is_some()
                    && tries.budget.try_withdraw(Instant::now());
                if retry_status {
                    retries_left -= 1;
                    last_err = Some(ProxyError::new(
                        status_code(status),
                        Source::Upstream,
                        Retry::IfIdempotent,
                        format!("upstream answered {status}"),
                    ));
                    // The response is dropped unread, which closes its connection.
                    drop(resp);
                    drop(in_flight);
                    continue;
                }
                let sa = ep.addr.addrs().first().copied();
                let slots = [slot.take(), admission.take()];
                let mut resp = resp.map(|b| GwBody::Upstream(UpstreamBody::new(b, in_flight, slots)));
                if let Some(c) = new_cookie.take() {
                    resp.headers_mut().append(header::SET_COOKIE, c);
                }
                return Ok((resp, sa));
            }
            Ok(Err(e)) => e,
            Err(_) => timeout_error("per-try", Some(per_try)),
        };
        tracing::debug!(endpoint = %ep.addr.configured, error = %err, "try failed");
        if err.source == Source::Upstream {
            record(Outcome::GatewayFailure);
        }
        if let Some((p, _)) = peer
            && p.backoff.fail(Instant::now())
        {
            tracing::warn!(region = %p.region, error = %err, "peer region failed; backing off");
        }
        let retry_ok = replayable
            && match err.retry {
                Retry::Safe => true,
                Retry::IfIdempotent => may_repeat,
                Retry::No => false,
            };
        pending = Some(err.retry == Retry::Safe);
        last_err = Some(err);
        if !retry_ok {
            break;
        }
    }
    Err(last_err.unwrap_or_else(|| unavailable(service, cx.region)))
}

fn add_hop_headers(h: &mut http::HeaderMap, region: &str, service: &str, client: IpAddr, to: &PeerRegion) {
    if let Ok(v) = HeaderValue::from_str(region) {
        h.insert(peer::HOP, v);
    }
    if let Ok(v) = HeaderValue::from_str(service) {
        h.insert(peer::SERVICE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        h.insert(peer::CLIENT, v);
    }
    tracing::trace!(to = %to.region, %service, "failing over to peer region");
}

fn unavailable(service: &ServiceRuntime, region: &str) -> ProxyError {
    ProxyError::internal(
        ErrorCode::ServiceUnavailable,
        format!(
            "service {} cannot be served in region {region} and no other region can take it",
            service.name
        ),
    )
}

fn unavailable_in(service: &ServiceRuntime, region: &str) -> ProxyError {
    ProxyError::new(
        ErrorCode::ServiceUnavailable,
        Source::Upstream,
        Retry::Safe,
        format!("service {} is unavailable in region {region}", service.name),
    )
}

pub fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH).and_then(length_value)
}

/// A `Content-Length` value as a number (digits only, as the HTTP/1.1 parsers read it).
pub fn length_value(v: &HeaderValue) -> Option<u64> {
    crate::wire::content_length(v.as_bytes())
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

pub(crate) fn timeout_error(which: &str, d: Option<Duration>) -> ProxyError {
    ProxyError::new(
        ErrorCode::GatewayTimeout,
        crate::error::Source::Upstream,
        Retry::IfIdempotent,
        format!("upstream {which} timeout ({:?}) elapsed", d.unwrap_or_default()),
    )
}

/// The request as an endpoint receives it: origin-form with Host for HTTP/1.1, absolute URI
/// (`:authority`) for HTTP/2.
fn upstream_request(
    parts: &http::request::Parts,
    headers: http::HeaderMap,
    body: GwBody,
    h2: bool,
) -> Request<GwBody> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    // Parsed only when needed: HTTP/2, or an HTTP/1.1 request without Host.
    let authority =
        |headers: &http::HeaderMap| {
            parts.uri.authority().cloned().or_else(|| {
                headers.get(header::HOST).and_then(|h| h.to_str().ok()).and_then(|h| h.parse().ok())
            })
        };
    *req.headers_mut() = headers;
    let pq = parts.uri.path_and_query().cloned();
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        let mut up = http::uri::Parts::default();
        up.scheme = Some(http::uri::Scheme::HTTP);
        up.authority =
            authority(req.headers()).or_else(|| Some(http::uri::Authority::from_static("upstream")));
        up.path_and_query = pq.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        *req.uri_mut() = Uri::from_parts(up).unwrap_or_default();
        req.headers_mut().remove(header::HOST);
    } else {
        *req.version_mut() = Version::HTTP_11;
        if let Some(pq) = pq {
            *req.uri_mut() = Uri::from(pq);
        }
        if !req.headers().contains_key(header::HOST)
            && let Some(a) = authority(req.headers())
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    req
}

/// WebSocket and other HTTP/1.1 upgrades: a fresh connection, no retries, then bytes both ways.
pub async fn forward_upgrade(
    cx: &ForwardCtx<'_>,
    mut parts: http::request::Parts,
    body: GwBody,
    client: hyper::upgrade::OnUpgrade,
) -> Result<(Response<GwBody>, Option<SocketAddr>), ProxyError> {
    let (tries, service) = (cx.tries, cx.service);
    let now = Instant::now();
    let picked = serves_locally(service, cx.region, cx.drains, now)
        .then(|| service.pick(None, &[], now, false))
        .flatten();
    let Some(idx) = picked else {
        return Err(unavailable(service, cx.region));
    };
    // A tunnel holds a concurrency slot and counts as in flight for as long as it lives.
    let Some(slot) = service.acquire() else {
        return Err(ProxyError::internal(
            ErrorCode::ServiceUnavailable,
            format!("service {} is at its concurrency limit", service.name),
        ));
    };
    let ep = &service.endpoints[idx];
    let in_flight = InFlight::new(Arc::clone(ep));
    let mut sender = ep.connect_for_upgrade(tries.connect_timeout).await?;
    let headers = std::mem::take(&mut parts.headers);
    let req = upstream_request(&parts, headers, body, false);
    let per_try = tries.per_try_timeout.unwrap_or(Duration::from_secs(24 * 3600));
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
    let idle = tries.idle_timeout;
    tokio::spawn(async move {
        let _held = (slot, in_flight);
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
                    // A client that keeps sending but takes nothing back is cut off too.
                    quiet = activity.watch(idle, IdleRule::Always) => {
                        tracing::debug!(?quiet, "upgraded connection quiet for the idle timeout; closing");
                    }
                }
            }
        }
    });
    Ok((resp.map(|_| GwBody::Empty), sa))
}

#[cfg(test)]
mod tests {
    use super::spill_for;

    #[test]
    fn spillover_follows_the_overprovisioning_rule() {
        assert_eq!(spill_for(10.0, 10, 140), 0.0);
        assert_eq!(spill_for(8.0, 10, 140), 0.0, "2 of 10 lost: 8 × 1.4 still covers all");
        assert!((spill_for(1.0, 4, 140) - 0.65).abs() < 1e-9);
        assert_eq!(spill_for(0.0, 4, 140), 1.0);
        // A region returning with all endpoints in slow start (10 % weight each) keeps little.
        assert!((spill_for(0.4, 4, 140) - 0.86).abs() < 1e-9);
        assert_eq!(spill_for(3.0, 4, 100), 0.25);
    }
}
