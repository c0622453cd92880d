//! The distribution protocol between a node (gateway, director) and a control instance.
//!
//! Transport: plain HTTP/1.1 or HTTP/2 to a control instance's admin address.
//!
//! 1. The node opens `GET /v1/nodes/stream` with the headers below and keeps it open. The
//!    control instance answers `200`, `content-type: application/x-ndjson`, and streams one
//!    [`Push`] per line: first the current snapshot of every kind the node applies ([`wants`];
//!    whatever it says it has — the node ignores what it already runs), then every new version
//!    as it is created, and a [`Push::Ping`] every [`PING_INTERVAL`] so both sides notice a dead
//!    stream.
//! 2. For every snapshot it receives, the node builds it off the hot path, swaps it in, and
//!    posts an [`Ack`] to `POST /v1/nodes/ack` — `ok: false` with the reason (a nack) when it
//!    refused the snapshot and kept its old one.
//! 3. A node refuses a snapshot of another deployment, or with a lower version than the one it
//!    runs (so a control plane restored from an old backup cannot roll the fleet back).
//!
//! Authentication: `authorization: Bearer <node token>`; the control plane stores only the
//! token's SHA-256 and binds it to the node id and region (a token cannot pose as another node).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Header: the node's id.
pub const NODE_HEADER: &str = "x-meridian-node";
/// Header: the node's region.
pub const REGION_HEADER: &str = "x-meridian-region";
/// Header: the node's role (`gateway`, `director`).
pub const ROLE_HEADER: &str = "x-meridian-role";
/// Header: the node's binary version.
pub const BINARY_VERSION_HEADER: &str = "x-meridian-binary-version";
/// Header: features the node supports, comma-separated (e.g. `config,drains`): the kinds it
/// applies. A control instance pushes a node only those kinds ([`wants`]).
pub const FEATURES_HEADER: &str = "x-meridian-features";

/// Stream path (GET).
pub const STREAM_PATH: &str = "/v1/nodes/stream";
/// Ack path (POST, JSON [`Ack`]).
pub const ACK_PATH: &str = "/v1/nodes/ack";

/// How often the control instance writes a ping on an idle stream.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A node that has heard nothing (not even a ping) for this long treats the stream as dead
/// and reconnects (to the next control instance).
pub const STREAM_DEAD_AFTER: Duration = Duration::from_secs(15);

/// The kinds of pushed state; each has its own version sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The global config (regions, services, routes, policies, consumers).
    Config,
    /// Drain switches.
    Drains,
    /// Routing controls ([`crate::controls::ControlsContent`]); applied by directors.
    Controls,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Config, Kind::Drains, Kind::Controls];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Drains => "drains",
            Kind::Controls => "controls",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Whether a node that announced `features` applies `kind`. A node that announced nothing
/// predates the header's use as a filter: it gets the kinds every node has always applied
/// (config and drains) and nothing newer, so it never receives a kind it would nack.
pub fn wants(features: &[String], kind: Kind) -> bool {
    if features.is_empty() {
        return matches!(kind, Kind::Config | Kind::Drains);
    }
    features.iter().any(|f| f == kind.as_str())
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Push {
    /// A version of one kind of state.
    Snapshot(Snapshot),
    /// Keep-alive.
    Ping,
}

/// A version of one kind of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub kind: Kind,
    /// The deployment id; a node refuses another deployment's snapshots.
    pub deployment: String,
    /// Grows by one with every change of this kind; never reused.
    pub version: u64,
    /// Lowercase hex SHA-256 of the canonical content (for config: `ValidConfig::hash`).
    pub hash: String,
    /// The content: for `config`, the canonical JSON of the global config; for `drains`,
    /// [`DrainsContent`]; for `controls`, [`crate::controls::ControlsContent`].
    pub content: serde_json::Value,
}

/// The content of a `drains` snapshot: drained regions and drained services per region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainsContent {
    #[serde(default)]
    pub regions: Vec<String>,
    /// region → drained services.
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, Vec<String>>,
}

/// A node's answer to a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub node: String,
    pub region: String,
    pub kind: Kind,
    pub version: u64,
    /// The hash the node now runs for this kind.
    pub hash: String,
    /// false: a nack — the node refused the snapshot and keeps its previous version.
    pub ok: bool,
    /// Why it refused (nack), e.g. `listeners[0].tls.certificates[0].cert: no such file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Serializes one push as a stream line (JSON + `\n`).
pub fn encode_line(p: &Push) -> String {
    let mut s = serde_json::to_string(p).unwrap_or_else(|_| "{\"type\":\"ping\"}".to_string());
    s.push('\n');
    s
}

/// Parses one stream line.
pub fn decode_line(line: &str) -> Result<Push, serde_json::Error> {
    serde_json::from_str(line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let p = Push::Snapshot(Snapshot {
            kind: Kind::Drains,
            deployment: "d".into(),
            version: 7,
            hash: "ab".into(),
            content: serde_json::to_value(DrainsContent::default()).unwrap(),
        });
        let line = encode_line(&p);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(decode_line(&line).unwrap(), p);
        assert_eq!(decode_line("{\"type\":\"ping\"}").unwrap(), Push::Ping);
        assert!(line.contains("\"type\":\"snapshot\""));
    }

    #[test]
    fn features_select_the_kinds() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&f(&["config", "controls"]), Kind::Controls));
        assert!(!wants(&f(&["config", "drains"]), Kind::Controls));
        assert!(!wants(&f(&["config", "controls"]), Kind::Drains));
        // Nothing announced: the kinds every node has always applied, nothing newer.
        assert!(wants(&[], Kind::Config) && wants(&[], Kind::Drains) && !wants(&[], Kind::Controls));
        assert_eq!(Kind::parse("controls"), Some(Kind::Controls));
    }
}
