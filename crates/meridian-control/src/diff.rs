//! The plan: what applying a config would change, computed on the parsed models (so layout,
//! comments, key order and spelled-out defaults never show as changes).

use std::collections::BTreeMap;

use meridian_model::GlobalConfig;
use serde::Serialize;
use serde_json::Value;

/// One changed item: a region, service, route, policy or consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `added`, `changed` or `removed`.
    pub op: &'static str,
    /// `regions`, `services`, `routes`, `policies`, `consumers`.
    pub section: &'static str,
    pub name: String,
    /// For `changed`: the fields that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Every change from `old` (none: an empty deployment) to `new`, in section order.
pub fn diff(old: Option<&GlobalConfig>, new: &GlobalConfig) -> Vec<Change> {
    // An empty deployment: the new one with every list cleared (new fields need no change here).
    let mut empty = new.clone();
    empty.regions.clear();
    empty.services.clear();
    empty.routes.clear();
    empty.policies.clear();
    empty.consumers.clear();
    let old = old.unwrap_or(&empty);
    let mut out = Vec::new();
    section(&mut out, "regions", named(&old.regions, |r| &r.name), named(&new.regions, |r| &r.name));
    section(&mut out, "services", named(&old.services, |s| &s.name), named(&new.services, |s| &s.name));
    section(&mut out, "routes", named(&old.routes, |r| &r.name), named(&new.routes, |r| &r.name));
    section(&mut out, "policies", named(&old.policies, |p| &p.name), named(&new.policies, |p| &p.name));
    section(&mut out, "consumers", named(&old.consumers, |c| &c.name), named(&new.consumers, |c| &c.name));
    // Every other top-level field (deployment-wide settings) by name.
    let (o, n) =
        (serde_json::to_value(old).unwrap_or(Value::Null), serde_json::to_value(new).unwrap_or(Value::Null));
    let lists = ["regions", "services", "routes", "policies", "consumers"];
    for f in changed_fields(&o, &n).into_iter().filter(|f| !lists.contains(&f.as_str())) {
        out.push(Change { op: "changed", section: "settings", name: f, fields: vec![] });
    }
    out
}

fn named<T: Serialize>(items: &[T], name: impl Fn(&T) -> &String) -> BTreeMap<String, Value> {
    items.iter().map(|i| (name(i).clone(), serde_json::to_value(i).unwrap_or(Value::Null))).collect()
}

fn section(
    out: &mut Vec<Change>,
    section: &'static str,
    old: BTreeMap<String, Value>,
    new: BTreeMap<String, Value>,
) {
    for (name, v) in &new {
        match old.get(name) {
            None => out.push(Change { op: "added", section, name: name.clone(), fields: vec![] }),
            Some(o) if o != v => {
                out.push(Change { op: "changed", section, name: name.clone(), fields: changed_fields(o, v) })
            }
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        out.push(Change { op: "removed", section, name: name.clone(), fields: vec![] });
    }
}

fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let (Value::Object(o), Value::Object(n)) = (old, new) else { return vec![] };
    let mut keys: Vec<String> =
        o.keys().chain(n.keys()).filter(|k| o.get(*k) != n.get(*k)).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The plan as text, one line per change: `+ routes/users`, `~ services/demo (endpoints)`.
pub fn render(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_string();
    }
    let mut s = String::new();
    for c in changes {
        let sign = match c.op {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        s.push_str(&format!("{sign} {}/{}", c.section, c.name));
        if !c.fields.is_empty() {
            s.push_str(&format!(" ({})", c.fields.join(", ")));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> GlobalConfig {
        meridian_model::parse_global(y).unwrap().config().clone()
    }

    #[test]
    fn added_changed_removed() {
        let a = cfg(
            "regions: [{name: r}]\nservices: [{name: s, endpoints: {r: [{address: \"127.0.0.1:1\"}]}}]\n\
                     routes: [{name: a, service: s}, {name: b, service: s, match: {path: {prefix: /b}}}]\n",
        );
        let b = cfg(
            "regions: [{name: r}]\nservices: [{name: s, endpoints: {r: [{address: \"127.0.0.1:2\"}]}}]\n\
                     routes: [{name: a, service: s}, {name: c, service: s, match: {path: {prefix: /c}}}]\n",
        );
        let text = render(&diff(Some(&a), &b));
        assert_eq!(text, "~ services/s (endpoints)\n+ routes/c\n- routes/b\n", "{text}");
        assert_eq!(render(&diff(Some(&a), &a)), "no changes\n");
        assert_eq!(diff(None, &a).len(), 4);
    }
}
