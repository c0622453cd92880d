//! `DIR/state.json`: written by the running supervisor (at start and after every change),
//! removed when it exits. The `meridian lab` commands read it to find the control API; tests
//! read the pids to check that nothing is left behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::config::LabConfig;
use crate::procs::Intent;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    /// The lab control API.
    pub control: SocketAddr,
    /// The `meridian up` process.
    pub supervisor_pid: u32,
    /// The run directory (absolute).
    pub dir: PathBuf,
    /// The topology.
    pub lab: LabConfig,
    /// Every child process and its pid (none while killed).
    pub processes: Vec<ProcessEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub name: String,
    pub pid: Option<u32>,
    pub intent: Intent,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Reads the state of the lab running from `dir`.
pub fn read(dir: &Path) -> Result<StateFile, LabError> {
    let p = path(dir);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        LabError::Control(format!(
            "no lab is running from {} (cannot read {}: {e}); start one with `meridian up`",
            dir.display(),
            p.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| LabError::Control(format!("{}: {e}", p.display())))
}

/// Writes the state (write, then rename: readers never see half a file).
pub fn write(dir: &Path, state: &StateFile) -> Result<(), LabError> {
    let p = path(dir);
    let tmp = dir.join("state.json.tmp");
    let text = serde_json::to_string_pretty(state).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &p).map_err(|e| LabError::io(format!("renaming to {}", p.display()), e))
}

pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
}
