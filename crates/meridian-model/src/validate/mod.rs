//! Semantic validation: every problem is collected (not just the first), each naming the path
//! of the offending value in the form `routes[2].service: unknown service "ordrs"`.
//!
//! The checks are split by part of the document: `catalog` (deployment, regions, services,
//! consumers), `routes`, `policies` and `node` (the bootstrap); [`syntax`] holds the lexical
//! checks they share (public, so that other crates judge hosts and headers the same way).

mod catalog;
mod dns;
mod node;
mod policies;
mod resilience;
mod routes;
mod routing_controls;
pub mod syntax;

use std::collections::HashMap;

use crate::bootstrap::Bootstrap;
use crate::dur::Dur;
use crate::global::GlobalConfig;
use crate::valid::ConfigError;

/// All problems in a global config, in document order.
pub fn global(c: &GlobalConfig) -> Vec<ConfigError> {
    let mut errs = Errors::default();
    catalog::check(c, &mut errs);
    routes::check(c, &mut errs);
    policies::check(c, &mut errs);
    dns::check(c, &mut errs);
    errs.0
}

/// All problems in a bootstrap on its own.
pub fn bootstrap(b: &Bootstrap) -> Vec<ConfigError> {
    let mut errs = Errors::default();
    node::check(b, &mut errs);
    errs.0
}

/// Problems of a bootstrap relative to the global config it will run.
pub fn bootstrap_against(b: &Bootstrap, c: &GlobalConfig) -> Vec<ConfigError> {
    let mut errs = Errors::default();
    if !c.regions.iter().any(|r| r.name == b.node.region) {
        errs.push("node.region", format!("unknown region {:?}", b.node.region));
    }
    errs.0
}

/// The error collector the checks push into.
#[derive(Default)]
pub(crate) struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError::new(path, message));
    }

    /// Records `r`'s error, if any, at `path`.
    pub fn check<T>(&mut self, path: impl FnOnce() -> String, r: Result<T, String>) {
        if let Err(m) = r {
            self.push(path(), m);
        }
    }

    /// Checks the names of a list of items: each well-formed and unique. Returns name → index
    /// of its first use.
    pub fn names<'a>(
        &mut self,
        kind: &str,
        items: impl IntoIterator<Item = &'a str>,
        well_formed: fn(&str) -> Result<(), String>,
    ) -> HashMap<&'a str, usize> {
        let mut seen = HashMap::new();
        for (i, name) in items.into_iter().enumerate() {
            let path = format!("{kind}[{i}].name");
            match well_formed(name) {
                Err(m) => self.push(path, m),
                Ok(()) => {
                    if let Some(first) = seen.get(name) {
                        self.push(path, format!("duplicate name {name:?} (also {kind}[{first}])"));
                    } else {
                        seen.insert(name, i);
                    }
                }
            }
        }
        seen
    }

    /// A duration that must be greater than zero.
    pub fn positive(&mut self, path: impl FnOnce() -> String, d: Dur) {
        if d.get().is_zero() {
            self.push(path(), "must be greater than 0");
        }
    }
}

#[cfg(test)]
mod tests;
