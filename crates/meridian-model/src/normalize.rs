//! Normalisation applied to a validated global config before its canonical form is hashed.
//!
//! Only spellings that mean the same thing to the gateway are unified, so that they hash the
//! same: host names and header names are case-insensitive and become lowercase, and a latitude
//! or longitude of `-0` becomes `0`. Methods are not touched: they are case-sensitive in HTTP and
//! validation already requires upper case. List order is kept everywhere (it is the user's, and
//! some lists are ordered, e.g. routes).

use std::collections::BTreeMap;

use crate::global::{GlobalConfig, HashOn, HeaderOps, LoadBalancing};

pub fn normalize(c: &mut GlobalConfig) {
    for r in &mut c.regions {
        if let Some(loc) = &mut r.location {
            // -0.0 == 0.0, so this only changes the sign of a zero.
            if loc.lat == 0.0 {
                loc.lat = 0.0;
            }
            if loc.lon == 0.0 {
                loc.lon = 0.0;
            }
        }
    }
    for s in &mut c.services {
        for endpoints in s.endpoints.values_mut() {
            for e in endpoints {
                lower(&mut e.address);
            }
        }
        if let LoadBalancing::ConsistentHash { hash_on: HashOn::Header(h) } = &mut s.load_balancing {
            lower(h);
        }
    }
    for r in &mut c.routes {
        r.matcher.hosts.iter_mut().for_each(|s| lower(s));
        for h in &mut r.matcher.headers {
            lower(&mut h.name);
        }
    }
    for p in &mut c.policies {
        if let Some(h) = &mut p.headers {
            ops(&mut h.request);
            ops(&mut h.response);
        }
        if let Some(cors) = &mut p.cors {
            cors.allow_headers.iter_mut().for_each(|s| lower(s));
            cors.expose_headers.iter_mut().for_each(|s| lower(s));
        }
    }
}

fn ops(o: &mut HeaderOps) {
    o.remove.iter_mut().for_each(|s| lower(s));
    let lower_keys = |m: &mut BTreeMap<String, String>| {
        *m = std::mem::take(m).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    };
    lower_keys(&mut o.set);
    lower_keys(&mut o.add);
    o.rename = std::mem::take(&mut o.rename)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
        .collect();
}

fn lower(s: &mut str) {
    s.make_ascii_lowercase();
}
