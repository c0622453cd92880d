//! What `/-/status` and `/-/health/services/{service}` report: per service, this region's
//! endpoints and whether it serves, drain switches, and the peer regions it fails over to.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use crate::forward::serves_locally;
use crate::proxy::{NodeCtx, Proxy};
use crate::upstream::service::ServiceRuntime;

pub fn node_status(proxy: &Proxy) -> Value {
    let snap = proxy.state.load();
    let node = &proxy.node;
    let now = Instant::now();
    let mut services: Vec<&str> = snap.services.keys().map(String::as_str).collect();
    services.sort_unstable();
    let mut peers: Vec<(&String, _)> = snap.peers.iter().collect();
    peers.sort_by(|a, b| a.0.cmp(b.0));
    json!({
        "node": &*node.node_id,
        "region": &*node.region,
        "config_hash": snap.config.hash(),
        "drains": node.drains.snapshot(),
        "services": services.iter().map(|s| service_status(&snap.services[*s], node)).collect::<Vec<_>>(),
        "peers": peers.iter().map(|(name, p)| json!({
            "region": name,
            "address": p.pool.addr.configured,
            "backed_off": p.backoff.is_active(now),
            "in_flight": p.pool.in_flight.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
    })
}

pub fn service_status(svc: &ServiceRuntime, node: &NodeCtx) -> Value {
    let now = Instant::now();
    json!({
        "service": &*svc.name,
        "region": &*node.region,
        "serves_locally": serves_locally(svc, &node.region, &node.drains, now),
        "health": svc.health.status(now),
        "allowed_here": svc.local_allowed,
        "drained": node.drains.is_drained(&node.region, &svc.name),
        "in_flight": svc.in_flight.load(Ordering::Relaxed),
        "peer_in_flight": svc.peer_in_flight.load(Ordering::Relaxed),
        "endpoints": svc.endpoints.iter().map(|e| json!({
            "address": e.addr.configured,
            "resolved": e.addr.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "in_flight": e.in_flight.load(Ordering::Relaxed),
            "idle_connections": e.idle_count(),
        })).collect::<Vec<_>>(),
        "failover_to": svc.failover_to.iter().zip(&svc.failover_backoff).map(|(p, b)| json!({
            "region": &*p.region,
            "backed_off": p.backoff.is_active(now) || b.is_active(now),
            "drained": node.drains.is_drained(&p.region, &svc.name),
        })).collect::<Vec<_>>(),
    })
}
