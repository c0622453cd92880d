//! Export and import: the config YAML (what `apply` takes), the drain switches and the whole
//! version history of every kind. Tokens, the audit log and node state are not exported.

use std::collections::BTreeMap;

use meridian_model::ConfigError;
use meridian_sync::protocol::{DrainsContent, Kind};
use serde::{Deserialize, Serialize};

use super::{Control, ControlError};
use crate::content::{config_from_canonical, drains_canonical, drains_from_canonical};
use crate::store::VersionRecord;

/// A backup document (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    /// Format of this document; 1.
    pub format: u32,
    pub deployment: String,
    pub exported_at_ms: u64,
    /// The current config as YAML, accepted by `apply` as is.
    #[serde(default)]
    pub config_yaml: Option<String>,
    /// The current drain switches.
    #[serde(default)]
    pub drains: DrainsContent,
    /// Every version of every kind, oldest first.
    #[serde(default)]
    pub history: BTreeMap<Kind, Vec<VersionRecord>>,
}

/// How an import treats the backup's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Restores the history as it was: refused when the backup is behind the store (a lower
    /// version than current) or its history diverged from the store's.
    #[default]
    Restore,
    /// Writes the backup's latest content of each kind as a new version on top of the
    /// store's (like a rollback), so versions still only grow.
    NewVersion,
}

impl Control {
    pub async fn export(&self) -> Result<Backup, ControlError> {
        let mut history = BTreeMap::new();
        for kind in Kind::ALL {
            history.insert(kind, self.store.history(kind).await?);
        }
        let config_yaml = self.current_config().await?.map(|(_, v)| v.to_yaml());
        Ok(Backup {
            format: 1,
            deployment: self.deployment.clone(),
            exported_at_ms: self.now_ms(),
            config_yaml,
            drains: self.drains().await?.1,
            history,
        })
    }

    /// Imports a backup; returns the version of each kind afterwards.
    pub async fn import(
        &self,
        b: Backup,
        mode: ImportMode,
        author: &str,
    ) -> Result<BTreeMap<Kind, u64>, ControlError> {
        if b.deployment != self.deployment {
            return Err(ControlError::BadRequest(format!(
                "the backup is of deployment {:?}, not {:?}",
                b.deployment, self.deployment
            )));
        }
        for (kind, records) in &b.history {
            check_records(*kind, records)?;
        }
        // Check every kind before writing any.
        let mut plan = Vec::new();
        for kind in Kind::ALL {
            let records = b.history.get(&kind).cloned().unwrap_or_default();
            let Some(latest) = records.last() else { continue };
            let cur = self.store.current(kind).await?;
            let cur_v = cur.as_ref().map_or(0, |r| r.version);
            match mode {
                ImportMode::Restore => {
                    if latest.version < cur_v {
                        return Err(ControlError::Regression(format!(
                            "the backup's {} version {} is lower than the current {cur_v}; import with mode=new_version to make its content a new version",
                            kind.as_str(),
                            latest.version
                        )));
                    }
                    if let Some(c) = &cur
                        && records[(cur_v - 1) as usize].hash != c.hash
                    {
                        return Err(ControlError::Conflict { current: cur_v });
                    }
                    plan.push((kind, cur_v, records[cur_v as usize..].to_vec()));
                }
                ImportMode::NewVersion => {
                    if cur.as_ref().is_some_and(|c| c.hash == latest.hash) {
                        continue;
                    }
                    let r = VersionRecord {
                        version: cur_v + 1,
                        created_at_ms: self.now_ms(),
                        author: author.to_string(),
                        comment: format!("import of version {} from a backup", latest.version),
                        ..latest.clone()
                    };
                    plan.push((kind, cur_v, vec![r]));
                }
            }
        }
        for (kind, expected, records) in plan {
            self.commit(kind, expected, records).await?;
        }
        let mut out = BTreeMap::new();
        for kind in Kind::ALL {
            out.insert(kind, self.store.current(kind).await?.map_or(0, |r| r.version));
        }
        Ok(out)
    }
}

/// A backup's history must be 1, 2, 3, … and every content must match its hash.
fn check_records(kind: Kind, records: &[VersionRecord]) -> Result<(), ControlError> {
    for (i, r) in records.iter().enumerate() {
        let path = format!("history.{}[{i}]", kind.as_str());
        let bad = |m: String| ControlError::Invalid(vec![ConfigError::new(path.clone(), m)]);
        if r.version != i as u64 + 1 {
            return Err(bad(format!("version {} where {} was expected", r.version, i + 1)));
        }
        let hash = match kind {
            Kind::Config => config_from_canonical(&r.content).map_err(bad)?.hash().to_string(),
            Kind::Drains => drains_canonical(&drains_from_canonical(&r.content).map_err(bad)?).1,
            Kind::Controls => super::controls::canonical_hash(&r.content).map_err(bad)?,
        };
        if hash != r.hash {
            return Err(bad(format!("content does not match its hash {}", r.hash)));
        }
    }
    Ok(())
}
