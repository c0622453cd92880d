//! A service as the data plane runs it: its endpoints in this gateway's region, their pools,
//! the balancer and the concurrency limit. Built once per config version; pools of unchanged
//! endpoints carry over from the previous version so warm connections survive a reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::response_body::ServiceSlot;

use std::time::Instant;

use meridian_health::{CheckTarget, CheckerGuard, Labels, ServiceHealth, spawn_active_checks};
use meridian_model::{HashOn, LoadBalancing, Region, Service};

use crate::access_log::LogNames;
use crate::peer::{Backoff, PeerRegion};
use crate::state::{NodeEnv, TryPolicy};

use super::lb::Balancer;
use super::pool::{ConnectOpts, EndpointAddr, EndpointPool};
use super::resolve;

pub struct ServiceRuntime {
    pub name: Arc<str>,
    /// Names in the access log lines of requests from peer regions.
    pub peer_log_names: LogNames,
    /// The config this runtime was built from; an identical one reuses this runtime.
    pub config: Service,
    pub region: Arc<str>,
    pub endpoints: Vec<Arc<EndpointPool>>,
    balancer: Balancer,
    hash_on: Option<HashOn>,
    /// Requests in flight to this service from this gateway.
    pub in_flight: Arc<AtomicU32>,
    pub concurrency_limit: u32,
    /// Requests in flight that peer regions sent here (capped by `failover.max_peer_requests`).
    pub peer_in_flight: Arc<AtomicU32>,
    /// Bounds of requests that peer regions send here.
    pub peer_tries: TryPolicy,
    /// Whether this region may serve the service at all (data residency).
    pub local_allowed: bool,
    /// Peer regions to fail over to, best first.
    pub failover_to: Vec<Arc<PeerRegion>>,
    /// Per peer region (same order): back-off after it answered "unavailable" for this service.
    pub failover_backoff: Vec<Backoff>,
    /// Health of the local endpoints: active checks, passive ejection, circuit breaker.
    pub health: Arc<ServiceHealth>,
    _checks: Option<CheckerGuard>,
    refresh: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        for t in &self.refresh {
            t.abort();
        }
    }
}

