//! `meridian checker -c checker.yaml`: the stateless health prober of one region; it probes
//! the global config's `dns.health` checks and reports to every director (docs/dns.md).

use std::path::PathBuf;
use std::process::ExitCode;

use meridian_director::meridian_health::{CheckerConfig, run_checker};

#[derive(clap::Args)]
pub struct Args {
    /// The checker file: `node` (id, region, source_address), `config` (the global config
    /// file) and `directors` (their `--http` addresses).
    #[arg(short = 'c', long)]
    config: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let c = CheckerConfig::load(&a.config)?;
    // Probes are small and few: one thread is plenty.
    super::runtime(Some(1))?.block_on(async move {
        println!(
            "checker {} in {} reporting to {} director(s), config {}",
            c.node.id,
            c.node.region,
            c.directors.len(),
            c.config.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = run_checker(c) => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
