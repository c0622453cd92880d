//! The versions a node runs, per kind, and whether a pushed snapshot may replace them
//! (DESIGN.md §7 "Versions": versions only grow; another deployment's snapshots are refused).

use std::collections::{BTreeMap, HashMap};

use meridian_sync::protocol::{Kind, Snapshot};

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

    pub fn deployment(&self) -> Option<&str> {
        self.deployment.as_deref()
    }

    pub fn versions(&self) -> BTreeMap<String, u64> {
        self.kinds.iter().map(|(k, (v, _))| (k.as_str().to_string(), *v)).collect()
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
    }
}
