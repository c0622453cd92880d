//! Staged rollout: a target config version per region. A region with a pin stays on its pinned
//! version; every other region follows the newest. Nodes refuse a lower version than they run,
//! so a region's target only ever grows: a pin below what the region is on is refused, and a
//! region is taken back with `rollback --regions` (a new version with the old content).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Control, ControlError};
use crate::store::RolloutRecord;

/// The result of a rollout change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutChange {
    /// The rollout version now current.
    pub rollout_version: u64,
    /// false: nothing to change (no new rollout version).
    pub changed: bool,
    /// Region → pinned config version, after the change.
    pub pins: BTreeMap<String, u64>,
}

/// One region in `GET /v1/rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRollout {
    pub region: String,
    /// The config version its nodes get.
    pub target: u64,
    /// The version it is pinned at; absent when it follows the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<u64>,
    /// Expected or live nodes of the region.
    pub nodes: usize,
    /// Of those, how many acked the target (or later).
    pub on_target: usize,
    /// The largest lag behind the target among them.
    pub lag: u64,
}

/// `GET /v1/rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The newest config version (0: none).
    pub latest: u64,
    /// The rollout record's version (0: never changed).
    pub rollout_version: u64,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub comment: String,
    pub regions: Vec<RegionRollout>,
}

