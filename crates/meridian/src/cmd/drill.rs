//! `meridian drill`: a failover drill over a running lab or a real deployment.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_lab::client::LabClient;
use meridian_lab::drill::{self, DrillOptions, Method, Topology};
use meridian_lab::faults::Mode;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory of a running lab (`meridian up --dir`); its topology is drilled.
    #[arg(long, default_value = "target/lab", conflicts_with = "topology")]
    dir: PathBuf,
    /// A topology file (regions' gateway and admin addresses, services and paths) for a real
    /// deployment; only `--mode drain` works there.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// How each target is taken out: drain (drain switch; works anywhere), or a lab fault:
    /// kill, stop, blackhole.
    #[arg(long, default_value = "drain")]
    mode: String,
    /// Time between probe rounds, e.g. 5s or 200ms.
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Longest wait for failover, and for recovery, per step.
    #[arg(long, default_value = "60s")]
    settle: String,
    /// Failed probes allowed per step.
    #[arg(long, default_value_t = 0)]
    error_budget: u64,
    /// Only this target (SERVICE@REGION); repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// Where drain switches are set: `control` (the control plane, a new drains version pushed
    /// to every gateway; the default in a lab), or `gateways` (each gateway's admin API; the
    /// default with --topology).
    #[arg(long)]
    via: Option<String>,
    /// Control plane admin API for `--via control` with --topology.
    #[arg(long, env = "MERIDIAN_SERVER", default_value = "http://127.0.0.1:9700")]
    server: String,
    /// Admin token (operator role) for `--via control`; in a lab, its admin token by default.
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let method = match a.mode.as_str() {
        "drain" => Method::Drain,
        other => Method::Fault(other.parse::<Mode>().map_err(|e| anyhow::anyhow!("--mode: {e}"))?),
    };
    let mut opts = DrillOptions {
        method,
        interval: meridian_core::parse_duration(&a.interval)
            .map_err(|e| anyhow::anyhow!("--interval: {e}"))?,
        settle: meridian_core::parse_duration(&a.settle).map_err(|e| anyhow::anyhow!("--settle: {e}"))?,
        error_budget: a.error_budget,
        probe_timeout: Duration::from_secs(10),
        only: a.only,
        control: None,
    };
    let (topo, lab) = match &a.topology {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            (Topology::parse(&text)?, None)
        }
        None => {
            let lab = LabClient::from_dir(&a.dir)?;
            (Topology::from_lab(&lab.state.lab), Some(lab))
        }
    };
    if a.topology.is_some() && method != Method::Drain {
        bail!("a topology file supports only --mode drain (faults need a lab)");
    }
    let via = a.via.as_deref().unwrap_or(if a.topology.is_some() { "gateways" } else { "control" });
    match via {
        "gateways" => {}
        "control" => {
            let token = match a.token {
                Some(t) => t,
                None if a.topology.is_none() => {
                    let path = a.dir.join("control/admin.token");
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading the lab's admin token {}", path.display()))?;
                    text.trim().to_string()
                }
                None => bail!("--via control needs --token (or MERIDIAN_TOKEN)"),
            };
            let addr = a
                .server
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .with_context(|| format!("--server {}: expected http://IP:PORT", a.server))?;
            opts.control = Some(drill::ControlPlane { addr, token });
        }
        other => bail!("--via {other}: expected control or gateways"),
    }
    let rt = super::runtime(Some(1))?;
    let report = rt.block_on(drill::run(&topo, &opts, lab.as_ref(), &|line| eprintln!("  {line}")))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
