//! One config version as the data plane runs it: router, routes with their compiled policy
//! chains, and services with their pools. Built off the hot path and swapped atomically; a
//! request keeps the `Arc<Snapshot>` it started with, so in-flight requests finish on the old
//! version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meridian_model::{ConfigError, RetryPolicy, ValidConfig};

use crate::pipeline::Chain;
use crate::retry::RetryBudget;
use crate::router::Router;
use crate::upstream::service::ServiceRuntime;

pub struct Snapshot {
    pub config: Arc<ValidConfig>,
    pub router: Router,
    pub routes: Vec<RouteRuntime>,
    pub services: HashMap<String, Arc<ServiceRuntime>>,
    pub loaded_at: SystemTime,
}

pub struct RouteRuntime {
    pub name: Arc<str>,
    pub service: Arc<ServiceRuntime>,
    pub chain: Chain,
    pub connect_timeout: Duration,
    pub per_try_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub budget: Arc<RetryBudget>,
    pub max_body_bytes: Option<u64>,
    pub strip_prefix: bool,
}

impl RouteRuntime {
    /// Whether a response status asks for another try.
    #[inline]
    pub fn retry_on_status(&self, status: u16) -> bool {
        self.retry.on_statuses.contains(&status)
    }
}

/// Builds a snapshot for this gateway's region, reusing pools and budgets from `prev`.
pub fn build(
    config: Arc<ValidConfig>,
    region: &str,
    prev: Option<&Snapshot>,
) -> Result<Snapshot, Vec<ConfigError>> {
    let c = config.config();
    let mut errors = Vec::new();
    let router = Router::build(&c.routes).map_err(|e| e.into_iter().collect::<Vec<_>>());
    let router = match router {
        Ok(r) => Some(r),
        Err(e) => {
            errors.extend(e);
            None
        }
    };

    let mut services = HashMap::with_capacity(c.services.len());
    for (i, s) in c.services.iter().enumerate() {
        let old = prev.and_then(|p| p.services.get(&s.name));
        let rt = match old {
            // Identical config: keep the whole runtime (pools, resolver tasks, counters).
            Some(o) if o.config == *s && &*o.region == region => Arc::clone(o),
            _ => match ServiceRuntime::build(s, region, old.map(|a| &**a)) {
                Ok(rt) => Arc::new(rt),
                Err(e) => {
                    errors.push(ConfigError::new(format!("services[{i}].endpoints.{region}"), e));
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
            .and_then(|p| p.routes.iter().find(|o| *o.name == *r.name && o.retry == r.retries))
            .map(|o| Arc::clone(&o.budget))
            .unwrap_or_else(|| Arc::new(RetryBudget::new(&r.retries)));
        routes.push(RouteRuntime {
            name: Arc::from(r.name.as_str()),
            service: Arc::clone(service),
            chain,
            connect_timeout: r.timeouts.connect.get(),
            per_try_timeout: r.timeouts.per_try.map(|d| d.get()),
            request_timeout: r.timeouts.request.map(|d| d.get()),
            idle_timeout: r.timeouts.idle.map(|d| d.get()),
            retry: r.retries.clone(),
            budget,
            max_body_bytes: r.max_body_bytes,
            strip_prefix: r.strip_prefix,
        });
    }

    match router {
        Some(router) if errors.is_empty() => {
            Ok(Snapshot { config, router, routes, services, loaded_at: SystemTime::now() })
        }
        _ => Err(errors),
    }
}
