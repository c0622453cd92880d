//! What every node (gateway, director) does with a pushed snapshot, whatever it builds from it:
//! judge it against the versions it runs ([`Running`]: DESIGN.md §7 "Versions" — versions only
//! grow, another deployment's snapshots are refused), and once it runs, record it, persist it as
//! last-known-good and ack it; or nack it with the reason and keep the old one ([`Follower`]).

use std::collections::{BTreeMap, HashMap};

use meridian_model::ValidConfig;

use crate::lkg::{Lkg, Saved};
use crate::protocol::{Ack, Kind, Snapshot};
use crate::{NodeInfo, SyncClient};

/// The deployment and the (version, hash) of each kind this node runs.
#[derive(Debug, Default)]
pub struct Running {
    deployment: Option<String>,
    kinds: HashMap<Kind, (u64, String)>,
}

/// What to do with a pushed snapshot.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// A higher version: apply it.
    Newer,
    /// The version already running (e.g. resent after a reconnect): just ack it.
    Same,
    /// Refuse it (nack) with this reason.
    Refuse(String),
}

impl Running {
    pub fn judge(&self, s: &Snapshot) -> Verdict {
        if let Some(d) = &self.deployment
            && *d != s.deployment
        {
            return Verdict::Refuse(format!(
                "snapshot of deployment {:?}; this node belongs to deployment {d:?}",
                s.deployment
            ));
        }
        match self.kinds.get(&s.kind) {
            None => Verdict::Newer,
            Some((v, _)) if s.version > *v => Verdict::Newer,
            Some((v, h)) if s.version == *v && s.hash == *h => Verdict::Same,
            Some((v, h)) if s.version == *v => Verdict::Refuse(format!(
                "{} version {v} already runs with hash {h}; refusing other content under the same version",
                s.kind.as_str()
            )),
            Some((v, _)) => Verdict::Refuse(format!(
                "{} version {} is lower than the running version {v}",
                s.kind.as_str(),
                s.version
            )),
        }
    }

    pub fn record(&mut self, s: &Snapshot) {
        self.deployment = Some(s.deployment.clone());
        self.kinds.insert(s.kind, (s.version, s.hash.clone()));
    }

    /// The hash running for `kind` (empty when none yet).
    pub fn hash(&self, kind: Kind) -> String {
        self.kinds.get(&kind).map(|(_, h)| h.clone()).unwrap_or_default()
    }

    /// The version running for `kind`, if any.
    pub fn version(&self, kind: Kind) -> Option<u64> {
        self.kinds.get(&kind).map(|(v, _)| *v)
    }

    pub fn deployment(&self) -> Option<&str> {
        self.deployment.as_deref()
    }

    pub fn versions(&self) -> BTreeMap<String, u64> {
        self.kinds.iter().map(|(k, (v, _))| (k.as_str().to_string(), *v)).collect()
    }
}

/// The content of a config snapshot as a validated config whose hash is the announced one.
pub fn parse_config(s: &Snapshot) -> Result<ValidConfig, String> {
    let cfg: meridian_model::GlobalConfig =
        serde_json::from_value(s.content.clone()).map_err(|e| format!("unreadable config content: {e}"))?;
    let valid = meridian_model::validate_global(cfg).map_err(|e| e.to_string())?;
    if valid.config().deployment != s.deployment {
        return Err(format!(
            "deployment: the config says {:?} but was pushed as deployment {:?}",
            valid.config().deployment,
            s.deployment
        ));
    }
    if valid.hash() != s.hash {
        return Err(format!("content hash {} differs from the announced hash {}", valid.hash(), s.hash));
    }
    Ok(valid)
}

/// The bookkeeping of one following node: the versions it runs, its last-known-good files and
/// the client its acks go through.
pub struct Follower {
    pub running: Running,
    pub lkg: Lkg,
    pub client: SyncClient,
    pub node: NodeInfo,
}

impl Follower {
    /// `s` now runs: record it, persist it as last-known-good, ack it.
    pub fn accepted(&mut self, s: &Snapshot) {
        self.running.record(s);
        if let Err(e) = self.lkg.save(s) {
            tracing::warn!(error = %e, "cannot persist the last-known-good snapshot");
        }
        self.post(s, None);
    }

    /// `s` is refused; the running version of its kind stays.
    pub fn refused(&self, s: &Snapshot, why: String) {
        tracing::error!(kind = s.kind.as_str(), version = s.version, error = %why, "snapshot refused; keeping the running version");
        self.post(s, Some(why));
    }

    /// Posts the ack off the caller's task: a slow control instance must not delay the next
    /// snapshot.
    fn post(&self, s: &Snapshot, error: Option<String>) {
        let ack = Ack {
            node: self.node.id.clone(),
            region: self.node.region.clone(),
            kind: s.kind,
            version: s.version,
            hash: self.running.hash(s.kind),
            ok: error.is_none(),
            error,
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.post_ack(&ack).await {
                // The control plane resends its current state on reconnect; that is acked then.
                tracing::warn!(error = %e, kind = ack.kind.as_str(), version = ack.version, "ack not delivered");
            }
        });
    }
}

