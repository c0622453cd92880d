//! The headers policy (transform phase): remove → rename → set → add, on the request and on
//! the response, with every name and value parsed once per config version.

use std::collections::BTreeMap;

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};
use meridian_model::{ConfigError, HeaderOps, HeadersPolicy};

/// A compiled headers policy.
#[derive(Debug, Clone)]
pub(super) struct Headers {
    pub(super) request: Ops,
    pub(super) response: Ops,
}

impl Headers {
    /// `path`: where the policy is, e.g. `policies[2].headers`.
    pub(super) fn build(p: &HeadersPolicy, path: &str, errs: &mut Vec<ConfigError>) -> Headers {
        Headers {
            request: Ops::build(&p.request, &format!("{path}.request"), errs),
            response: Ops::build(&p.response, &format!("{path}.response"), errs),
        }
    }
}

/// One direction's header changes.
#[derive(Debug, Clone, Default)]
pub(super) struct Ops {
    remove: Vec<HeaderName>,
    rename: Vec<(HeaderName, HeaderName)>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl Ops {
    fn build(ops: &HeaderOps, path: &str, errs: &mut Vec<ConfigError>) -> Ops {
        let remove = ops
            .remove
            .iter()
            .enumerate()
            .filter_map(|(k, n)| name(n, &format!("{path}.remove[{k}]"), errs))
            .collect();
        let mut rename = Vec::with_capacity(ops.rename.len());
        for (from, to) in &ops.rename {
            let at = format!("{path}.rename.{from}");
            if let (Some(f), Some(t)) = (name(from, &at, errs), name(to, &at, errs)) {
                rename.push((f, t));
            }
        }
        let set = pairs(&ops.set, &format!("{path}.set"), errs);
        let add = pairs(&ops.add, &format!("{path}.add"), errs);
        Ops { remove, rename, set, add }
    }

    /// The names whose every earlier value these changes replace or remove, or `None` when
    /// they read a value (rename).
    pub(super) fn replaced(&self) -> Option<impl Iterator<Item = &HeaderName>> {
        self.rename.is_empty().then(|| self.remove.iter().chain(self.set.iter().map(|(n, _)| n)))
    }

    /// The names these changes add a value to (after any earlier ones).
    pub(super) fn added(&self) -> impl Iterator<Item = &HeaderName> {
        self.add.iter().map(|(n, _)| n)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.rename.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the changes in the documented order: remove, rename, set, add.
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (from, to) in &self.rename {
            rename(headers, from, to);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

fn name(n: &str, at: &str, errs: &mut Vec<ConfigError>) -> Option<HeaderName> {
    HeaderName::from_bytes(n.as_bytes())
        .map_err(|_| errs.push(ConfigError::new(at, format!("invalid header name {n:?}"))))
        .ok()
}

fn pairs(
    map: &BTreeMap<String, String>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(map.len());
    for (n, v) in map {
        let at = format!("{path}.{n}");
        let n = name(n, &at, errs);
        let v = HeaderValue::from_str(v)
            .map_err(|_| errs.push(ConfigError::new(at, format!("invalid header value {v:?}"))))
            .ok();
        if let (Some(n), Some(v)) = (n, v) {
            out.push((n, v));
        }
    }
    out
}

/// Moves every value of `from` to `to` (appended after any values `to` already has).
fn rename(headers: &mut HeaderMap, from: &HeaderName, to: &HeaderName) {
    if from == to {
        return;
    }
    let Entry::Occupied(e) = headers.entry(from) else { return };
    let (_, mut values) = e.remove_entry_mult();
    let first = values.next();
    // Repeated headers are rare; only they pay for a buffer.
    let rest: Vec<HeaderValue> = values.collect();
    for v in first.into_iter().chain(rest) {
        headers.append(to.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: serde_json::Value) -> Result<Ops, Vec<ConfigError>> {
        let p: HeaderOps = serde_json::from_value(v).expect("valid ops json");
        let mut errs = Vec::new();
        let o = Ops::build(&p, "policies[0].headers.request", &mut errs);
        if errs.is_empty() { Ok(o) } else { Err(errs) }
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn values<'a>(h: &'a HeaderMap, n: &str) -> Vec<&'a str> {
        h.get_all(n).iter().map(|v| v.to_str().unwrap_or("?")).collect()
    }

    #[test]
    fn order_is_remove_rename_set_add() {
        let o = ops(json!({
            "remove": ["x-secret", "x-old"],
            "rename": { "x-old": "x-new", "x-a": "x-b" },
            "set": { "x-b": "set", "X-Set": "1" },
            "add": { "x-b": "added", "x-set": "2", "x-multi": "m" }
        }))
        .expect("compiles");
        let mut h = map(&[("x-secret", "s"), ("x-old", "o"), ("x-a", "a"), ("x-set", "0"), ("x-multi", "0")]);
        o.apply(&mut h);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("x-new"), "removed before the rename could see it");
        assert!(!h.contains_key("x-a"));
        assert_eq!(values(&h, "x-b"), ["set", "added"], "renamed, then set replaced, then add appended");
        assert_eq!(values(&h, "x-set"), ["1", "2"]);
        assert_eq!(values(&h, "x-multi"), ["0", "m"]);
    }

    #[test]
    fn rename_keeps_every_value_and_existing_target_values() {
        let o = ops(json!({ "rename": { "x-from": "x-to", "x-same": "X-Same" } })).expect("compiles");
        let mut h = map(&[("x-from", "1"), ("x-from", "2"), ("x-to", "0"), ("x-same", "s")]);
        o.apply(&mut h);
        assert_eq!(values(&h, "x-to"), ["0", "1", "2"]);
        assert!(!h.contains_key("x-from"));
        assert_eq!(values(&h, "x-same"), ["s"]);
        let mut empty = HeaderMap::new();
        o.apply(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn empty_ops() {
        assert!(ops(json!({})).expect("compiles").is_empty());
        assert!(!ops(json!({ "remove": ["a"] })).expect("compiles").is_empty());
    }

    #[test]
    fn bad_names_and_values_are_config_errors_with_paths() {
        let errs = ops(json!({
            "remove": ["ok", "bad name"],
            "rename": { "x": "bad:name" },
            "set": { "x-v": "bad\nvalue" },
            "add": { "bad(": "v" }
        }))
        .expect_err("must fail");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "policies[0].headers.request.remove[1]",
                "policies[0].headers.request.rename.x",
                "policies[0].headers.request.set.x-v",
                "policies[0].headers.request.add.bad(",
            ]
        );
    }
}
