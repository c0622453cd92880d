//! The compiled matchers of one route and their config-time parsing.
//!
//! Everything here is checked and normalised once per config version so that matching a request
//! only compares borrowed bytes.

use std::cmp::Ordering;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use meridian_model::{ConfigError, HeaderMatch, PathMatch, RouteMatch};

/// Longest host name we match (RFC 1035: 253 characters plus a trailing dot).
pub(super) const MAX_HOST_LEN: usize = 255;

/// A host pattern after normalisation (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostPattern {
    /// `api.example.com`.
    Exact(Box<str>),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Suffix(Box<str>),
    /// `*`: any host, same as listing no hosts.
    Any,
}

/// The path matcher of a route.
#[derive(Debug, Clone)]
pub(super) enum PathMatcher {
    /// No path matcher: any path.
    Any,
    Exact(Box<str>),
    /// Stored without a trailing `/`, except the root prefix which is stored as the empty string.
    Prefix(Box<str>),
    Template(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(Box<str>),
    Param,
    CatchAll,
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param => 1,
            Segment::CatchAll => 2,
        }
    }
}

/// A header condition.
#[derive(Debug, Clone)]
pub(super) struct HeaderCond {
    name: HeaderName,
    value: Option<HeaderValue>,
    invert: bool,
}

impl HeaderCond {
    pub(super) fn matches(&self, headers: &HeaderMap) -> bool {
        let hit = match &self.value {
            None => headers.contains_key(&self.name),
            Some(want) => headers.get_all(&self.name).iter().any(|v| v == want),
        };
        hit != self.invert
    }
}

/// Everything of a route that `find` checks.
#[derive(Debug, Clone)]
pub(super) struct CompiledRoute {
    pub(super) hosts: Vec<HostPattern>,
    pub(super) path: PathMatcher,
    pub(super) methods: Vec<Method>,
    pub(super) headers: Vec<HeaderCond>,
}

impl CompiledRoute {
    pub(super) fn compile(i: usize, m: &RouteMatch, errs: &mut Vec<ConfigError>) -> CompiledRoute {
        let mut hosts = Vec::with_capacity(m.hosts.len());
        for (j, h) in m.hosts.iter().enumerate() {
            match parse_host(h) {
                Ok(p) if !hosts.contains(&p) => hosts.push(p),
                Ok(_) => {}
                Err(msg) => errs.push(ConfigError::new(format!("routes[{i}].match.hosts[{j}]"), msg)),
            }
        }
        let path = match &m.path {
            None => PathMatcher::Any,
            Some(p) => parse_path(p).unwrap_or_else(|msg| {
                errs.push(ConfigError::new(format!("routes[{i}].match.path"), msg));
                PathMatcher::Any
            }),
        };
        let mut methods = Vec::with_capacity(m.methods.len());
        for (j, s) in m.methods.iter().enumerate() {
            let upper = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
            match Method::from_bytes(s.as_bytes()) {
                Ok(meth) if upper => methods.push(meth),
                _ => errs.push(ConfigError::new(
                    format!("routes[{i}].match.methods[{j}]"),
                    format!("invalid method {s:?}: methods are upper-case tokens such as GET"),
                )),
            }
        }
        let mut headers = Vec::with_capacity(m.headers.len());
        for (j, h) in m.headers.iter().enumerate() {
            if let Some(c) = compile_header(h, &format!("routes[{i}].match.headers[{j}]"), errs) {
                headers.push(c);
            }
        }
        CompiledRoute { hosts, path, methods, headers }
    }

    /// Method and header conditions (used to break ties between equal paths).
    pub(super) fn conditions(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len()
    }

    pub(super) fn conditions_match(&self, method: &Method, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|c| c.matches(headers))
    }

    /// `Some(prefix_len)` when the path matches.
    pub(super) fn path_match(&self, path: &str) -> Option<usize> {
        match &self.path {
            PathMatcher::Any => Some(0),
            PathMatcher::Exact(e) => (path == &**e).then_some(0),
            PathMatcher::Prefix(p) => prefix_match(p, path).then_some(p.len()),
            PathMatcher::Template(segs) => template_match(segs, path).then_some(0),
        }
    }

    /// Path precedence among non-exact routes of a tier: templates (most specific first), then
    /// prefixes (longest first), then routes without a path matcher.
    pub(super) fn path_precedence(&self, other: &CompiledRoute) -> Ordering {
        fn class(p: &PathMatcher) -> u8 {
            match p {
                PathMatcher::Exact(_) => 0,
                PathMatcher::Template(_) => 1,
                PathMatcher::Prefix(_) => 2,
                PathMatcher::Any => 3,
            }
        }
        class(&self.path).cmp(&class(&other.path)).then_with(|| match (&self.path, &other.path) {
            (PathMatcher::Template(a), PathMatcher::Template(b)) => template_precedence(a, b),
            (PathMatcher::Prefix(a), PathMatcher::Prefix(b)) => b.len().cmp(&a.len()),
            _ => Ordering::Equal,
        })
    }
}

