//! Routing controls: their states are the `controls` kind, versioned apart from the config
//! (like drains); every change is judged against the current config's
//! `dns.routing_controls` safety rules (meridian-sync's `check_change`) at this instance's clock.

use meridian_model::dns::RoutingControls;
use meridian_sync::controls::{ControlsContent, Refusal, check_change, with_change};
use meridian_sync::protocol::Kind;
use serde::Serialize;

use super::{Control, ControlError};
use crate::store::VersionRecord;

/// One control as listed: what the config says it switches, and its state.
#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    pub name: String,
    pub on: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_set: Option<String>,
    /// The `controls` version of its last change (0: never changed, on).
    pub version: u64,
    /// When it last changed, Unix milliseconds (0: never).
    pub changed_at_ms: u64,
}

/// Every control of the current config, with the `controls` version.
#[derive(Debug, Clone, Serialize)]
pub struct ControlsList {
    pub version: u64,
    pub controls: Vec<ControlView>,
}

/// The result of a change.
#[derive(Debug, Clone, Serialize)]
pub struct ControlChange {
    pub name: String,
    pub on: bool,
    /// The `controls` version now current.
    pub version: u64,
    /// false: the control already had this state; nothing was written.
    pub changed: bool,
}

/// Why a change is not made.
#[derive(Debug, thiserror::Error)]
pub enum ControlsError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// The SHA-256 of a stored controls content, recomputed from its canonical form.
pub fn canonical_hash(json: &str) -> Result<String, String> {
    let c: ControlsContent = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(c.canonical().1)
}

impl Control {
    /// The current control states and their version (0: none set yet).
    pub async fn control_states(&self) -> Result<(u64, ControlsContent), ControlError> {
        match self.store.current(Kind::Controls).await? {
            None => Ok((0, ControlsContent::default())),
            Some(r) => {
                let c = serde_json::from_str(&r.content)
                    .map_err(|e| ControlError::Store(crate::store::StoreError::Backend(e.to_string())))?;
                Ok((r.version, c))
            }
        }
    }

    async fn routing_controls(&self) -> Result<RoutingControls, ControlError> {
        let rc = self.current_config().await?.and_then(|(_, v)| v.config().dns.clone()?.routing_controls);
        rc.ok_or_else(|| ControlError::NotFound("the current config has no dns.routing_controls".into()))
    }

