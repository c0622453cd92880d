//! Config and drain writes: plan, apply, rollback, drain switches.

use std::collections::BTreeSet;

use meridian_model::{ConfigError, ValidConfig, parse_global};
use meridian_sync::protocol::{DrainsContent, Kind};
use serde::Serialize;

use super::rollout::check_regions;
use super::{Control, ControlError};
use crate::content::{
    Target, config_from_canonical, drains_canonical, drains_from_canonical, is_drained, set_drain,
};
use crate::diff::{Change, diff};
use crate::store::VersionRecord;

/// What applying a config would change.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The version the plan was made against (0: none yet); `apply` names it.
    pub current_version: u64,
    pub current_hash: Option<String>,
    /// The hash the new config would have.
    pub hash: String,
    pub changes: Vec<Change>,
    /// The plan as text.
    pub text: String,
}

/// The result of a config write.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: u64,
    pub hash: String,
    /// false: the content equals the current version; nothing was written.
    pub changed: bool,
    pub changes: Vec<Change>,
    /// With `regions`: the regions the new version goes to (the others stay where they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
}

/// The result of a drain switch write.
#[derive(Debug, Clone, Serialize)]
pub struct DrainChange {
    pub target: String,
    pub drained: bool,
    /// The drains version now current.
    pub version: u64,
    pub changed: bool,
}

impl Control {
    /// Validates a config against this deployment.
    fn validate(&self, yaml: &str) -> Result<ValidConfig, ControlError> {
        let valid = parse_global(yaml).map_err(|e| ControlError::Invalid(e.0))?;
        if valid.config().deployment != self.deployment {
            return Err(ControlError::Invalid(vec![ConfigError::new(
                "deployment",
                format!(
                    "{:?} is not this control plane's deployment {:?}",
                    valid.config().deployment,
                    self.deployment
                ),
            )]));
        }
        Ok(valid)
    }

    /// The current config, validated again from its stored canonical form.
    pub async fn current_config(&self) -> Result<Option<(VersionRecord, ValidConfig)>, ControlError> {
        let Some(cur) = self.store.current(Kind::Config).await? else { return Ok(None) };
        let valid = config_from_canonical(&cur.content)
            .map_err(|e| ControlError::Store(crate::store::StoreError::Backend(e)))?;
        Ok(Some((cur, valid)))
    }

    pub async fn plan(&self, yaml: &str) -> Result<Plan, ControlError> {
        let valid = self.validate(yaml)?;
        let cur = self.current_config().await?;
        let changes = diff(cur.as_ref().map(|(_, v)| v.config()), valid.config());
        Ok(Plan {
            current_version: cur.as_ref().map_or(0, |(r, _)| r.version),
            current_hash: cur.map(|(r, _)| r.hash),
            hash: valid.hash().to_string(),
            text: crate::diff::render(&changes),
            changes,
        })
    }

    /// Stores a new config version if `expected` is still the current version. With `regions`,
    /// only those regions get it: every other region is first pinned where it is.
    pub async fn apply(
        &self,
        yaml: &str,
        expected: u64,
        author: &str,
        comment: &str,
        regions: Option<&[String]>,
    ) -> Result<Applied, ControlError> {
        let valid = self.validate(yaml)?;
        self.write_config(valid, expected, author, comment, regions).await
    }

