//! Named policies: exactly one kind each; headers and CORS settings well-formed.

use std::collections::{HashMap, HashSet};

use super::{Errors, syntax};
use crate::global::{CorsPolicy, GlobalConfig, HeaderOps};

pub fn check(c: &GlobalConfig, errs: &mut Errors) {
    errs.names("policies", c.policies.iter().map(|p| p.name.as_str()), syntax::ident);
    for (i, pol) in c.policies.iter().enumerate() {
        let p = format!("policies[{i}]");
        let kinds = usize::from(pol.headers.is_some()) + usize::from(pol.cors.is_some());
        if kinds != 1 {
            errs.push(&p, "exactly one of headers, cors must be set");
        }
        if let Some(h) = &pol.headers {
            ops(&format!("{p}.headers.request"), &h.request, errs);
            ops(&format!("{p}.headers.response"), &h.response, errs);
        }
        if let Some(cors) = &pol.cors {
            self::cors(&format!("{p}.cors"), cors, errs);
        }
    }
}

/// A header name a policy may change: well-formed and not managed by the gateway.
fn changeable(name: &str) -> Result<(), String> {
    syntax::header_name(name)?;
    if syntax::is_managed_header(name) {
        return Err(format!("header {name:?} is managed by the gateway and cannot be changed"));
    }
    Ok(())
}

fn ops(p: &str, o: &HeaderOps, errs: &mut Errors) {
    let mut removed = HashSet::new();
    for (j, name) in o.remove.iter().enumerate() {
        match changeable(name) {
            Err(m) => errs.push(format!("{p}.remove[{j}]"), m),
            Ok(()) => {
                if !removed.insert(name.to_ascii_lowercase()) {
                    errs.push(format!("{p}.remove[{j}]"), format!("header {name:?} is listed twice"));
                }
            }
        }
    }
    for (from, to) in &o.rename {
        errs.check(|| format!("{p}.rename.{from}"), changeable(from));
        errs.check(|| format!("{p}.rename.{from}"), changeable(to).map_err(|m| format!("target: {m}")));
    }
    for (op, map) in [("set", &o.set), ("add", &o.add)] {
        let mut seen = HashMap::new();
        for (name, value) in map {
            let path = format!("{p}.{op}.{name}");
            errs.check(|| path.clone(), changeable(name));
            errs.check(|| path.clone(), syntax::header_value(value));
            if let Some(other) = seen.insert(name.to_ascii_lowercase(), name) {
                errs.push(path, format!("same header as {other:?} (names are case-insensitive)"));
            }
        }
    }
}

fn cors(p: &str, c: &CorsPolicy, errs: &mut Errors) {
    if c.allow_origins.is_empty() {
        errs.push(format!("{p}.allow_origins"), "at least one origin is required");
    }
    for (j, o) in c.allow_origins.iter().enumerate() {
        let path = format!("{p}.allow_origins[{j}]");
        match syntax::origin(o) {
            Err(m) => errs.push(path, m),
            Ok(()) if o == "*" && c.allow_credentials => {
                errs.push(path, "\"*\" cannot be used with allow_credentials: list the origins")
            }
            Ok(()) if o == "*" && c.allow_origins.len() > 1 => {
                errs.push(path, "\"*\" must be the only origin")
            }
            Ok(()) => {}
        }
    }
    for (j, m) in c.allow_methods.iter().enumerate() {
        errs.check(|| format!("{p}.allow_methods[{j}]"), syntax::method(m));
    }
    for (field, list) in [("allow_headers", &c.allow_headers), ("expose_headers", &c.expose_headers)] {
        for (j, h) in list.iter().enumerate() {
            if h != "*" {
                errs.check(|| format!("{p}.{field}[{j}]"), syntax::header_name(h));
            }
        }
    }
}