/// More literal segments first; then, position by position, literal before `{param}` before
/// `{*catch_all}` (matchit's static-beats-param rule).
fn template_precedence(a: &[Segment], b: &[Segment]) -> Ordering {
    let literals = |s: &[Segment]| s.iter().filter(|x| matches!(x, Segment::Literal(_))).count();
    literals(b).cmp(&literals(a)).then_with(|| {
        for (x, y) in a.iter().zip(b) {
            let o = x.rank().cmp(&y.rank());
            if o != Ordering::Equal {
                return o;
            }
        }
        b.len().cmp(&a.len())
    })
}

fn prefix_match(prefix: &str, path: &str) -> bool {
    // The root prefix is stored as "" and so matches every path.
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn template_match(segs: &[Segment], path: &str) -> bool {
    let Some(mut rest) = path.strip_prefix('/') else { return false };
    for (k, seg) in segs.iter().enumerate() {
        if let Segment::CatchAll = seg {
            return !rest.is_empty();
        }
        let (part, tail) = match rest.find('/') {
            Some(n) => (&rest[..n], Some(&rest[n + 1..])),
            None => (rest, None),
        };
        let ok = match seg {
            Segment::Literal(l) => part == &**l,
            _ => !part.is_empty(),
        };
        if !ok {
            return false;
        }
        match tail {
            Some(t) => rest = t,
            // The path is used up: it matches only if the template is too.
            None => return k + 1 == segs.len(),
        }
    }
    false
}

pub(super) fn parse_host(raw: &str) -> Result<HostPattern, String> {
    if raw == "*" {
        return Ok(HostPattern::Any);
    }
    let h = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    let (wild, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h.as_str()),
    };
    if name.is_empty() || h.len() > MAX_HOST_LEN {
        return Err(format!("invalid host {raw:?}"));
    }
    if name.contains(':') {
        return Err(format!("invalid host {raw:?}: hosts are matched without the port"));
    }
    let label_ok =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "invalid host {raw:?}: expected a DNS name (punycode for IDNs), with `*.` only as a leading label"
        ));
    }
    Ok(if wild { HostPattern::Suffix(format!(".{name}").into()) } else { HostPattern::Exact(h.into()) })
}

fn parse_path(p: &PathMatch) -> Result<PathMatcher, String> {
    let raw = match p {
        PathMatch::Exact(s) | PathMatch::Prefix(s) | PathMatch::Template(s) => s,
    };
    if !raw.starts_with('/') {
        return Err(format!("path {raw:?} must start with '/'"));
    }
    Ok(match p {
        PathMatch::Exact(s) => PathMatcher::Exact(s.as_str().into()),
        PathMatch::Prefix(s) => PathMatcher::Prefix(s.trim_end_matches('/').into()),
        PathMatch::Template(s) => PathMatcher::Template(parse_template(s)?),
    })
}

fn parse_template(t: &str) -> Result<Vec<Segment>, String> {
    let parts: Vec<&str> = t[1..].split('/').collect();
    let mut names: Vec<&str> = Vec::new();
    let mut segs = Vec::with_capacity(parts.len());
    for (k, part) in parts.iter().enumerate() {
        let seg = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("template {t:?}: invalid parameter name {name:?}"));
                }
                if names.contains(&name) {
                    return Err(format!("template {t:?}: parameter {name:?} appears twice"));
                }
                names.push(name);
                if catch_all && k + 1 != parts.len() {
                    return Err(format!("template {t:?}: {{*{name}}} must be the last segment"));
                }
                if catch_all { Segment::CatchAll } else { Segment::Param }
            }
            None if part.contains(['{', '}']) => {
                return Err(format!("template {t:?}: a parameter must be a whole segment, like /{{id}}/"));
            }
            None => Segment::Literal((*part).into()),
        };
        segs.push(seg);
    }
    Ok(segs)
}

fn compile_header(h: &HeaderMatch, path: &str, errs: &mut Vec<ConfigError>) -> Option<HeaderCond> {
    let name = HeaderName::from_bytes(h.name.as_bytes())
        .map_err(|_| {
            errs.push(ConfigError::new(format!("{path}.name"), format!("invalid header name {:?}", h.name)))
        })
        .ok()?;
    let value = match &h.value {
        None => None,
        Some(v) => Some(
            HeaderValue::from_str(v)
                .map_err(|_| {
                    errs.push(ConfigError::new(
                        format!("{path}.value"),
                        format!("invalid header value {v:?}"),
                    ))
                })
                .ok()?,
        ),
    };
    Some(HeaderCond { name, value, invert: h.invert })
}

/// Lower-cases `host` and drops one trailing dot, copying into `buf` only when needed.
/// `None` for names longer than any DNS name (they cannot match a host pattern).
pub(super) fn normalize_host<'a>(host: &'a str, buf: &'a mut [u8; MAX_HOST_LEN]) -> Option<&'a str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() > MAX_HOST_LEN {
        return None;
    }
    if !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Some(host);
    }
    let out = &mut buf[..host.len()];
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    // ASCII lower-casing keeps UTF-8 valid.
    std::str::from_utf8(out).ok()
}
