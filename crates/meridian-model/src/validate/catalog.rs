//! Deployment, regions, services and consumers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::{Errors, syntax};
use crate::global::{GlobalConfig, HashOn, LoadBalancing, Region, Service};

/// Most idle connections per endpoint a pool may keep; more is a typo, not a plan.
const MAX_IDLE_LIMIT: u32 = 10_000;

pub fn check(c: &GlobalConfig, errs: &mut Errors) {
    errs.check(|| "deployment".into(), syntax::ident(&c.deployment));
    if c.regions.is_empty() {
        errs.push("regions", "at least one region is required");
    }
    let regions = errs.names("regions", c.regions.iter().map(|r| r.name.as_str()), syntax::region_name);
    for (i, r) in c.regions.iter().enumerate() {
        region(i, r, errs);
    }
    errs.names("services", c.services.iter().map(|s| s.name.as_str()), syntax::ident);
    for (i, s) in c.services.iter().enumerate() {
        service(i, s, &regions, errs);
    }
    errs.names("consumers", c.consumers.iter().map(|s| s.name.as_str()), syntax::ident);
    for (i, consumer) in c.consumers.iter().enumerate() {
        for (j, tag) in consumer.tags.iter().enumerate() {
            if tag.is_empty() {
                errs.push(format!("consumers[{i}].tags[{j}]"), "must not be empty");
            }
        }
    }
}

fn region(i: usize, r: &Region, errs: &mut Errors) {
    let p = format!("regions[{i}]");
    let mut seen = HashSet::new();
    for (j, a) in r.public_addresses.iter().enumerate() {
        match a.parse::<IpAddr>() {
            Err(_) => errs.push(format!("{p}.public_addresses[{j}]"), format!("invalid IP address {a:?}")),
            Ok(ip) if !seen.insert(ip) => {
                errs.push(format!("{p}.public_addresses[{j}]"), format!("duplicate address {a:?}"))
            }
            Ok(_) => {}
        }
    }
    if let Some(peer) = &r.peer_address {
        errs.check(|| format!("{p}.peer_address"), syntax::host_port(peer));
    }
    if let Some(loc) = r.location {
        // `contains` is false for NaN, so NaN is rejected too.
        if !(-90.0..=90.0).contains(&loc.lat) {
            errs.push(format!("{p}.location.lat"), format!("latitude {} is out of range -90 to 90", loc.lat));
        }
        if !(-180.0..=180.0).contains(&loc.lon) {
            errs.push(
                format!("{p}.location.lon"),
                format!("longitude {} is out of range -180 to 180", loc.lon),
            );
        }
    }
}

fn service(i: usize, s: &Service, regions: &HashMap<&str, usize>, errs: &mut Errors) {
    let p = format!("services[{i}]");
    for (region, endpoints) in &s.endpoints {
        let ep = format!("{p}.endpoints.{region}");
        if !regions.contains_key(region.as_str()) {
            errs.push(&ep, format!("unknown region {region:?}"));
        }
        let mut seen = HashSet::new();
        for (j, e) in endpoints.iter().enumerate() {
            match syntax::host_port(&e.address) {
                Err(m) => errs.push(format!("{ep}[{j}].address"), m),
                Ok(()) if !seen.insert(e.address.to_ascii_lowercase()) => {
                    errs.push(format!("{ep}[{j}].address"), format!("duplicate endpoint {:?}", e.address))
                }
                Ok(()) => {}
            }
            if !(1..=1000).contains(&e.weight) {
                errs.push(
                    format!("{ep}[{j}].weight"),
                    format!("weight {} is out of range 1 to 1000", e.weight),
                );
            }
        }
    }
    if s.concurrency_limit == 0 {
        errs.push(format!("{p}.concurrency_limit"), "must be at least 1");
    }
    if s.pool.max_idle_per_endpoint > MAX_IDLE_LIMIT {
        errs.push(
            format!("{p}.pool.max_idle_per_endpoint"),
            format!("{} is more than {MAX_IDLE_LIMIT}", s.pool.max_idle_per_endpoint),
        );
    }
    errs.positive(|| format!("{p}.pool.idle_timeout"), s.pool.idle_timeout);
    errs.positive(|| format!("{p}.resolve_interval"), s.resolve_interval);
    super::resilience::check(&p, s, regions, errs);
    if let LoadBalancing::ConsistentHash { hash_on } = &s.load_balancing {
        match hash_on {
            HashOn::Header(h) => {
                errs.check(|| format!("{p}.load_balancing.hash_on.header"), syntax::header_name(h))
            }
            HashOn::Cookie(c) if !syntax::is_token(c) => {
                errs.push(format!("{p}.load_balancing.hash_on.cookie"), format!("invalid cookie name {c:?}"))
            }
            HashOn::Cookie(_) | HashOn::ClientIp => {}
        }
    }
}
