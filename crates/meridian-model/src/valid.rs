//! Parsing and the validated form of the config.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::bootstrap::Bootstrap;
use crate::global::GlobalConfig;

/// One problem in a config document, with the path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is, e.g. `routes[2].service`; empty for the document as a whole.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a document; a config with any error is rejected whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A global config that passed validation, with its canonical form and content hash.
///
/// The canonical form is the model after normalisation (see [`crate::normalize`]: host and
/// header names lowercase) serialized as compact JSON: every default filled in, struct fields in
/// declaration order, map keys sorted (all maps are `BTreeMap`). The hash is the SHA-256 of that
/// JSON, so two YAML files that differ only in layout, comments, key order, the case of host or
/// header names, or spelled-out defaults have the same hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig {
    config: GlobalConfig,
    canonical: String,
    hash: String,
    yaml: String,
}

impl ValidConfig {
    pub fn config(&self) -> &GlobalConfig {
        &self.config
    }
    /// Lowercase hex SHA-256 of [`Self::canonical_json`].
    pub fn hash(&self) -> &str {
        &self.hash
    }
    pub fn canonical_json(&self) -> &str {
        &self.canonical
    }
    /// The canonical model as YAML: every default spelled out. Parsing it gives the same hash.
    pub fn to_yaml(&self) -> String {
        self.yaml.clone()
    }
}

/// Parses and validates a global config document.
pub fn parse_global(yaml: &str) -> Result<ValidConfig, ConfigErrors> {
    let config: GlobalConfig = from_yaml(yaml)?;
    validate_global(config)
}

/// Validates an already-deserialized global config.
pub fn validate_global(mut config: GlobalConfig) -> Result<ValidConfig, ConfigErrors> {
    let errors = crate::validate::global(&config);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    crate::normalize::normalize(&mut config);
    let canonical = serde_json::to_string(&config).map_err(|e| ConfigError::new("", e.to_string()))?;
    let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
    let yaml = serde_saphyr::to_string(&config).map_err(|e| ConfigError::new("", e.to_string()))?;
    Ok(ValidConfig { config, canonical, hash, yaml })
}

/// Parses and validates a bootstrap document (on its own; see [`check_bootstrap`]).
pub fn parse_bootstrap(yaml: &str) -> Result<Bootstrap, ConfigErrors> {
    let b: Bootstrap = from_yaml(yaml)?;
    let errors = crate::validate::bootstrap(&b);
    if errors.is_empty() { Ok(b) } else { Err(ConfigErrors(errors)) }
}

/// Checks a bootstrap against the global config it will run (its region must exist).
pub fn check_bootstrap(b: &Bootstrap, global: &ValidConfig) -> Result<(), ConfigErrors> {
    let errors = crate::validate::bootstrap_against(b, global.config());
    if errors.is_empty() { Ok(()) } else { Err(ConfigErrors(errors)) }
}

/// Reads and validates a global config file.
pub fn load_global(path: &Path) -> Result<ValidConfig, ConfigErrors> {
    parse_global(&read(path)?)
}

/// Reads and validates a bootstrap file.
pub fn load_bootstrap(path: &Path) -> Result<Bootstrap, ConfigErrors> {
    parse_bootstrap(&read(path)?)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))
}

fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(yaml).map_err(|e| crate::yaml_error::to_config_error(yaml, &e))
}
