//! Layer 1 of Meridian: the config model.
//!
//! Two documents, as Envoy's bootstrap vs xDS: the per-node [`Bootstrap`] and the
//! deployment-wide [`GlobalConfig`]. Both are YAML, strict (unknown keys are errors) and
//! validated whole, every error naming its path (`routes[2].service: unknown service "ordrs"`).
//! A validated global config becomes a [`ValidConfig`] with a canonical form and a content hash.

pub mod bootstrap;
pub mod dns;
pub mod dur;
pub mod global;
pub mod resilience;

pub use bootstrap::*;
pub use dur::Dur;
pub use global::*;
pub use resilience::*;
pub mod normalize;
pub mod schema;
pub mod valid;
pub mod validate;
mod yaml_error;

pub use schema::{bootstrap_schema, global_schema};

pub use valid::{
    ConfigError, ConfigErrors, ValidConfig, check_bootstrap, load_bootstrap, load_global, parse_bootstrap,
    parse_global, validate_global,
};
