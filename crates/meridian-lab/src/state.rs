//! `DIR/state.json`: written by the running supervisor (at start and after every change),
//! removed when it exits. The `meridian lab` commands read it to find the control API; tests
//! read the pids to check that nothing is left behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal, kill_process};
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

/// Before a lab starts from `dir`: refuses when a lab is running from it, and cleans up after
/// one that died without stopping its children (SIGKILLed supervisor): every process it lists
/// that is still a `meridian` process is killed.
pub fn take_over(dir: &Path, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    let Ok(previous) = read(dir) else { return Ok(()) };
    if is_meridian(previous.supervisor_pid) && previous.supervisor_pid != std::process::id() {
        return Err(LabError::Process(format!(
            "a lab is already running from {} (pid {}, control API {}); stop it first",
            dir.display(),
            previous.supervisor_pid,
            previous.control
        )));
    }
    let mut killed = Vec::new();
    for pid in previous.processes.iter().filter_map(|p| p.pid) {
        if is_meridian(pid)
            && let Some(p) = Pid::from_raw(pid as i32)
            && kill_process(p, Signal::KILL).is_ok()
        {
            killed.push(pid);
        }
    }
    // SIGKILL is asynchronous: wait until they are dead (their sockets closed) before the new
    // lab binds the same addresses.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while killed.iter().any(|p| is_meridian(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = killed.len();
    if killed > 0 {
        progress(&format!("killed {killed} processes left behind by a lab that died"));
    }
    remove(dir);
    Ok(())
}

/// Whether `pid` is a live `meridian` process (not merely a reused pid; a zombie has no
/// command line).
pub(crate) fn is_meridian(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).next().is_some_and(|exe| exe.ends_with(b"meridian")))
        .unwrap_or(false)
}

pub fn remove(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
}
