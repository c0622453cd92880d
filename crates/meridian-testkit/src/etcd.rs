//! A real single-member etcd on loopback for tests: free ports, a temp data dir, stop and start
//! again on the same ports and data (an outage, then recovery with the data kept).
//!
//! The `etcd` binary comes from the Debian package `etcd-server` (3.4) or `$ETCD_BIN`. A missing
//! binary fails the test with that hint; it never skips.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::proc::{ChildGuard, free_addr, wait_for_http_ok};

/// How long a started etcd may take to answer `/health`.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running (or stopped) etcd; killed and its data dir removed on drop.
pub struct Etcd {
    bin: PathBuf,
    client: SocketAddr,
    peer: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<ChildGuard>,
}

/// The `etcd` binary: `$ETCD_BIN`, else `etcd` on `PATH`.
pub fn etcd_bin() -> anyhow::Result<PathBuf> {
    const HINT: &str = "install the Debian package etcd-server (`sudo apt-get install -y etcd-server`) \
                        or set ETCD_BIN to an etcd 3.4+ binary";
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("ETCD_BIN={} is not a file: {HINT}", p.display());
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    match std::env::split_paths(&path).map(|d| d.join("etcd")).find(|p| p.is_file()) {
        Some(p) => Ok(p),
        None => bail!("etcd not found on PATH: {HINT}"),
    }
}

impl Etcd {
    /// Starts etcd on free loopback ports and waits until it answers.
    pub async fn start() -> anyhow::Result<Etcd> {
        let bin = etcd_bin()?;
        let dir = tempfile::Builder::new().prefix("meridian-etcd-").tempdir()?;
        let mut etcd = Etcd { bin, client: free_addr(), peer: free_addr(), dir, child: None };
        etcd.resume().await?;
        Ok(etcd)
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Where etcd writes its log (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Stops it (SIGTERM, SIGKILL after 5 s); the ports and data stay for [`Etcd::resume`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A paused process would only see the SIGTERM after a SIGCONT.
            let _ = c.signal(rustix::process::Signal::CONT);
            let _ = c.terminate(Duration::from_secs(5));
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, like a hung server.
    pub fn pause(&self) -> std::io::Result<()> {
        self.signal(rustix::process::Signal::STOP)
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn unpause(&self) -> std::io::Result<()> {
        self.signal(rustix::process::Signal::CONT)
    }

    fn signal(&self, s: rustix::process::Signal) -> std::io::Result<()> {
        match &self.child {
            Some(c) => c.signal(s),
            None => Err(std::io::Error::other("etcd is stopped")),
        }
    }

    /// Starts it again on the same ports and data dir, and waits until it answers.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = File::options().create(true).append(true).open(self.log_path())?;
        let client = format!("http://{}", self.client);
        let peer = format!("http://{}", self.peer);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}"), "--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child =
            ChildGuard::spawn(&mut cmd).with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        if let Err(e) = wait_for_http_ok(&format!("{client}/health"), READY_WITHIN).await {
            let tail = tail(&self.log_path());
            self.stop();
            bail!("etcd did not become healthy: {e:#}\n--- etcd log (tail) ---\n{tail}");
        }
        Ok(())
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// The last lines of a log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
