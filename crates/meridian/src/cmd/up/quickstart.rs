//! `meridian up -c BOOTSTRAP`: the single-region quickstart, a demo upstream and one gateway
//! (e.g. serving examples/quickstart.yaml), as real child processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};

/// What the quickstart runs.
pub struct Args {
    /// Bootstrap of the gateway to run.
    pub bootstrap: PathBuf,
    /// Address of the demo upstream (the quickstart config points at 127.0.0.1:9000).
    pub upstream: String,
    /// Worker threads per process.
    pub workers: usize,
}

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} did not stop in time; killed", self.name);
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let bootstrap = meridian_model::load_bootstrap(&a.bootstrap)
        .map_err(|e| anyhow::anyhow!("invalid bootstrap {}:\n{e}", a.bootstrap.display()))?;
    let exe = std::env::current_exe().context("locating the meridian binary")?;
    let upstream: SocketAddr = a.upstream.parse().context("--upstream must be ip:port")?;
    let workers = a.workers.to_string();

    eprintln!("starting demo upstream on {upstream} ...");
    let mut children = vec![Guard {
        name: "demo-upstream",
        child: Command::new(&exe)
            .args([
                "demo-upstream",
                "--listen",
                &a.upstream,
                "--service",
                "demo",
                "--region",
                &bootstrap.node.region,
            ])
            .stdin(Stdio::null())
            .spawn()?,
    }];
    wait_tcp(upstream, &mut children)?;

    eprintln!("starting gateway {} ...", bootstrap.node.id);
    children.push(Guard {
        name: "gateway",
        child: Command::new(&exe)
            .args(["gateway", "-c"])
            .arg(&a.bootstrap)
            .args(["--workers", &workers])
            .stdin(Stdio::null())
            .spawn()?,
    });
    for l in &bootstrap.listeners {
        wait_tcp(l.address.parse().context("listener address")?, &mut children)?;
    }
    wait_tcp(bootstrap.admin.address.parse().context("admin address")?, &mut children)?;

    println!();
    println!("Meridian is running (region {}):", bootstrap.node.region);
    for l in &bootstrap.listeners {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        println!("  gateway  {:<10} {scheme}://{}", l.name, l.address);
    }
    println!("  admin               http://{}/-/ready", bootstrap.admin.address);
    println!("  upstream demo       http://{upstream}");
    println!();
    println!("Try:");
    if let Some(l) = bootstrap.listeners.first() {
        println!("  curl -s http://{}/hello", l.address);
        println!("  curl -s http://{}/api/users/42", l.address);
        println!(
            "  curl -s -i -X OPTIONS http://{}/api/users/42 -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: PUT'",
            l.address
        );
    }
    println!("  curl -s http://{}/-/config", bootstrap.admin.address);
    println!();
    println!("Edit the global config and save: the gateway reloads it. Ctrl-C stops everything.");

    // Ctrl-C / SIGTERM stop the children (their guards) and exit; a crashed child stops all.
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook_flag(&stop)?;
    loop {
        if stop.load(Ordering::Relaxed) {
            eprintln!("stopping ...");
            drop(children);
            return Ok(ExitCode::SUCCESS);
        }
        for g in &mut children {
            if let Ok(Some(status)) = g.child.try_wait() {
                let name = g.name;
                drop(children);
                bail!("{name} exited ({status}); stopped the rest");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_tcp(addr: SocketAddr, children: &mut [Guard]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        for g in children.iter_mut() {
            if let Ok(Some(status)) = g.child.try_wait() {
                bail!("{} exited ({status}) while starting", g.name);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{addr} did not open within 30s")
}

/// Sets `flag` on SIGINT or SIGTERM (a small signal-watching thread with its own runtime).
fn signal_hook_flag(flag: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let flag = Arc::clone(flag);
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Handlers are installed before returning, so no signal is missed.
    let (mut int, mut term) = {
        let _enter = rt.enter();
        (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
    };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        rt.block_on(async {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            flag.store(true, Ordering::Relaxed);
        });
    })?;
    Ok(())
}
