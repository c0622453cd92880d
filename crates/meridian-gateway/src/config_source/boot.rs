//! Boot of the control source: the last-known-good floor, then the first config from the
//! control plane.

use std::time::Duration;

use meridian_model::{Bootstrap, ValidConfig};
pub use meridian_sync::follow::First;
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
    let saved = meridian_sync::follow::load_saved(lkg, running, parse_config);
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

/// Waits up to `wait` for the first config snapshot this node can run (valid, and fitting its
/// bootstrap); see [`meridian_sync::follow::first_config`].
pub async fn first_config(
    events: &mut mpsc::Receiver<Event>,
    b: &Bootstrap,
    running: &Running,
    wait: Duration,
) -> First<ValidConfig> {
    meridian_sync::follow::first_config(events, running, wait, |s| {
        let v = parse_config(s)?;
        meridian_model::check_bootstrap(b, &v).map_err(|e| e.to_string())?;
        Ok(v)
    })
    .await
}

/// The content of a config snapshot as a validated config whose hash is the announced one.
pub use meridian_sync::follow::parse_config;

pub fn drain_set(d: DrainsContent) -> DrainSet {
    DrainSet {
        regions: d.regions.into_iter().collect(),
        services: d.services.into_iter().map(|(r, s)| (r, s.into_iter().collect())).collect(),
    }
}
