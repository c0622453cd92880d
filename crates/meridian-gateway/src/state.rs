//! One config version as the data plane runs it: router, routes with their compiled policy
//! chains, services with their pools, and the peer regions to fail over to. Built off the hot
//! path and swapped atomically; a request keeps the `Arc<Snapshot>` it started with, so
//! in-flight requests finish on the old version.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meridian_model::{ConfigError, RetryPolicy, Route, UpstreamProtocol, ValidConfig};

use crate::access_log::LogNames;
use crate::peer::{self, PeerRegion, PeerTls};
use crate::pipeline::Chain;
use crate::retry::RetryBudget;
use crate::router::Router;
use crate::upstream::pool::{ConnectOpts, EndpointAddr, EndpointPool};
use crate::upstream::service::ServiceRuntime;

/// What a snapshot build needs to know about this node.
pub struct NodeEnv {
    pub region: Arc<str>,
    /// Source address of outgoing connections.
    pub source: Option<IpAddr>,
    /// Peer hop TLS; without it this node does not fail over to other regions.
    pub peer_tls: Option<Arc<PeerTls>>,
}

pub struct Snapshot {
    pub config: Arc<ValidConfig>,
    pub router: Router,
    pub routes: Vec<RouteRuntime>,
    pub services: HashMap<String, Arc<ServiceRuntime>>,
    /// Other regions' gateway tiers by region name.
    pub peers: HashMap<String, Arc<PeerRegion>>,
    pub loaded_at: SystemTime,
}

/// How the tries of one request are bounded: timeouts, retries, budget.
pub struct TryPolicy {
    pub connect_timeout: Duration,
    pub per_try_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub budget: Arc<RetryBudget>,
}

impl TryPolicy {
    pub fn of_route(r: &Route, budget: Arc<RetryBudget>) -> TryPolicy {
        TryPolicy {
            connect_timeout: r.timeouts.connect.get(),
            per_try_timeout: r.timeouts.per_try.map(|d| d.get()),
            request_timeout: r.timeouts.request.map(|d| d.get()),
            idle_timeout: r.timeouts.idle.map(|d| d.get()),
            retry: r.retries.clone(),
            budget,
        }
    }

    /// Defaults, for requests that arrive from peer regions (the sender's route already
    /// applied its own policy; the receiver only needs sane bounds within its region).
    pub fn default_for_peers() -> TryPolicy {
        let t = meridian_model::Timeouts::default();
        let retry = RetryPolicy::default();
        TryPolicy {
            connect_timeout: t.connect.get(),
            per_try_timeout: t.per_try.map(|d| d.get()),
            request_timeout: None,
            idle_timeout: None,
            budget: Arc::new(RetryBudget::new(&retry)),
            retry,
        }
    }
}

pub struct RouteRuntime {
    pub name: Arc<str>,
    /// Names in this route's access log lines.
    pub log_names: LogNames,
    pub service: Arc<ServiceRuntime>,
    pub chain: Chain,
    pub tries: TryPolicy,
    pub max_body_bytes: Option<u64>,
    pub strip_prefix: bool,
}

/// Builds a snapshot for this node, reusing pools, peer connections and budgets from `prev`.
pub fn build(
    config: Arc<ValidConfig>,
    env: &NodeEnv,
    prev: Option<&Snapshot>,
) -> Result<Snapshot, Vec<ConfigError>> {
    let c = config.config();
    let mut errors = Vec::new();
    let router = match Router::build(&c.routes) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.extend(e);
            None
        }
    };

    let peers = build_peers(&config, env, prev, &mut errors);
    let same_regions = prev.is_some_and(|p| p.config.config().regions == c.regions);
    let mut services = HashMap::with_capacity(c.services.len());
    for (i, s) in c.services.iter().enumerate() {
        let old = prev.and_then(|p| p.services.get(&s.name));
        let rt = match old {
            // Identical service and regions: keep the whole runtime (pools, resolver tasks,
            // health, counters).
            Some(o) if o.config == *s && same_regions => Arc::clone(o),
            _ => match ServiceRuntime::build(s, env, &c.regions, &peers, old.map(|a| &**a)) {
                Ok(rt) => Arc::new(rt),
                Err(e) => {
                    errors.push(ConfigError::new(format!("services[{i}].endpoints.{}", env.region), e));
                    continue;
                }
            },
        };
        services.insert(s.name.clone(), rt);
    }

    let mut routes = Vec::with_capacity(c.routes.len());
    for (i, r) in c.routes.iter().enumerate() {
        let chain = match Chain::build(i, r, &c.policies) {
            Ok(ch) => ch,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let Some(service) = services.get(&r.service) else {
            errors.push(ConfigError::new(
                format!("routes[{i}].service"),
                format!("unknown service {:?}", r.service),
            ));
            continue;
        };
        let budget = prev
            .and_then(|p| p.routes.iter().find(|o| *o.name == *r.name && o.tries.retry == r.retries))
            .map(|o| Arc::clone(&o.tries.budget))
            .unwrap_or_else(|| Arc::new(RetryBudget::new(&r.retries)));
        routes.push(RouteRuntime {
            name: Arc::from(r.name.as_str()),
            log_names: LogNames::new(&service.region, &r.name, &service.name),
            service: Arc::clone(service),
            chain,
            tries: TryPolicy::of_route(r, budget),
            max_body_bytes: r.max_body_bytes,
            strip_prefix: r.strip_prefix,
        });
    }

    match router {
        Some(router) if errors.is_empty() => {
            Ok(Snapshot { config, router, routes, services, peers, loaded_at: SystemTime::now() })
        }
        _ => Err(errors),
    }
}

/// One HTTP/2-over-mutual-TLS pool per other region with a peer address.
fn build_peers(
    config: &ValidConfig,
    env: &NodeEnv,
    prev: Option<&Snapshot>,
    errors: &mut Vec<ConfigError>,
) -> HashMap<String, Arc<PeerRegion>> {
    let mut peers = HashMap::new();
    let Some(tls) = &env.peer_tls else { return peers };
    for (i, r) in config.config().regions.iter().enumerate() {
        let Some(addr) = r.peer_address.as_deref() else { continue };
        if *r.name == *env.region {
            continue;
        }
        if let Some(old) = prev.and_then(|p| p.peers.get(&r.name)).filter(|o| o.pool.addr.configured == addr)
        {
            peers.insert(r.name.clone(), Arc::clone(old));
            continue;
        }
        let (Ok(parsed), Some(name)) = (EndpointAddr::parse(addr), peer::server_name(&r.name)) else {
            errors.push(ConfigError::new(
                format!("regions[{i}].peer_address"),
                format!("invalid peer address {addr:?}"),
            ));
            continue;
        };
        let opts = ConnectOpts { source: env.source, tls: Some((tls.client.clone(), name)) };
        let pool = EndpointPool::new(parsed, UpstreamProtocol::Http2, 0, Duration::from_secs(90), opts);
        peers.insert(r.name.clone(), Arc::new(PeerRegion::new(Arc::from(r.name.as_str()), Arc::new(pool))));
    }
    peers
}
