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
    schema_for!(GlobalConfig).to_value()
}

/// The JSON Schema of a node bootstrap.
pub fn bootstrap_schema() -> serde_json::Value {
    schema_for!(Bootstrap).to_value()
}
