//! `meridian up`: the local multi-region lab. Every region's gateway and demo service instances
//! run as real child processes on the region's loopback addresses (127.0.N.x); see docs/lab.md.
//! With `-c BOOTSTRAP` it runs the single-region quickstart instead (one gateway, one upstream).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use meridian_lab::LabConfig;
use meridian_lab::supervisor::{Options, Supervisor};

mod quickstart;

#[derive(clap::Args)]
pub struct Args {
    /// Lab config (YAML). Default: the built-in lab, 3 regions × 3 services
    /// (examples/lab/default.yaml).
    #[arg(short = 'f', long, conflicts_with = "bootstrap")]
    file: Option<PathBuf>,
    /// Run directory: generated configs, certificates, logs and state.json.
    #[arg(long, default_value = "target/lab")]
    dir: PathBuf,
    /// Worker threads of every gateway process.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Address of the lab control API (what `meridian lab ...` talks to).
    #[arg(long, default_value = "127.0.0.1:9800")]
    control: SocketAddr,
    /// Isolate regions (nftables): a region's service endpoints accept connections only from
    /// the region's own addresses, so cross-region traffic has to go through peer gateways.
    #[arg(long)]
    isolate: bool,
    /// Quickstart instead of the lab: run one gateway from this bootstrap and a demo upstream.
    #[arg(short = 'c', long)]
    bootstrap: Option<PathBuf>,
    /// Quickstart only: address of the demo upstream. Default 127.0.0.1:9000.
    #[arg(long, requires = "bootstrap")]
    upstream: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(bootstrap) = a.bootstrap {
        let upstream = a.upstream.unwrap_or_else(|| "127.0.0.1:9000".into());
        return quickstart::run(quickstart::Args { bootstrap, upstream, workers: a.workers });
    }
    let lab = match &a.file {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            LabConfig::parse(&text).with_context(|| format!("invalid lab config {}", f.display()))?
        }
        None => LabConfig::default(),
    };
    let opts = Options {
        dir: a.dir.clone(),
        workers: a.workers,
        control: a.control,
        exe: std::env::current_exe().context("locating the meridian binary")?,
        isolate: a.isolate,
    };
    let rt = crate::cmd::runtime(Some(1))?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        // Handlers first, so a signal during start-up is not missed.
        let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        eprintln!("starting the lab: {} regions, {} services ...", lab.regions.len(), lab.services.len());
        let progress = |line: &str| eprintln!("{line}");
        let sup = tokio::select! {
            r = Supervisor::start(lab, opts, &progress) => r?,
            _ = int.recv() => anyhow::bail!("interrupted while starting"),
            _ = term.recv() => anyhow::bail!("terminated while starting"),
        };
        print_summary(&sup, &a.dir, a.control);
        let stop = async move {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            eprintln!("stopping the lab ...");
        };
        sup.run_until(stop).await?;
        eprintln!("lab stopped; no process left");
        Ok(ExitCode::SUCCESS)
    })
}

fn print_summary(sup: &Supervisor, dir: &std::path::Path, control: SocketAddr) {
    let lab = &sup.lab;
    println!();
    println!("Meridian lab is running: {} regions, {} services.", lab.regions.len(), lab.services.len());
    println!();
    println!("{:<16} {:<24} {:<24} PEER (mutual TLS)", "REGION", "GATEWAY", "ADMIN");
    for r in &lab.regions {
        println!(
            "{:<16} {:<24} {:<24} {}",
            r.name,
            format!("http://{}", r.public()),
            format!("http://{}", r.admin()),
            r.peer()
        );
    }
    println!();
    let mut header = format!("{:<12} {:<12}", "SERVICE", "PATH");
    for r in &lab.regions {
        header.push_str(&format!(" {:<18}", r.name));
    }
    println!("{}", header.trim_end());
    for (k, s) in lab.services.iter().enumerate() {
        let mut line = format!("{:<12} {:<12}", s.name, s.path);
        for r in &lab.regions {
            let eps: Vec<String> = (0..s.instances).map(|i| r.endpoint(k, i).to_string()).collect();
            line.push_str(&format!(" {:<18}", eps.join(",")));
        }
        println!("{}", line.trim_end());
    }
    let flags = lab_flags(dir);
    let (first, second) = (&lab.regions[0], lab.regions.get(1).unwrap_or(&lab.regions[0]));
    let svc = lab.services.first().map_or("/", |s| s.path.as_str());
    println!();
    println!("Try:");
    println!("  curl -s http://{}{svc}", first.public());
    println!("  meridian lab{flags} status");
    println!("  meridian lab{flags} down {} --mode stop", second.name);
    println!("  meridian lab{flags} curl --region {} http://{}{svc}", second.name, second.public());
    println!("  meridian lab{flags} up {}", second.name);
    if let Some(s) = lab.services.get(1) {
        println!("  meridian lab{flags} down {}@{} --mode kill", s.name, second.name);
        println!("  meridian lab{flags} slow {}@{} 300ms", s.name, second.name);
    }
    println!();
    println!(
        "DNS: director on {} (zone {}), a health checker in every region",
        meridian_lab::dns::DIRECTOR_DNS,
        meridian_lab::dns::ZONE
    );
    println!("  meridian lab{flags} dig api --region {}", second.name);
    let plane = &sup.generated.plane;
    println!();
    println!(
        "Control plane: http://{} (the gateways take their config from it)",
        meridian_lab::plane::ADDRESS
    );
    println!("  export MERIDIAN_TOKEN=$(cat {})", plane.admin_token.display());
    println!("  meridian status");
    println!("  meridian diff -f {0} && meridian apply -f {0} --wait", sup.generated.global.display());
    println!("  meridian drain {}", second.name);
    println!();
    println!("Files and logs: {}   lab control API: http://{control}", sup.generated.dir.display());
    println!("Ctrl-C stops everything.");
}

/// `--dir X` when the run directory is not the default, so the printed commands work as given.
fn lab_flags(dir: &std::path::Path) -> String {
    if dir == std::path::Path::new("target/lab") {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}
