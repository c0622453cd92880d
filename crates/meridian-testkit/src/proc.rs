//! Harness for end-to-end tests that run the real `meridian` binary.
//!
//! Waiting is always a poll (every 20 ms) against a deadline, never a fixed sleep.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustix::process::{Pid, Signal, kill_process};

/// How often the wait helpers poll.
const POLL: Duration = Duration::from_millis(20);

/// How long [`ChildGuard`]'s drop waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// Path of the `meridian` binary, first found of:
/// 1. `$MERIDIAN_BIN`;
/// 2. `$CARGO_BIN_EXE_meridian` (set for the `meridian` crate's own tests);
/// 3. `meridian` next to the running test's directory (`target/debug/deps/..`), which follows
///    `CARGO_TARGET_DIR` and the profile;
/// 4. `target/debug/meridian` at the workspace root.
///
/// Panics with a hint when none exists: build it first with `cargo build -p meridian`.
pub fn meridian_bin() -> PathBuf {
    let mut candidates = Vec::new();
    for var in ["MERIDIAN_BIN", "CARGO_BIN_EXE_meridian"] {
        if let Some(path) = std::env::var_os(var) {
            candidates.push(PathBuf::from(path));
        }
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join("meridian"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/meridian"));
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => found.clone(),
        None => panic!(
            "meridian binary not found (looked at {candidates:?}); run `cargo build -p meridian` \
             or set MERIDIAN_BIN"
        ),
    }
}

/// A child process that is terminated when the guard drops: SIGTERM, then SIGKILL after 5 s,
/// and always reaped (no zombies).
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `command` under a guard.
    pub fn spawn(command: &mut Command) -> io::Result<ChildGuard> {
        Ok(ChildGuard { child: Some(command.spawn()?) })
    }

    /// Guards an already spawned child.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child_ref().id()
    }

    /// The child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until drop")
    }

    /// `Some(status)` when the process has exited (it is then reaped).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child_mut().try_wait()
    }

    /// Sends a signal (e.g. `Signal::HUP` to ask for a reload).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        let pid = Pid::from_raw(self.pid() as i32).ok_or_else(|| io::Error::other("pid 0"))?;
        kill_process(pid, signal).map_err(io::Error::from)
    }

    /// SIGTERM, then waits up to `grace` for the exit; SIGKILL after that. Returns how it ended.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // ESRCH: it exited between the check and the signal; wait() below reaps it.
        let _ = self.signal(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(POLL);
        }
        let child = self.child_mut();
        let _ = child.kill();
        child.wait()
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    fn child_ref(&self) -> &Child {
        self.child.as_ref().expect("child present until drop")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(TERM_GRACE);
        }
    }
}

/// Polls until a TCP connection to `addr` succeeds, or fails after `within`.
pub async fn wait_for_tcp(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let last_error = match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!("nothing accepted TCP connections on {addr} within {within:?}: {last_error}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `GET url` (plain `http://` only, HTTP/1.1) until it answers 2xx, or fails after `within`
/// with the last status or error.
pub async fn wait_for_http_ok(url: &str, within: Duration) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse().with_context(|| format!("invalid URL {url:?}"))?;
    if uri.scheme_str() != Some("http") {
        bail!("wait_for_http_ok supports http:// URLs only, got {url:?}");
    }
    let deadline = Instant::now() + within;
    loop {
        let last = match get_status(&uri).await {
            Ok(status) if status.is_success() => return Ok(()),
            Ok(status) => format!("status {status}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{url} did not answer 2xx within {within:?}; last: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn get_status(uri: &http::Uri) -> anyhow::Result<http::StatusCode> {
    let authority = uri.authority().context("URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((authority.host(), port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request =
        http::Request::get(path).header(http::header::HOST, authority.as_str()).body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    // Drain so the server sees a complete exchange.
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bind to :0, read, release).
pub fn free_port() -> u16 {
    free_addr().port()
}

/// `127.0.0.1:<free port>`, see [`free_port`].
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Peak resident set size of a process (`VmHWM` in `/proc/PID/status`), KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// Current resident set size of a process (`VmRSS` in `/proc/PID/status`), KiB.
pub fn current_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
