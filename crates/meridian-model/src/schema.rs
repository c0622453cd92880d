//! JSON Schemas of the two documents, for editors and external tooling. The committed copies in
//! `schema/` are checked against these by the crate's tests (`UPDATE_SCHEMA=1` rewrites them).
//!
//! A schema checks shape only; the semantic rules (references, uniqueness, ranges that depend
//! on other fields) are in [`crate::validate`].

use schemars::schema_for;

use crate::bootstrap::Bootstrap;
use crate::global::GlobalConfig;

/// The JSON Schema of the global config.
pub fn global_schema() -> serde_json::Value {
    sorted(schema_for!(GlobalConfig).to_value())
}

/// The JSON Schema of a node bootstrap.
pub fn bootstrap_schema() -> serde_json::Value {
    sorted(schema_for!(Bootstrap).to_value())
}

/// Object keys in sorted order at every level, so the rendered schema is the same whether or not
/// some other crate in the build turns on serde_json's `preserve_order`.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
