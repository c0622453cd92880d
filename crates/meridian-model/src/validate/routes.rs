//! Routes: names, references, matchers, timeouts, retries, and routes that can never win.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Errors, syntax};
use crate::global::{GlobalConfig, PathMatch, Route, RouteMatch};

pub fn check(c: &GlobalConfig, errs: &mut Errors) {
    errs.names("routes", c.routes.iter().map(|r| r.name.as_str()), syntax::ident);
    let services: HashSet<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    let policies: HashSet<&str> = c.policies.iter().map(|s| s.name.as_str()).collect();
    let mut matches: HashMap<MatchKey, usize> = HashMap::new();
    for (i, r) in c.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if !services.contains(r.service.as_str()) {
            errs.push(format!("{p}.service"), format!("unknown service {:?}", r.service));
        }
        let mut listed = HashSet::new();
        for (j, name) in r.policies.iter().enumerate() {
            if !policies.contains(name.as_str()) {
                errs.push(format!("{p}.policies[{j}]"), format!("unknown policy {name:?}"));
            } else if !listed.insert(name) {
                errs.push(format!("{p}.policies[{j}]"), format!("policy {name:?} is listed twice"));
            }
        }
        matcher(&p, &r.matcher, errs);
        if r.strip_prefix && !matches!(r.matcher.path, Some(PathMatch::Prefix(_))) {
            errs.push(format!("{p}.strip_prefix"), "requires a prefix path matcher");
        }
        timeouts_and_retries(&p, r, errs);
        let key = MatchKey::of(&r.matcher);
        if let Some(&first) = matches.get(&key) {
            errs.push(p, format!("same match as routes[{first}] ({:?})", c.routes[first].name));
        } else {
            matches.insert(key, i);
        }
    }
}

fn matcher(p: &str, m: &RouteMatch, errs: &mut Errors) {
    let mut hosts = HashSet::new();
    for (j, h) in m.hosts.iter().enumerate() {
        match syntax::host_pattern(h) {
            Err(e) => errs.push(format!("{p}.match.hosts[{j}]"), e),
            Ok(()) if !hosts.insert(h.to_ascii_lowercase()) => {
                errs.push(format!("{p}.match.hosts[{j}]"), format!("duplicate host {h:?}"))
            }
            Ok(()) => {}
        }
    }
    match &m.path {
        None => {}
        Some(PathMatch::Exact(s)) => errs.check(|| format!("{p}.match.path.exact"), plain_path(s)),
        Some(PathMatch::Prefix(s)) => errs.check(|| format!("{p}.match.path.prefix"), plain_path(s)),
        Some(PathMatch::Template(s)) => errs.check(|| format!("{p}.match.path.template"), template(s)),
    }
    let mut methods = HashSet::new();
    for (j, method) in m.methods.iter().enumerate() {
        match syntax::method(method) {
            Err(e) => errs.push(format!("{p}.match.methods[{j}]"), e),
            Ok(()) if !methods.insert(method) => {
                errs.push(format!("{p}.match.methods[{j}]"), format!("duplicate method {method:?}"))
            }
            Ok(()) => {}
        }
    }
    for (j, h) in m.headers.iter().enumerate() {
        errs.check(|| format!("{p}.match.headers[{j}].name"), syntax::header_name(&h.name));
        if let Some(v) = &h.value {
            errs.check(|| format!("{p}.match.headers[{j}].value"), syntax::header_value(v));
        }
    }
}

/// An exact or prefix path: starts with `/`, no query, fragment, whitespace or control chars.
fn plain_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("invalid path {s:?}: must start with '/'"));
    }
    if let Some(c) = s.chars().find(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid path {s:?}: {c:?} is not allowed in a path matcher"));
    }
    Ok(())
}

/// A template: `/`-separated segments, each a literal, `{name}`, or (last only) `{*name}`.
/// Parameter names are `[A-Za-z_][A-Za-z0-9_]*` and unique.
fn template(s: &str) -> Result<(), String> {
    plain_path(s)?;
    let segments: Vec<&str> = s[1..].split('/').collect();
    let mut names = HashSet::new();
    for (k, seg) in segments.iter().enumerate() {
        let last = k + 1 == segments.len();
        if seg.is_empty() {
            if last {
                continue; // a trailing slash
            }
            return Err(format!("invalid template {s:?}: empty segment"));
        }
        let Some(inner) = seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')) else {
            if seg.contains(['{', '}']) {
                return Err(format!(
                    "invalid template {s:?}: a parameter must be a whole segment, e.g. /users/{{id}}"
                ));
            }
            continue;
        };
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(format!("invalid template {s:?}: bad parameter name {name:?}"));
        }
        if catch_all && !last {
            return Err(format!("invalid template {s:?}: {{*{name}}} must be the last segment"));
        }
        if !names.insert(name) {
            return Err(format!("invalid template {s:?}: parameter {name:?} appears twice"));
        }
    }
    Ok(())
}

fn timeouts_and_retries(p: &str, r: &Route, errs: &mut Errors) {
    let t = &r.timeouts;
    errs.positive(|| format!("{p}.timeouts.connect"), t.connect);
    for (field, d) in [("per_try", t.per_try), ("request", t.request), ("idle", t.idle)] {
        if let Some(d) = d {
            errs.positive(|| format!("{p}.timeouts.{field}"), d);
        }
    }
    if let (Some(per_try), Some(request)) = (t.per_try, t.request)
        && per_try > request
    {
        errs.push(
            format!("{p}.timeouts.per_try"),
            format!("per_try ({}) is longer than request ({})", fmt(per_try), fmt(request)),
        );
    }
    let rt = &r.retries;
    if rt.budget_percent > 100 {
        errs.push(format!("{p}.retries.budget_percent"), format!("{} is more than 100", rt.budget_percent));
    }
    let mut seen = HashSet::new();
    for (j, s) in rt.on_statuses.iter().enumerate() {
        if !(100..=599).contains(s) {
            errs.push(
                format!("{p}.retries.on_statuses[{j}]"),
                format!("status {s} is out of range 100 to 599"),
            );
        } else if !seen.insert(s) {
            errs.push(format!("{p}.retries.on_statuses[{j}]"), format!("duplicate status {s}"));
        }
    }
}

fn fmt(d: crate::Dur) -> String {
    meridian_core::format_duration(d.get())
}

/// What a route matches, with set-like lists as sets and case-insensitive parts lowercased, so
/// two routes that match exactly the same requests compare equal.
#[derive(PartialEq, Eq, Hash)]
struct MatchKey {
    hosts: BTreeSet<String>,
    path: Option<(&'static str, String)>,
    methods: BTreeSet<String>,
    headers: BTreeSet<(String, Option<String>, bool)>,
}

impl MatchKey {
    fn of(m: &RouteMatch) -> Self {
        MatchKey {
            hosts: m.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path: m.path.as_ref().map(|p| match p {
                PathMatch::Exact(s) => ("exact", s.clone()),
                PathMatch::Prefix(s) => ("prefix", s.clone()),
                PathMatch::Template(s) => ("template", s.clone()),
            }),
            methods: m.methods.iter().cloned().collect(),
            headers: m
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.clone(), h.invert))
                .collect(),
        }
    }
}