fn list(regions: &BTreeSet<String>) -> String {
    regions.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Refuses region names not in `known`, naming them and the known ones.
pub(super) fn check_regions(
    asked: &[String],
    known: &BTreeSet<String>,
    what: &str,
) -> Result<BTreeSet<String>, ControlError> {
    if asked.is_empty() {
        return Err(ControlError::BadRequest("regions: name at least one region".into()));
    }
    let unknown: Vec<&str> = asked.iter().filter(|r| !known.contains(*r)).map(String::as_str).collect();
    if !unknown.is_empty() {
        return Err(ControlError::BadRequest(format!(
            "unknown region(s) {}: {what} has regions {}",
            unknown.join(", "),
            list(known)
        )));
    }
    Ok(asked.iter().cloned().collect())
}

impl Control {
    /// The stored rollout record (version 0 when none was written).
    pub async fn rollout_record(&self) -> Result<RolloutRecord, ControlError> {
        Ok(self.store.rollout().await?.unwrap_or_default())
    }

    /// The regions the current config names, and its version (0: none).
    async fn current_regions(&self) -> Result<(u64, BTreeSet<String>), ControlError> {
        Ok(match self.current_config().await? {
            None => (0, BTreeSet::new()),
            Some((r, v)) => (r.version, v.config().regions.iter().map(|x| x.name.clone()).collect()),
        })
    }

    /// A new rollout record with `pins`, compared on `expected` (the rollout version read).
    async fn write_pins(
        &self,
        expected: u64,
        pins: BTreeMap<String, u64>,
        author: &str,
        comment: String,
    ) -> Result<RolloutChange, ControlError> {
        let record = RolloutRecord {
            version: expected + 1,
            pins: pins.clone(),
            created_at_ms: self.now_ms(),
            author: author.to_string(),
            comment,
        };
        self.commit_rollout(expected, record).await?;
        Ok(RolloutChange { rollout_version: expected + 1, changed: true, pins })
    }

    /// Holds every region but `selected` on the version it is on, before a new config version
    /// `latest + 1` is written that only `selected` should get. Always a new rollout version,
    /// even when every other region is already held: a staged apply that relies on those pins
    /// must make a concurrent one that fails unable to restore them (see `restore_pins`).
    /// Returns the record read and the rollout version written.
    pub(super) async fn hold_others(
        &self,
        selected: &BTreeSet<String>,
        regions: &BTreeSet<String>,
        latest: u64,
        author: &str,
    ) -> Result<(RolloutRecord, u64), ControlError> {
        let ro = self.rollout_record().await?;
        let mut pins = ro.pins.clone();
        for r in regions.iter().chain(ro.pins.keys()).filter(|r| !selected.contains(*r)) {
            pins.entry(r.clone()).or_insert_with(|| ro.target(r, latest));
        }
        let held: BTreeSet<String> = pins.keys().filter(|r| !selected.contains(*r)).cloned().collect();
        let comment = format!("version {} to {} only; hold {}", latest + 1, list(selected), list(&held));
        let c = self.write_pins(ro.version, pins, author, comment).await?;
        Ok((ro, c.rollout_version))
    }

    /// Undoes [`Control::hold_others`] after a failed config write, compared on the rollout
    /// version it wrote: when anyone changed the rollout since (another staged apply relying on
    /// these pins, an operator), it is left alone. Either way no node moves backwards; a region
    /// left held shows in `meridian rollout status`.
    pub(super) async fn restore_pins(&self, before: RolloutRecord, written: u64, author: &str) {
        let comment = "restore: the config write failed".to_string();
        if let Err(e) = self.write_pins(written, before.pins, author, comment).await {
            tracing::warn!(error = %e, "rollout not restored after a failed staged apply; regions stay held");
        }
    }

    /// Unpins `regions` (after the version they get was written), retried on the fresh record:
    /// removing pins of these regions does not depend on what others changed meanwhile.
    pub(super) async fn release(
        &self,
        regions: &BTreeSet<String>,
        author: &str,
        comment: &str,
    ) -> Result<RolloutChange, ControlError> {
        for _ in 0..8 {
            let ro = self.rollout_record().await?;
            let mut pins = ro.pins.clone();
            pins.retain(|r, _| !regions.contains(r));
            if pins == ro.pins {
                return Ok(RolloutChange { rollout_version: ro.version, changed: false, pins });
            }
            match self.write_pins(ro.version, pins, author, comment.to_string()).await {
                Err(ControlError::RolloutConflict { .. }) => continue,
                r => return r,
            }
        }
        Err(ControlError::RolloutConflict { current: self.rollout_record().await?.version })
    }

    /// `promote`: `regions` (or every region) follow the newest version. With `expected`, the
    /// change is compared on that rollout version (409 when it moved).
    pub async fn promote(
        &self,
        regions: Option<Vec<String>>,
        expected: Option<u64>,
        author: &str,
    ) -> Result<RolloutChange, ControlError> {
        let ro = self.rollout_record().await?;
        if expected.is_some_and(|e| e != ro.version) {
            return Err(ControlError::RolloutConflict { current: ro.version });
        }
        let (latest, mut known) = self.current_regions().await?;
        known.extend(ro.pins.keys().cloned());
        let selected = match regions {
            Some(r) => check_regions(&r, &known, &format!("config version {latest}"))?,
            None => ro.pins.keys().cloned().collect(),
        };
        let mut pins = ro.pins.clone();
        pins.retain(|r, _| !selected.contains(r));
        if pins == ro.pins {
            return Ok(RolloutChange { rollout_version: ro.version, changed: false, pins });
        }
        let promoted: BTreeSet<String> = ro.pins.keys().filter(|r| !pins.contains_key(*r)).cloned().collect();
        let comment = format!("promote {} to the newest version ({latest})", list(&promoted));
        self.write_pins(ro.version, pins, author, comment).await
    }

    /// `pin`: `region` stays on config `version`. Refused below what the region is on (its nodes
    /// would refuse it): a region goes back with `rollback VERSION --regions REGION`.
    pub async fn pin(
        &self,
        region: &str,
        version: u64,
        expected: Option<u64>,
        author: &str,
    ) -> Result<RolloutChange, ControlError> {
        let ro = self.rollout_record().await?;
        if expected.is_some_and(|e| e != ro.version) {
            return Err(ControlError::RolloutConflict { current: ro.version });
        }
        let (latest, known) = self.current_regions().await?;
        check_regions(&[region.to_string()], &known, &format!("config version {latest}"))?;
        if version == 0 || version > latest {
            return Err(ControlError::NotFound(format!(
                "config version {version} does not exist (the newest is {latest})"
            )));
        }
        let on = ro.target(region, latest);
        if version < on {
            return Err(ControlError::Regression(format!(
                "region {region} is on config version {on}, and nodes refuse a lower version; to take \
                 it back to version {version}'s content, run `meridian rollback {version} --regions {region}` \
                 (a new version with that content, for that region only)"
            )));
        }
        if ro.pins.get(region) == Some(&version) {
            return Ok(RolloutChange { rollout_version: ro.version, changed: false, pins: ro.pins });
        }
        let mut pins = ro.pins.clone();
        pins.insert(region.to_string(), version);
        self.write_pins(ro.version, pins, author, format!("pin {region} at version {version}")).await
    }

    /// Per region: target, pin, and how many of its nodes run the target.
    pub async fn rollout_status(&self) -> Result<RolloutStatus, ControlError> {
        let ro = self.rollout_record().await?;
        let (latest, mut regions) = self.current_regions().await?;
        regions.extend(ro.pins.keys().cloned());
        let st = self.status().await?;
        regions.extend(st.nodes.iter().map(|n| n.region.clone()).filter(|r| !r.is_empty()));
        let regions = regions
            .into_iter()
            .map(|region| {
                let target = ro.target(&region, latest);
                let applied: Vec<u64> = st
                    .nodes
                    .iter()
                    .filter(|n| n.region == region && (n.expected || n.live))
                    .map(|n| n.kinds.get(&meridian_sync::protocol::Kind::Config).map_or(0, |k| k.applied))
                    .collect();
                RegionRollout {
                    pinned: ro.pins.get(&region).copied(),
                    nodes: applied.len(),
                    on_target: applied.iter().filter(|a| **a >= target).count(),
                    lag: applied.iter().map(|a| target.saturating_sub(*a)).max().unwrap_or(0),
                    target,
                    region,
                }
            })
            .collect();
        Ok(RolloutStatus {
            latest,
            rollout_version: ro.version,
            author: ro.author,
            comment: ro.comment,
            regions,
        })
    }
}
