//! The router: host, path, method and header matchers with a fixed precedence.
//!
//! Routes are compiled once per config version ([`Router::build`]); [`Router::find`] borrows
//! the request's host and path and allocates nothing.
//!
//! # Precedence (also in `docs/routing.md`)
//!
//! 1. **Host tier.** The request host is lower-cased and one trailing dot dropped (the caller
//!    strips the port). Tiers are tried in this order:
//!    exact host (`api.example.com`) → wildcard hosts from the longest suffix to the shortest
//!    (`*.eu.example.com` before `*.example.com`) → routes with no hosts (or host `*`).
//!    Wildcards are Envoy-style: `*.example.com` matches any name ending in `.example.com`
//!    (`a.example.com`, `a.b.example.com`) but not `example.com` itself.
//! 2. **Path, within a tier.** exact path → template (more literal segments first, then
//!    position by position literal before `{param}` before `{*rest}`) → prefix (longest first)
//!    → routes with no path matcher.
//! 3. **Ties** (same path rank): more conditions first (a method list counts one, each header
//!    matcher one), then config order.
//! 4. **Fall-through.** The first route of a tier, in that order, whose path, methods and headers
//!    all match wins. If none in a tier does, the next tier is tried, so a host-less catch-all
//!    still answers `api.example.com/unknown`. No match at all is `None` (the caller answers 404).
//!
//! Prefixes match at a segment boundary: `/api` (or `/api/`) matches `/api`, `/api/` and
//! `/api/x`, never `/apix`; `/` matches every path. Methods are compared exactly (`HEAD` does not
//! match a `GET`-only route). Header values are compared byte for byte; any of a repeated
//! header's values may match.

mod matchers;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use http::{HeaderMap, Method};
use meridian_model::{ConfigError, Route};

use matchers::{CompiledRoute, HostPattern, MAX_HOST_LEN, PathMatcher, normalize_host};

/// The route a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteHit {
    /// Position of the route in the config's `routes`.
    pub index: usize,
    /// Bytes of the path matched by a prefix matcher, without its trailing slash, so that
    /// `path[prefix_len..]` is empty or starts with `/` (for `strip_prefix`); 0 for the root
    /// prefix `/` and for every other kind of matcher.
    pub prefix_len: usize,
}

/// All routes of one config version, compiled.
#[derive(Debug)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    exact_hosts: HashMap<Box<str>, Tier>,
    /// Keyed by the suffix with its leading dot (`.example.com` for `*.example.com`).
    wildcard_hosts: HashMap<Box<str>, Tier>,
    any_host: Tier,
}

/// The routes of one host tier, in precedence order.
#[derive(Debug, Default)]
struct Tier {
    /// Exact-path routes by path; each list in tie-break order.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Every other route, sorted by path precedence then tie-break order.
    ordered: Vec<usize>,
}

impl Router {
    /// Compiles all routes of a config version (index = position in `routes`).
    pub fn build(routes: &[Route]) -> Result<Router, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let compiled: Vec<CompiledRoute> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| CompiledRoute::compile(i, &r.matcher, &mut errs))
            .collect();
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut router = Router {
            exact_hosts: HashMap::new(),
            wildcard_hosts: HashMap::new(),
            any_host: Tier::default(),
            routes: Vec::new(),
        };
        for (i, r) in compiled.iter().enumerate() {
            if r.hosts.is_empty() {
                router.any_host.add(i, r);
            }
            for h in &r.hosts {
                let tier = match h {
                    HostPattern::Exact(n) => router.exact_hosts.entry(n.clone()).or_default(),
                    HostPattern::Suffix(s) => router.wildcard_hosts.entry(s.clone()).or_default(),
                    HostPattern::Any => &mut router.any_host,
                };
                tier.add(i, r);
            }
        }
        let tiers = router.exact_hosts.values_mut().chain(router.wildcard_hosts.values_mut());
        for tier in tiers.chain(std::iter::once(&mut router.any_host)) {
            tier.sort(&compiled);
        }
        router.routes = compiled;
        Ok(router)
    }

    /// Finds the route of a request. `host`: the request authority without port, any case;
    /// `path`: the path without the query string.
    pub fn find(&self, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> Option<RouteHit> {
        let mut buf = [0u8; MAX_HOST_LEN];
        if let Some(host) = normalize_host(host, &mut buf) {
            if let Some(hit) =
                self.exact_hosts.get(host).and_then(|t| t.find(&self.routes, path, method, headers))
            {
                return Some(hit);
            }
            if !self.wildcard_hosts.is_empty() {
                // Leftmost dot first = longest suffix first; a dot at 0 would leave an empty label.
                for (at, _) in host.match_indices('.').filter(|&(at, _)| at > 0) {
                    let tier = self.wildcard_hosts.get(&host[at..]);
                    if let Some(hit) = tier.and_then(|t| t.find(&self.routes, path, method, headers)) {
                        return Some(hit);
                    }
                }
            }
        }
        self.any_host.find(&self.routes, path, method, headers)
    }
}

impl Tier {
    fn add(&mut self, index: usize, r: &CompiledRoute) {
        match &r.path {
            PathMatcher::Exact(p) => self.exact.entry(p.clone()).or_default().push(index),
            _ => self.ordered.push(index),
        }
    }

    fn sort(&mut self, routes: &[CompiledRoute]) {
        let tie_break =
            |a: &usize, b: &usize| routes[*b].conditions().cmp(&routes[*a].conditions()).then(a.cmp(b));
        for list in self.exact.values_mut() {
            list.sort_by(tie_break);
        }
        self.ordered.sort_by(|a, b| routes[*a].path_precedence(&routes[*b]).then_with(|| tie_break(a, b)));
    }

    fn find(
        &self,
        routes: &[CompiledRoute],
        path: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<RouteHit> {
        if let Some(list) = self.exact.get(path)
            && let Some(&index) = list.iter().find(|&&i| routes[i].conditions_match(method, headers))
        {
            return Some(RouteHit { index, prefix_len: 0 });
        }
        self.ordered.iter().find_map(|&index| {
            let r = &routes[index];
            let prefix_len = r.path_match(path)?;
            r.conditions_match(method, headers).then_some(RouteHit { index, prefix_len })
        })
    }
}