/// What the first moments of a node's stream gave.
pub struct First<T> {
    /// The config to start with (the snapshot and what the node built of it), when the control
    /// plane gave one this node can run.
    pub from_control: Option<(Snapshot, T)>,
    /// Snapshots to handle (apply or nack) once following.
    pub pending: Vec<Snapshot>,
    /// Why there is no usable config from the control plane, for the log and errors.
    pub why: String,
}

/// Waits up to `wait` for the first config snapshot (or until every instance failed once). The
/// first config decides: `usable` builds what the node runs from it; one the node refuses or
/// cannot build is kept in `pending`, to be nacked once following.
pub async fn first_config<T>(
    events: &mut tokio::sync::mpsc::Receiver<crate::Event>,
    running: &Running,
    wait: std::time::Duration,
    mut usable: impl FnMut(&Snapshot) -> Result<T, String>,
) -> First<T> {
    use crate::Event;
    let mut pending = Vec::new();
    let mut from_control = None;
    let mut why = format!("no config within {wait:?}");
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match ev {
            Event::Snapshot(s) if s.kind == Kind::Config => {
                let built = match running.judge(&s) {
                    Verdict::Refuse(e) => Err(e),
                    _ => usable(&s),
                };
                match built {
                    Ok(t) => from_control = Some((s, t)),
                    Err(e) => {
                        why = format!("the control plane's config version {} is refused: {e}", s.version);
                        pending.push(s);
                    }
                }
                break;
            }
            Event::Snapshot(s) => pending.push(s),
            Event::Disconnected { url, error } => why = format!("{url}: {error}"),
            Event::AllUnreachable => break,
            Event::Connected { .. } => {}
        }
    }
    First { from_control, pending, why }
}

/// Reads the last-known-good config and builds what the node runs from it with `usable`; a
/// usable one is recorded in `running` as the floor, so a control plane restored from an old
/// backup cannot roll the node back, even across a restart.
pub fn load_saved<T>(
    lkg: &Lkg,
    running: &mut Running,
    usable: impl FnOnce(&Snapshot) -> Result<T, String>,
) -> Result<Option<(Saved, T)>, String> {
    let Some(s) = lkg.load(Kind::Config).map_err(|e| e.to_string())? else { return Ok(None) };
    let t = usable(&s.snapshot).map_err(|e| {
        format!("the last-known-good snapshot {} is unusable: {e}", lkg.path(Kind::Config).display())
    })?;
    running.record(&s.snapshot);
    Ok(Some((s, t)))
}

/// Where a node starts.
pub enum Start<T> {
    /// The control plane's config.
    Control(Snapshot, T),
    /// The last-known-good snapshot, because the control plane gave nothing usable: stale.
    Saved(Saved, T),
}

/// Chooses where a node starts: the control plane's config (`first`, from [`first_config`]),
/// else the last-known-good one (`saved`, from [`load_saved`]), logged as stale with `why`;
/// with neither, the error says both reasons. `doing` completes the log line, e.g.
/// `"answering from"`.
pub fn start_from<T>(
    first: Option<(Snapshot, T)>,
    saved: Result<Option<(Saved, T)>, String>,
    why: &str,
    lkg: &Lkg,
    doing: &str,
) -> Result<Start<T>, String> {
    match (first, saved) {
        (Some((s, t)), _) => Ok(Start::Control(s, t)),
        (None, Ok(Some((s, t)))) => {
            let saved_at_unix_ms =
                s.saved_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
            tracing::warn!(reason = %why, version = s.snapshot.version, saved_at_unix_ms,
                "no usable config from the control plane; {doing} the last-known-good snapshot (stale)");
            Ok(Start::Saved(s, t))
        }
        (None, Ok(None)) => Err(format!(
            "no usable config from the control plane ({why}) and no last-known-good snapshot at {}",
            lkg.path(Kind::Config).display()
        )),
        (None, Err(e)) => Err(format!("no usable config from the control plane ({why}), and {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(deployment: &str, version: u64, hash: &str) -> Snapshot {
        Snapshot {
            kind: Kind::Config,
            deployment: deployment.into(),
            version,
            hash: hash.into(),
            content: serde_json::Value::Null,
        }
    }

    #[test]
    fn versions_only_grow_within_one_deployment() {
        let mut r = Running::default();
        assert_eq!(r.judge(&snap("d", 3, "a")), Verdict::Newer);
        r.record(&snap("d", 3, "a"));
        assert_eq!(r.judge(&snap("d", 3, "a")), Verdict::Same);
        assert_eq!(r.judge(&snap("d", 4, "b")), Verdict::Newer);
        let Verdict::Refuse(e) = r.judge(&snap("d", 2, "b")) else { panic!() };
        assert_eq!(e, "config version 2 is lower than the running version 3");
        let Verdict::Refuse(e) = r.judge(&snap("d", 3, "b")) else { panic!() };
        assert!(e.contains("same version"), "{e}");
        let Verdict::Refuse(e) = r.judge(&snap("other", 9, "c")) else { panic!() };
        assert_eq!(e, "snapshot of deployment \"other\"; this node belongs to deployment \"d\"");
        assert_eq!(r.version(Kind::Config), Some(3));
    }
}
