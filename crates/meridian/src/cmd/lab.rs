//! `meridian lab ...`: look at and break the lab that `meridian up` runs (found through
//! `DIR/state.json`): status, faults (down/up/slow), and requests and DNS queries as a client
//! in a region.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use meridian_lab::LabConfig;
use meridian_lab::client::{LabClient, curl, plan_curl};
use meridian_lab::faults::Mode;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory of the lab (as given to `meridian up --dir`).
    #[arg(long, global = true, default_value = "target/lab")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Every region with its gateway URLs and state, every service with its endpoints and state.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Take a region (gateway and services) or SERVICE@REGION down.
    Down {
        /// `REGION` or `SERVICE@REGION`.
        target: String,
        /// kill (connections refused), stop (SIGSTOP: connections hang) or blackhole (packets
        /// dropped with nftables: timeouts).
        #[arg(long, default_value = "kill", value_parser = ["kill", "stop", "blackhole"])]
        mode: String,
    },
    /// Undo every fault on a target: restart, resume, remove blackholes.
    Up {
        /// `REGION` or `SERVICE@REGION`.
        target: String,
    },
    /// Delay every response of a target's instances (a userspace relay); `0ms` clears it.
    Slow {
        /// `SERVICE@REGION` or `REGION`.
        target: String,
        /// The delay, e.g. `300ms`.
        delay: String,
    },
    /// Resolve a name through the lab's DNS director as a client in a region would (source
    /// address 127.0.N.250), and say why the director answered so.
    Dig {
        /// The client's region. Default: the lab's first region.
        #[arg(long)]
        region: Option<String>,
        /// Record type.
        #[arg(long = "type", default_value = "A")]
        rtype: String,
        /// The name; relative names are taken inside the lab's zone (`api` → `api.meridian.lab.`).
        name: String,
    },
    /// Send a GET as a client in a region would (source address 127.0.N.250, the region's
    /// gateway unless the URL names an address).
    Curl {
        /// The client's region. Default: the lab's first region.
        #[arg(long)]
        region: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "10s")]
        timeout: String,
        /// `http://host/path`, or just `/path`.
        url: String,
    },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let rt = crate::cmd::runtime(Some(1))?;
    rt.block_on(async move {
        if let Command::Dig { region, rtype, name } = &a.command {
            let lab = LabClient::from_dir(&a.dir)?.state.lab;
            return super::lab_dig::run(&lab, region.as_deref(), rtype, name).await;
        }
        if let Command::Curl { region, timeout, url } = &a.command {
            return run_curl(&a.dir, region.as_deref(), timeout, url).await;
        }
        let client = LabClient::from_dir(&a.dir)?;
        let message = match a.command {
            Command::Status { json } => {
                let status = client.status().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    print!("{}", status.table());
                }
                return Ok(ExitCode::SUCCESS);
            }
            Command::Down { target, mode } => client.down(&target, mode.parse::<Mode>()?).await?,
            Command::Up { target } => client.up(&target).await?,
            Command::Slow { target, delay } => client.slow(&target, &delay).await?,
            Command::Curl { .. } | Command::Dig { .. } => unreachable!("handled above"),
        };
        println!("{message}");
        Ok(ExitCode::SUCCESS)
    })
}

async fn run_curl(
    dir: &std::path::Path,
    region: Option<&str>,
    timeout: &str,
    url: &str,
) -> anyhow::Result<ExitCode> {
    // The topology of the running lab when there is one, else the built-in lab.
    let lab = LabClient::from_dir(dir).map(|c| c.state.lab).unwrap_or_else(|_| LabConfig::default());
    let timeout: Duration =
        meridian_core::parse_duration(timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let plan = plan_curl(&lab, region, url)?;
    let started = Instant::now();
    let r = curl(&plan, timeout).await?;
    println!(
        "HTTP/1.1 {}   (client {} -> {}, {} ms)",
        r.status,
        plan.source,
        plan.connect,
        started.elapsed().as_millis()
    );
    for (name, value) in &r.headers {
        let n = name.as_str();
        if n.starts_with("x-") || matches!(n, "content-type" | "via" | "server" | "retry-after" | "location")
        {
            println!("{n}: {}", value.to_str().unwrap_or("<binary>"));
        }
    }
    // The demo services name where they run: say where the request was served.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body)
        && let (Some(instance), Some(region)) = (v["instance"].as_str(), v["region"].as_str())
    {
        println!("# served by {instance} in {region}");
    }
    println!();
    print!("{}", String::from_utf8_lossy(&r.body));
    Ok(ExitCode::SUCCESS)
}
