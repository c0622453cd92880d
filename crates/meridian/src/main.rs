//! The `meridian` binary: one binary, every role. This file only parses the command line and
//! hands over to the command modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod demo;
mod logging;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: a multi-region API gateway",
    propagate_version = true
)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, global = true, default_value = "text", env = "MERIDIAN_LOG_FORMAT")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (data plane) from a bootstrap file, or in quick mode.
    Gateway(cmd::gateway::Args),
    /// Start the local multi-region lab: every region's gateway and demo services as processes.
    Up(cmd::up::Args),
    /// Inspect and break the running lab: status, down/up/slow faults, curl as a region's client.
    Lab(cmd::lab::Args),
    /// Authoritative DNS for the configured zones (`explain NAME`: which answer and why).
    Director(cmd::director::Args),
    /// Probe every region's checks (`dns.health`) from this region and report to the directors.
    Checker(cmd::checker::Args),
    /// Failover drill: take each service out of each region in turn and measure the failover.
    Drill(cmd::drill::Args),
    /// Validate a global config or bootstrap file; lists every error with its path.
    Validate(cmd::validate::Args),
    /// Print the JSON Schema of the config files (for editors).
    Schema(cmd::schema::Args),
    /// Run the control plane: admin API, versioned config store, distribution to nodes.
    Control(cmd::control::Args),
    /// Show what applying a config file would change (against the control plane).
    Diff(cmd::config_cli::DiffArgs),
    /// Apply a config file through the control plane as a new version.
    Apply(cmd::config_cli::ApplyArgs),
    /// List the config versions stored by the control plane.
    History(cmd::config_cli::HistoryArgs),
    /// Make a new config version with the content of an old one.
    Rollback(cmd::config_cli::RollbackArgs),
    /// Staged rollout: per-region target versions (`status`, `promote`, `pin`).
    Rollout(cmd::rollout_cli::Args),
    /// Every node: region, role, versions applied, lag, last seen, missing.
    Status(cmd::fleet_cli::StatusArgs),
    /// Drain a region or SERVICE@REGION (control plane drain switch).
    Drain(cmd::fleet_cli::DrainArgs),
    /// Undrain a region or SERVICE@REGION.
    Undrain(cmd::fleet_cli::DrainArgs),
    /// Routing controls (manual DNS failover): `list`, `set NAME on|off`.
    RoutingControl(cmd::routing_control_cli::Args),
    /// Print a backup of the control plane (config YAML, drains, history) as JSON.
    Export(cmd::config_cli::ExportArgs),
    /// Restore a backup written by `export`.
    Import(cmd::config_cli::ImportArgs),
    /// Create, list and revoke control-plane tokens (admin API and nodes).
    Token(cmd::token_cli::Args),
    /// Run a demo upstream service that answers with its name, region and instance.
    DemoUpstream(demo::Args),
}

/// mimalloc instead of glibc's malloc: on the proxy path it cut about 1,350 instructions per
/// request (docs/benchmarks.md, fourth round), mostly header tables and request futures that
/// are larger than glibc's per-thread cache serves.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs one command. Never inlined, so that each command's code is a function of its own rather
/// than part of `main`: the code a gateway runs is then laid out without the other commands'
/// (link/order.txt, docs/benchmarks.md).
#[inline(never)]
fn run<A>(command: fn(A) -> anyhow::Result<ExitCode>, args: A) -> anyhow::Result<ExitCode> {
    command(args)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Gateway(a) => run(cmd::gateway::run, a),
        Command::Up(a) => run(cmd::up::run, a),
        Command::Lab(a) => run(cmd::lab::run, a),
        Command::Drill(a) => run(cmd::drill::run, a),
        Command::Director(a) => run(cmd::director::run, a),
        Command::Checker(a) => run(cmd::checker::run, a),
        Command::Validate(a) => run(cmd::validate::run, a),
        Command::Schema(a) => run(cmd::schema::run, a),
        Command::DemoUpstream(a) => run(demo::run, a),
        Command::Control(a) => run(cmd::control::run, a),
        Command::Diff(a) => run(cmd::config_cli::diff, a),
        Command::Apply(a) => run(cmd::config_cli::apply, a),
        Command::History(a) => run(cmd::config_cli::history, a),
        Command::Rollback(a) => run(cmd::config_cli::rollback, a),
        Command::Rollout(a) => run(cmd::rollout_cli::run, a),
        Command::Status(a) => run(cmd::fleet_cli::status, a),
        Command::Drain(a) => run(cmd::fleet_cli::drain, a),
        Command::Undrain(a) => run(cmd::fleet_cli::undrain, a),
        Command::RoutingControl(a) => run(cmd::routing_control_cli::run, a),
        Command::Export(a) => run(cmd::config_cli::export, a),
        Command::Import(a) => run(cmd::config_cli::import, a),
        Command::Token(a) => run(cmd::token_cli::run, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