    /// The controls of the current config with their states.
    pub async fn list_controls(&self) -> Result<ControlsList, ControlError> {
        let rc = match self.routing_controls().await {
            Ok(rc) => Some(rc),
            Err(ControlError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let (version, states) = self.control_states().await?;
        let controls = rc
            .iter()
            .flat_map(|rc| rc.controls.iter())
            .map(|c| {
                let st = states.controls.get(&c.name);
                ControlView {
                    name: c.name.clone(),
                    on: states.is_on(&c.name),
                    region: c.region.clone(),
                    record_set: c.record_set.clone(),
                    version: st.map_or(0, |s| s.version),
                    changed_at_ms: st.map_or(0, |s| s.changed_at_ms),
                }
            })
            .collect();
        Ok(ControlsList { version, controls })
    }

    /// Switches a control on or off if the safety rules allow it; each change is a new
    /// `controls` version. A lost compare-and-swap is judged again on the fresh state.
    pub async fn set_control(
        &self,
        name: &str,
        on: bool,
        author: &str,
    ) -> Result<ControlChange, ControlsError> {
        let rc = self.routing_controls().await?;
        for _ in 0..8 {
            let (version, cur) = self.control_states().await?;
            if cur.is_on(name) == on && rc.controls.iter().any(|c| c.name == name) {
                return Ok(ControlChange { name: name.to_string(), on, version, changed: false });
            }
            let now = self.now_ms();
            check_change(&rc, &cur, name, on, now)?;
            let next = with_change(&cur, name, on, version + 1, now);
            let (content, hash) = next.canonical();
            let record = VersionRecord {
                version: version + 1,
                hash,
                content,
                created_at_ms: now,
                author: author.to_string(),
                comment: format!("routing control {name} {}", if on { "on" } else { "off" }),
            };
            match self.commit(Kind::Controls, version, vec![record]).await {
                Ok(()) => {
                    return Ok(ControlChange {
                        name: name.to_string(),
                        on,
                        version: version + 1,
                        changed: true,
                    });
                }
                Err(ControlError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ControlError::Conflict { current: self.control_states().await?.0 }.into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use meridian_core::clock::ManualClock;

    use super::*;
    use crate::store::RedbStore;

    const CONFIG: &str = include_str!("../../../../examples/dns.yaml");

    #[tokio::test]
    async fn changes_are_versioned_and_judged_by_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("c.redb"), "lab").unwrap());
        let clock = Arc::new(ManualClock::new());
        let c = Control::new(store, clock.clone(), Duration::from_secs(10)).await.unwrap();
        let e = c.set_control("us-east-1", false, "t").await.unwrap_err();
        assert!(e.to_string().contains("no dns.routing_controls"), "{e}");
        c.apply(CONFIG, 0, "t", "", None).await.unwrap();
        let mut rx = c.subscribe(Kind::Controls).unwrap();

        let ch = c.set_control("us-east-1", false, "t").await.unwrap();
        assert!(ch.changed && ch.version == 1);
        let snap = rx.borrow_and_update().clone().unwrap();
        assert_eq!(snap.version, 1);
        let again = c.set_control("us-east-1", false, "t").await.unwrap();
        assert!(!again.changed && again.version == 1);

        c.set_control("eu-west-1", false, "t").await.unwrap();
        let e = c.set_control("ap-southeast-2", false, "t").await.unwrap_err();
        assert!(e.to_string().contains("\"one-region-on\""), "{e}");
        // Within the 30 s wait period: refused; after it: allowed.
        let e = c.set_control("us-east-1", true, "t").await.unwrap_err();
        assert!(e.to_string().contains("\"wait_period\""), "{e}");
        clock.advance(Duration::from_secs(30));
        c.set_control("us-east-1", true, "t").await.unwrap();

        let list = c.list_controls().await.unwrap();
        assert_eq!(list.version, 3);
        let eu = list.controls.iter().find(|v| v.name == "eu-west-1").unwrap();
        assert!(!eu.on && eu.version == 2);
        let ap = list.controls.iter().find(|v| v.name == "ap-southeast-2").unwrap();
        assert!(ap.on && ap.version == 0);
        let e = c.set_control("nope", false, "t").await.unwrap_err();
        assert!(e.to_string().contains("unknown routing control \"nope\""), "{e}");

        // A backup carries the controls; importing it restores their states and versions.
        let backup = c.export().await.unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("d.redb"), "lab").unwrap());
        let fresh = Control::new(store, clock.clone(), Duration::from_secs(10)).await.unwrap();
        fresh.import(backup, crate::control::ImportMode::default(), "t").await.unwrap();
        assert_eq!(fresh.control_states().await.unwrap(), c.control_states().await.unwrap());
    }

    /// A real instance's node streams: a gateway (config, drains) never gets routing controls,
    /// a director (config, controls) never gets drains.
    #[tokio::test]
    async fn streams_carry_only_the_kinds_a_node_announces() {
        use meridian_sync::{ClientConfig, Event, NodeInfo, SyncClient};

        use crate::store::{Store, TokenKind, TokenRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("c.redb"), "lab").unwrap());
        for node in ["gw-1", "dir-1"] {
            let kind = TokenKind::Node { node: node.into(), region: "us-east-1".into() };
            let record = TokenRecord { name: node.into(), kind, created_at_ms: 0 };
            store.put_token(crate::api::auth::token_hash(node), record).await.unwrap();
        }
        let c = Arc::new(
            Control::new(store, Arc::new(ManualClock::new()), Duration::from_secs(10)).await.unwrap(),
        );
        c.apply(CONFIG, 0, "t", "", None).await.unwrap();
        c.set_control("us-east-1", false, "t").await.unwrap();
        c.set_drain("eu-west-1", true, "t").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.30.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = crate::api::router(c.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let kinds = |node: &str, role: &str, features: &[&str], then: Kind| {
            let info = NodeInfo {
                id: node.into(),
                region: "us-east-1".into(),
                role: role.into(),
                binary_version: "test".into(),
                features: features.iter().map(|s| s.to_string()).collect(),
            };
            let (client, mut rx) =
                SyncClient::start(ClientConfig::new(vec![url.clone()], node.into(), info)).unwrap();
            let c = c.clone();
            async move {
                let _client = client;
                let mut got = Vec::new();
                // The current version of each kind the node gets; then a new version of `then`
                // comes next (a kind sent by mistake would have come with the current ones).
                let mut changed = false;
                while got.len() < 3 {
                    if got.len() == 2 && !changed {
                        changed = true;
                        match then {
                            Kind::Drains => drop(c.set_drain("ap-southeast-2", true, "t").await.unwrap()),
                            _ => drop(c.set_control("ap-southeast-2", false, "t").await.unwrap()),
                        }
                    }
                    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap() {
                        Event::Snapshot(s) => got.push(s.kind),
                        Event::Connected { .. } => {}
                        e => panic!("{e:?}"),
                    }
                }
                got[..2].sort();
                got
            }
        };
        assert_eq!(
            kinds("gw-1", "gateway", &["config", "drains"], Kind::Drains).await,
            [Kind::Config, Kind::Drains, Kind::Drains]
        );
        assert_eq!(
            kinds("dir-1", "director", &["config", "controls"], Kind::Controls).await,
            [Kind::Config, Kind::Controls, Kind::Controls]
        );
    }
}