impl ServiceRuntime {
    /// Builds the runtime of `svc` for `region`, reusing endpoint pools from `prev` where the
    /// address and protocol are unchanged.
    pub fn build(
        svc: &Service,
        env: &NodeEnv,
        regions: &[Region],
        peers: &HashMap<String, Arc<PeerRegion>>,
        prev: Option<&ServiceRuntime>,
    ) -> Result<ServiceRuntime, String> {
        let region: &str = &env.region;
        let source = env.source;
        let mut reusable: HashMap<&str, &Arc<EndpointPool>> = HashMap::new();
        if let Some(p) = prev {
            for e in &p.endpoints {
                if e.protocol() == svc.protocol {
                    reusable.insert(e.addr.configured.as_str(), e);
                }
            }
        }
        let local_allowed = crate::region::allowed_in(svc, region);
        let local =
            if local_allowed { svc.endpoints.get(region).map(Vec::as_slice).unwrap_or(&[]) } else { &[] };
        let failover_to: Vec<Arc<PeerRegion>> = crate::region::failover_order(region, svc, regions)
            .iter()
            .filter_map(|r| peers.get(r).cloned())
            .collect();
        let failover_backoff = failover_to.iter().map(|_| Backoff::default()).collect();
        let mut endpoints = Vec::with_capacity(local.len());
        let mut weights = Vec::with_capacity(local.len());
        let mut refresh = Vec::new();
        for ep in local {
            let pool = match reusable.get(ep.address.as_str()) {
                Some(p) => Arc::clone(p),
                None => {
                    let addr = EndpointAddr::parse(&ep.address)?;
                    Arc::new(EndpointPool::new(
                        addr,
                        svc.protocol,
                        svc.pool.max_idle_per_endpoint as usize,
                        svc.pool.idle_timeout.get(),
                        ConnectOpts { source, tls: None },
                    ))
                }
            };
            if let Some(t) = resolve::spawn_refresh(&pool, svc.resolve_interval.get()) {
                refresh.push(t);
            }
            weights.push(ep.weight);
            endpoints.push(pool);
        }
        let epoch = std::time::Instant::now();
        let labels = Labels {
            service: Arc::from(svc.name.as_str()),
            region: Arc::from(region),
            endpoints: endpoints.iter().map(|e: &Arc<EndpointPool>| e.addr.configured.clone()).collect(),
        };
        let health = Arc::new(ServiceHealth::new(
            labels,
            &svc.outlier_detection,
            &svc.circuit_breaker,
            svc.health_check.is_some(),
            epoch,
        ));
        let checks = svc.health_check.as_ref().filter(|_| !endpoints.is_empty()).map(|hc| {
            let targets = endpoints
                .iter()
                .enumerate()
                .map(|(index, e)| {
                    let pool = Arc::clone(e);
                    let host = e.addr.hostname.clone().unwrap_or_else(|| e.addr.configured.clone());
                    CheckTarget {
                        index,
                        addr: Box::new(move || pool.addr.addrs().first().copied()),
                        host,
                        source,
                    }
                })
                .collect();
            spawn_active_checks(&health, targets, hc)
        });
        let hash_on = match &svc.load_balancing {
            LoadBalancing::ConsistentHash { hash_on } => Some(hash_on.clone()),
            _ => None,
        };
        Ok(ServiceRuntime {
            name: Arc::from(svc.name.as_str()),
            peer_log_names: LogNames::new(region, "(peer)", &svc.name),
            config: svc.clone(),
            region: Arc::from(region),
            // Ring positions follow endpoint addresses, so every gateway maps a key to the same
            // endpoint and removing one endpoint only moves its own keys.
            balancer: Balancer::with_keys(
                &svc.load_balancing,
                &weights,
                &local.iter().map(|e| e.address.as_str()).collect::<Vec<_>>(),
                rand::random(),
            ),
            endpoints,
            hash_on,
            in_flight: prev.map(|p| Arc::clone(&p.in_flight)).unwrap_or_default(),
            peer_in_flight: prev.map(|p| Arc::clone(&p.peer_in_flight)).unwrap_or_default(),
            peer_tries: TryPolicy::default_for_peers(),
            local_allowed,
            failover_to,
            failover_backoff,
            health,
            _checks: checks,
            concurrency_limit: svc.concurrency_limit,
            refresh,
        })
    }

    pub fn hash_on(&self) -> Option<&HashOn> {
        self.hash_on.as_ref()
    }

    /// Takes a concurrency slot for one client request; None when the service is at its limit.
    pub fn acquire(&self) -> Option<ServiceSlot> {
        ServiceSlot::acquire(&self.in_flight, self.concurrency_limit)
    }

    /// Takes a slot for a request from a peer region; None beyond `failover.max_peer_requests`.
    pub fn acquire_peer(&self) -> Option<ServiceSlot> {
        ServiceSlot::acquire(&self.peer_in_flight, self.config.failover.max_peer_requests)
    }

    /// Picks an available endpoint not yet tried by this request. A recovering endpoint (slow
    /// start) is passed over with the probability it is still short of full weight, so its share
    /// ramps up instead of jumping back. `ignore_health` is the panic mode.
    pub fn pick(
        &self,
        hash: Option<u64>,
        tried: &[usize],
        now: Instant,
        ignore_health: bool,
    ) -> Option<usize> {
        let eps = &self.endpoints;
        let h = &self.health;
        let skip = |i: usize| tried.contains(&i) || (!ignore_health && !h.endpoint(i).is_available(now));
        let in_flight = |i: usize| eps[i].in_flight.load(Ordering::Relaxed);
        let first = self.balancer.pick(hash, &in_flight, &skip)?;
        let slow_start = self.config.failover.slow_start.get();
        if ignore_health || hash.is_some() || slow_start.is_zero() {
            return Some(first);
        }
        let factor = h.endpoint(first).slow_start_factor(now, slow_start);
        if factor >= 1.0 || rand::random::<f64>() < factor {
            return Some(first);
        }
        let again = self.balancer.pick(None, &in_flight, &|i| i == first || skip(i));
        Some(again.unwrap_or(first))
    }
}
