//! `control.yaml`: the bootstrap of a control instance (strict: unknown keys are errors).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meridian_model::Dur;
use serde::Deserialize;

/// The bootstrap of one control instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Admin API and node stream address. Default `127.0.0.1:9700`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The embedded store file, relative to the working directory. Default `control.redb`.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// The deployment id; written into the store at its first open and checked on every later
    /// open. Must equal the `deployment` of every config applied.
    pub deployment: String,
    /// A file holding an admin token (its first line); it is stored hashed at every start, so
    /// the first admin can create the other tokens. Optional.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Node ids expected in each region (region → ids); a listed node without a live lease
    /// shows as missing.
    #[serde(default)]
    pub expected_nodes: BTreeMap<String, Vec<String>>,
    /// How long a node stays live after its last sign of life (stream ping, ack). Default 15s.
    #[serde(default = "default_lease")]
    pub lease: Dur,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9700))
}

fn default_store() -> PathBuf {
    PathBuf::from("control.redb")
}

fn default_lease() -> Dur {
    Dur::from_secs(15)
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

impl ControlConfig {
    pub fn parse(yaml: &str) -> Result<ControlConfig, String> {
        let c: ControlConfig = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        if c.deployment.trim().is_empty() {
            return Err("deployment: must not be empty".into());
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<ControlConfig, BootstrapError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| BootstrapError::Read { path: p.clone(), source })?;
        ControlConfig::parse(&text).map_err(|message| BootstrapError::Parse { path: p, message })
    }

    /// The admin token from `admin_token_file`, if set.
    pub fn admin_token(&self) -> Result<Option<String>, BootstrapError> {
        let Some(f) = &self.admin_token_file else { return Ok(None) };
        let text = std::fs::read_to_string(f)
            .map_err(|source| BootstrapError::Read { path: f.display().to_string(), source })?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        if t.is_empty() {
            return Err(BootstrapError::Parse {
                path: f.display().to_string(),
                message: "empty token".into(),
            });
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_with_defaults() {
        let c = ControlConfig::parse("deployment: d\n").unwrap();
        assert_eq!(c.listen.port(), 9700);
        assert_eq!(c.store, PathBuf::from("control.redb"));
        assert_eq!(c.lease.get().as_secs(), 15);
        assert!(ControlConfig::parse("deployment: d\ncolour: blue\n").unwrap_err().contains("colour"));
        assert!(ControlConfig::parse("listen: 127.0.0.1:1\n").is_err());
    }
}
