//! Child processes of the lab: how each is started, signalled, checked for readiness and
//! stopped. Every child runs in its own process group, so a Ctrl-C in the terminal reaches only
//! the supervisor, which then stops the children in order.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::http1;

/// What a process is in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The lab's control plane instance.
    ControlPlane,
    /// The lab's DNS director.
    Director,
    /// A region's health checker.
    Checker {
        region: String,
    },
    Gateway {
        region: String,
    },
    Instance {
        service: String,
        region: String,
        index: u8,
    },
}

/// What the operator asked for; a process that exits while `Running` has crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Running,
    Killed,
    Stopped,
}

/// How to tell that a process is ready.
#[derive(Debug, Clone, Copy)]
pub enum Readiness {
    /// Accepts TCP connections.
    Tcp(SocketAddr),
    /// A gateway: its public listener accepts and its admin `/-/ready` answers 200.
    Gateway { public: SocketAddr, admin: SocketAddr },
    /// Running is enough (a process that only sends).
    Started,
}

/// One child process of the lab.
pub struct Proc {
    /// `gw-<region>-1` or `<service>-<region>-<i>`.
    pub name: String,
    pub role: Role,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub ready: Readiness,
    pub child: Option<Child>,
    pub intent: Intent,
}

/// How long a child gets after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long a child gets to become ready.
pub const READY_WITHIN: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(25);

impl Proc {
    /// Starts the process (output appended to its log file).
    pub fn spawn(&mut self, exe: &Path) -> Result<(), LabError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| LabError::io(format!("opening {}", self.log.display()), e))?;
        let log2 = log.try_clone().map_err(|e| LabError::io("duplicating a log file handle", e))?;
        let child = Command::new(exe)
            .args(&self.args)
            .env("MERIDIAN_LOG", std::env::var("MERIDIAN_LOG").unwrap_or_else(|_| "info".into()))
            // Output goes to log files: no terminal colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| LabError::Process(format!("starting {}: {e}", self.name)))?;
        self.child = Some(child);
        self.intent = Intent::Running;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal; a process that is gone already is not an error.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid().and_then(|p| Pid::from_raw(p as i32)) {
            let _ = kill_process(pid, signal);
        }
    }

    /// SIGKILL and reap, at once.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `Some(description)` when the process has exited (it is reaped and forgotten).
    pub fn check_exit(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// Polls readiness until `READY_WITHIN`; fails early when the process exits.
    pub async fn wait_ready(&mut self) -> Result<(), LabError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.check_exit() {
                return Err(LabError::Process(format!(
                    "{} exited ({status}) while starting; see {}",
                    self.name,
                    self.log.display()
                )));
            }
            if is_ready(self.ready).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LabError::Process(format!(
                    "{} was not ready within {READY_WITHIN:?}; see {}",
                    self.name,
                    self.log.display()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A process still owned when its `Proc` is dropped (start-up interrupted, an error, a panic)
/// is killed and reaped, so no path leaves it behind.
impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_now();
    }
}

async fn is_ready(r: Readiness) -> bool {
    let tcp = |a| async move {
        matches!(
            tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(a)).await,
            Ok(Ok(_))
        )
    };
    match r {
        Readiness::Tcp(a) => tcp(a).await,
        Readiness::Started => true,
        Readiness::Gateway { public, admin } => {
            tcp(public).await
                && matches!(
                    http1::Request::get(admin, "/-/ready", Duration::from_millis(500)).send().await,
                    Ok(resp) if resp.status.is_success()
                )
        }
    }
}

/// Stops every process: SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then
/// SIGKILL for those still running after [`TERM_GRACE`]; all are reaped.
pub async fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        p.signal(Signal::CONT);
        p.signal(Signal::TERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && procs.iter().any(|p| p.child.is_some()) {
        for p in procs.iter_mut() {
            p.check_exit();
        }
        tokio::time::sleep(POLL).await;
    }
    for p in procs.iter_mut() {
        if p.child.is_some() {
            tracing::warn!(process = %p.name, "did not stop within {TERM_GRACE:?}; killing it");
            p.kill_now();
        }
    }
}