    async fn write_config(
        &self,
        valid: ValidConfig,
        expected: u64,
        author: &str,
        comment: &str,
        regions: Option<&[String]>,
    ) -> Result<Applied, ControlError> {
        let cur = self.current_config().await?;
        let current = cur.as_ref().map_or(0, |(r, _)| r.version);
        if current != expected {
            return Err(ControlError::Conflict { current });
        }
        let names = |v: &ValidConfig| -> BTreeSet<String> {
            v.config().regions.iter().map(|r| r.name.clone()).collect()
        };
        let selected = match regions {
            None => None,
            Some(_) if current == 0 => {
                return Err(ControlError::BadRequest(
                    "regions: there is no version yet; the first version goes to every region".into(),
                ));
            }
            Some(r) => Some(check_regions(r, &names(&valid), "the config being applied")?),
        };
        let changes = diff(cur.as_ref().map(|(_, v)| v.config()), valid.config());
        if cur.as_ref().is_some_and(|(r, _)| r.hash == valid.hash()) {
            return Ok(Applied {
                version: current,
                hash: valid.hash().to_string(),
                changed: false,
                changes,
                regions: None,
            });
        }
        // A staged apply is three writes, each compare-and-swapped: hold the other regions,
        // write the version, release the selected ones. Stopped part-way (a crash, a lost
        // compare), regions stay held where they are: a version never reaches a region early.
        let held = match &selected {
            None => None,
            Some(sel) => {
                let mut all = names(&valid);
                all.extend(cur.as_ref().map(|(_, v)| names(v)).unwrap_or_default());
                Some(self.hold_others(sel, &all, current, author).await?)
            }
        };
        let record = VersionRecord {
            version: current + 1,
            hash: valid.hash().to_string(),
            content: valid.canonical_json().to_string(),
            created_at_ms: self.now_ms(),
            author: author.to_string(),
            comment: comment.to_string(),
        };
        if let Err(e) = self.commit(Kind::Config, current, vec![record]).await {
            if let Some((before, written)) = held {
                self.restore_pins(before, written, author).await;
            }
            return Err(e);
        }
        if let Some(sel) = &selected {
            let comment = format!(
                "release {} to version {}",
                sel.iter().cloned().collect::<Vec<_>>().join(", "),
                current + 1
            );
            self.release(sel, author, &comment).await?;
        }
        Ok(Applied {
            version: current + 1,
            hash: valid.hash().to_string(),
            changed: true,
            changes,
            regions: selected.map(|s| s.into_iter().collect()),
        })
    }

    /// A new version with the content of an old one.
    pub async fn rollback(
        &self,
        version: u64,
        expected: Option<u64>,
        author: &str,
        regions: Option<&[String]>,
    ) -> Result<Applied, ControlError> {
        let old = self
            .store
            .version(Kind::Config, version)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("config version {version} does not exist")))?;
        let valid = config_from_canonical(&old.content)
            .map_err(|e| ControlError::Invalid(vec![ConfigError::new("", e)]))?;
        let current = match expected {
            Some(e) => e,
            None => self.store.current(Kind::Config).await?.map_or(0, |r| r.version),
        };
        self.write_config(valid, current, author, &format!("rollback to version {version}"), regions).await
    }

    /// The current drain switches and their version (0: none set yet).
    pub async fn drains(&self) -> Result<(u64, DrainsContent), ControlError> {
        match self.store.current(Kind::Drains).await? {
            None => Ok((0, DrainsContent::default())),
            Some(r) => {
                let d = drains_from_canonical(&r.content)
                    .map_err(|e| ControlError::Store(crate::store::StoreError::Backend(e)))?;
                Ok((r.version, d))
            }
        }
    }

    /// Sets or clears a drain switch; each change is a new drains version. Not planned against
    /// a version, so a lost compare-and-swap is retried on the fresh state.
    pub async fn set_drain(
        &self,
        target: &str,
        drained: bool,
        author: &str,
    ) -> Result<DrainChange, ControlError> {
        let t = Target::parse(target).ok_or_else(|| {
            ControlError::BadRequest(format!(
                "invalid drain target {target:?}: expected REGION or SERVICE@REGION"
            ))
        })?;
        if drained
            && let Some((_, cfg)) = self.current_config().await?
            && !t.exists_in(&cfg)
        {
            return Err(ControlError::NotFound(format!(
                "{target}: no such region or service in the current config"
            )));
        }
        for _ in 0..8 {
            let (version, mut d) = self.drains().await?;
            if !set_drain(&mut d, &t, drained) {
                return Ok(DrainChange { target: target.to_string(), drained, version, changed: false });
            }
            let (content, hash) = drains_canonical(&d);
            let verb = if drained { "drain" } else { "undrain" };
            let record = VersionRecord {
                version: version + 1,
                hash,
                content,
                created_at_ms: self.now_ms(),
                author: author.to_string(),
                comment: format!("{verb} {target}"),
            };
            match self.commit(Kind::Drains, version, vec![record]).await {
                Ok(()) => {
                    return Ok(DrainChange {
                        target: target.to_string(),
                        drained,
                        version: version + 1,
                        changed: true,
                    });
                }
                Err(ControlError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ControlError::Conflict { current: self.drains().await?.0 })
    }

    /// Whether a target is drained now.
    pub async fn drained(&self, target: &str) -> Result<(u64, bool), ControlError> {
        let t = Target::parse(target)
            .ok_or_else(|| ControlError::BadRequest(format!("invalid drain target {target:?}")))?;
        let (v, d) = self.drains().await?;
        Ok((v, is_drained(&d, &t)))
    }
}
