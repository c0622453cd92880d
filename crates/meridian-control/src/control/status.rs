//! The fleet as this instance sees it: every known node plus every expected one, with its
//! versions per kind, lag, lease and whether it is missing.

use std::collections::BTreeMap;

use meridian_sync::protocol::{Ack, Kind};
use serde::{Deserialize, Serialize};

use super::{Control, ControlError};
use crate::store::{Nack, NodeRecord};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Current {
    pub version: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindStatus {
    /// Last version acked ok (0: none).
    pub applied: u64,
    /// The hash the node runs for this kind.
    pub hash: String,
    /// The version this node should run: for config, its region's rollout target (pinned or
    /// the newest); for other kinds, the current version.
    #[serde(default)]
    pub target: u64,
    /// Target minus applied.
    pub lag: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nack: Option<Nack>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub region: String,
    pub role: String,
    pub binary_version: String,
    /// In the expected-node list of its region.
    pub expected: bool,
    /// Holds a lease: a stream open on this instance, or a sign of life within the lease.
    pub live: bool,
    /// Expected but not live.
    pub missing: bool,
    /// Behind its target version of some kind.
    pub stale: bool,
    /// Unix milliseconds; absent for a node never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    pub kinds: BTreeMap<Kind, KindStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub deployment: String,
    pub now_ms: u64,
    pub current: BTreeMap<Kind, Current>,
    /// Staged rollout: region → the config version it is pinned at (unlisted regions follow
    /// the current version).
    #[serde(default)]
    pub pins: BTreeMap<String, u64>,
    pub nodes: Vec<NodeStatus>,
}

impl Control {
    pub async fn status(&self) -> Result<Status, ControlError> {
        let mut current = BTreeMap::new();
        for kind in Kind::ALL {
            if let Some(r) = self.store.current(kind).await? {
                current.insert(kind, Current { version: r.version, hash: r.hash });
            }
        }
        let rollout = self.rollout_record().await?;
        let expected = self.store.expected().await?;
        let mut nodes: BTreeMap<String, NodeRecord> =
            self.store.nodes().await?.into_iter().map(|n| (n.id.clone(), n)).collect();
        for (region, ids) in &expected {
            for id in ids {
                nodes.entry(id.clone()).or_insert_with(|| NodeRecord {
                    id: id.clone(),
                    region: region.clone(),
                    ..Default::default()
                });
            }
        }
        let now = self.now_ms();
        let lease = self.lease.as_millis() as u64;
        let nodes = nodes
            .into_values()
            .map(|n| {
                let is_expected = expected.get(&n.region).is_some_and(|ids| ids.contains(&n.id));
                let seen = n.last_seen_ms > 0;
                let live = self.stream_open(&n.id) || (seen && now.saturating_sub(n.last_seen_ms) <= lease);
                let kinds: BTreeMap<Kind, KindStatus> = Kind::ALL
                    .into_iter()
                    // Only the kinds the node applies: a gateway never lags on routing controls.
                    .filter(|k| meridian_sync::protocol::wants(&n.features, *k))
                    .filter_map(|k| {
                        let cur = current.get(&k);
                        let st = n.kinds.get(&k);
                        if cur.is_none() && st.is_none() {
                            return None;
                        }
                        let applied = st.map_or(0, |s| s.applied);
                        let latest = cur.map_or(0, |c| c.version);
                        let target = match k {
                            Kind::Config => rollout.target(&n.region, latest),
                            _ => latest,
                        };
                        Some((
                            k,
                            KindStatus {
                                applied,
                                hash: st.map(|s| s.hash.clone()).unwrap_or_default(),
                                target,
                                lag: target.saturating_sub(applied),
                                nack: st.and_then(|s| s.nack.clone()),
                            },
                        ))
                    })
                    .collect();
                NodeStatus {
                    stale: kinds.values().any(|k| k.lag > 0),
                    id: n.id,
                    region: n.region,
                    role: n.role,
                    binary_version: n.binary_version,
                    expected: is_expected,
                    live,
                    missing: is_expected && !live,
                    last_seen_ms: seen.then_some(n.last_seen_ms),
                    kinds,
                }
            })
            .collect();
        Ok(Status { deployment: self.deployment.clone(), now_ms: now, current, pins: rollout.pins, nodes })
    }

    /// Records a sign of life from a node (stream opened, ping written).
    pub async fn node_seen(&self, mut seen: NodeRecord) -> Result<(), ControlError> {
        seen.last_seen_ms = self.now_ms();
        Ok(self.store.node_seen(seen).await?)
    }

    /// Records an ack or nack (counts as a sign of life).
    pub async fn node_ack(&self, ack: Ack) -> Result<(), ControlError> {
        Ok(self.store.node_ack(ack, self.now_ms()).await?)
    }
}
