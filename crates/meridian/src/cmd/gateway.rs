//! `meridian gateway`: the data plane role.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use meridian_gateway::config_source::{
    ConfigSource, ControlOptions, ControlSource, FileSource, StaticSource,
};
use meridian_model::ConfigSource as SourceSpec;

#[derive(clap::Args)]
pub struct Args {
    /// Bootstrap file of this node (listeners, admin address, where config comes from).
    #[arg(short = 'c', long, conflicts_with_all = ["listen", "upstream"])]
    config: Option<PathBuf>,
    /// Quick mode: address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, requires = "upstream")]
    listen: Option<String>,
    /// Quick mode: the one upstream, e.g. 127.0.0.1:9000.
    #[arg(long, requires = "listen")]
    upstream: Option<String>,
    /// Quick mode: admin address (health endpoints).
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: String,
    /// Listener workers, one event loop each (default: one per core; overrides the bootstrap's `workers`).
    #[arg(long, env = "MERIDIAN_WORKERS")]
    workers: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let (mut bootstrap, source) = match (&a.config, &a.listen, &a.upstream) {
        (Some(path), _, _) => {
            let b = meridian_model::load_bootstrap(path)
                .map_err(|e| anyhow::anyhow!("invalid bootstrap {}:\n{e}", path.display()))?;
            let src = match &b.config {
                SourceSpec::File { path, watch_interval } => {
                    Some(Box::new(FileSource::new(path.clone(), watch_interval.get()))
                        as Box<dyn ConfigSource>)
                }
                // Built inside the runtime: it connects to the control plane.
                SourceSpec::Control { .. } => None,
            };
            (b, src)
        }
        (None, Some(listen), Some(upstream)) => {
            let (b, valid) = meridian_gateway::quick::configs(listen, upstream, &a.admin)
                .map_err(|e| anyhow::anyhow!("invalid quick-mode arguments:\n{e}"))?;
            (b, Some(Box::new(StaticSource(Some(valid))) as Box<dyn ConfigSource>))
        }
        _ => bail!("give a bootstrap file (-c FILE) or quick mode (--listen ADDR --upstream ADDR)"),
    };
    // Listener workers: this thread's current-thread runtime is the first, `start` adds the
    // rest (one event loop per thread; meridian_gateway::worker).
    let workers = a.workers.or(bootstrap.workers).unwrap_or_else(super::cores).max(1);
    bootstrap.workers = Some(workers);
    let rt = super::runtime(Some(1))?;
    rt.block_on(async move {
        let source = match source {
            Some(s) => s,
            None => Box::new(
                ControlSource::connect(&bootstrap, ControlOptions::default())
                    .await
                    .context("config source: control plane")?,
            ),
        };
        let running = meridian_gateway::start(bootstrap, source).await.context("starting the gateway")?;
        for (name, addr) in &running.listeners {
            tracing::info!(listener = %name, %addr, admin = %running.admin, "gateway ready");
        }
        running.run_until_signal().await
    })?;
    Ok(ExitCode::SUCCESS)
}
