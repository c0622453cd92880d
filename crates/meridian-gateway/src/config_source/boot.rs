//! Boot of the control source: the last-known-good floor, then the first config from the
//! control plane.

use std::time::Duration;

use meridian_model::{Bootstrap, ValidConfig};
use meridian_sync::protocol::{DrainsContent, Kind, Snapshot};
use meridian_sync::{Event, Lkg, Saved};
use tokio::sync::mpsc;

use super::versions::{Running, Verdict};
use crate::region::DrainSet;

/// The saved config (if any; an error when it is there but unusable) and drain switches.
pub type Floor = (Result<Option<(Saved, ValidConfig)>, String>, Option<Snapshot>);

/// Reads the last-known-good snapshots and records their versions in `running`: they are the
/// floor, so a control plane restored from an old backup cannot roll this node back, even
/// across a restart.
pub fn load_floor(lkg: &Lkg, running: &mut Running) -> Floor {
    let saved = lkg.load(Kind::Config).map_err(|e| e.to_string()).and_then(|s| match s {
        None => Ok(None),
        Some(s) => parse_config(&s.snapshot).map(|v| Some((s, v))).map_err(|e| {
            format!("the last-known-good snapshot {} is unusable: {e}", lkg.path(Kind::Config).display())
        }),
    });
    if let Ok(Some((s, _))) = &saved {
        running.record(&s.snapshot);
    }
    let lkg_drains = match lkg.load(Kind::Drains) {
        Ok(Some(s)) if !matches!(running.judge(&s.snapshot), Verdict::Refuse(_)) => {
            running.record(&s.snapshot);
            Some(s.snapshot)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "ignoring the last-known-good drain switches");
            None
        }
    };
    (saved, lkg_drains)
}

/// What the first moments of the stream gave.
pub struct First {
    /// The config to start with, when the control plane gave one this node can run.
    pub from_control: Option<(Snapshot, ValidConfig)>,
    /// Snapshots to handle (apply or nack) once watching.
    pub pending: Vec<Snapshot>,
    /// Why there is no usable config from the control plane, for the log and errors.
    pub why: String,
}

/// Waits up to `wait` for the first config snapshot (or until every instance failed once).
pub async fn first_config(
    events: &mut mpsc::Receiver<Event>,
    b: &Bootstrap,
    running: &Running,
    wait: Duration,
) -> First {
    let mut pending = Vec::new();
    let mut from_control = None;
    let mut why = format!("no config within {:?}", wait);
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match ev {
            Event::Snapshot(s) if s.kind == Kind::Config => {
                // The first config decides; one this node cannot run is nacked once watching.
                let usable = match (running.judge(&s), parse_config(&s)) {
                    (Verdict::Refuse(e), _) | (_, Err(e)) => Err(e),
                    (_, Ok(v)) => {
                        meridian_model::check_bootstrap(b, &v).map(|_| v).map_err(|e| e.to_string())
                    }
                };
                match usable {
                    Ok(v) => from_control = Some((s, v)),
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

/// The content of a config snapshot as a validated config whose hash is the announced one.
pub use meridian_sync::follow::parse_config;

pub fn drain_set(d: DrainsContent) -> DrainSet {
    DrainSet {
        regions: d.regions.into_iter().collect(),
        services: d.services.into_iter().map(|(r, s)| (r, s.into_iter().collect())).collect(),
    }
}
