//! `meridian checker`: the stateless health prober of one region; it probes the global
//! config's `dns.health` checks and reports to every director (docs/dns.md).
//!
//! The global config comes from a file (`-c checker.yaml`, whose `config` names it) or from the
//! control plane (`--control`, as the director takes its own): the checker opens the node stream
//! with role `checker`, asking only for `config`; it waits up to `--initial-wait` for a config,
//! else it probes by its last-known-good snapshot and says it is stale. Every later version is
//! judged (same deployment, no lower version), changes the probe plan at once, is persisted and
//! acked — or nacked while the running plan goes on.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use meridian_director::meridian_health::{
    CheckerConfig, CheckerNode, director_addr, run_checker, run_probes,
};
use meridian_director::report_auth::ReportTokens;
use meridian_model::ValidConfig;
use meridian_sync::follow::{
    First, Follower, Running, Start, Verdict, first_config, load_saved, parse_config, start_from,
};
use meridian_sync::protocol::{Kind, Snapshot};
use meridian_sync::{ClientConfig, Event, Lkg, NodeInfo, SyncClient};
use tokio::sync::{mpsc, watch};

#[derive(clap::Args)]
pub struct Args {
    /// The checker file: `node` (id, region, source_address), `config` (the global config
    /// file) and `directors` (their `--http` addresses).
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    control: super::control_flags::ControlArgs,
    /// With `--control`: a director's `--http` address (`ip:port` or `http://ip:port`);
    /// repeat or comma-separate for several.
    #[arg(long = "director", value_delimiter = ',')]
    directors: Vec<String>,
    /// With `--control`: local address probes and reports are sent from. Default: the
    /// system's choice.
    #[arg(long)]
    source_address: Option<IpAddr>,
    /// The report token file: its first token goes with every report (`Authorization:
    /// Bearer`), as the directors' `--report-token-file` expects. With `-c`, overrides the
    /// checker file's `report_token_file`. Default: reports without a token.
    #[arg(long)]
    report_token_file: Option<PathBuf>,
}

/// The token sent with every report: the first of the file.
fn report_token(file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(path) = file else { return Ok(None) };
    Ok(Some(ReportTokens::load(path)?.first().to_string()))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !a.control.given() || a.config.is_none(),
        "give either -c FILE or --control URL, not both"
    );
    if a.control.given() {
        return run_control(a);
    }
    let file = a.config.context("give the checker file with -c FILE (or --control URL)")?;
    let c = CheckerConfig::load(&file)?;
    let token = report_token(a.report_token_file.as_ref().or(c.report_token_file.as_ref()))?;
    // Probes are small and few: one thread is plenty.
    super::runtime(Some(1))?.block_on(async move {
        println!(
            "checker {} in {} reporting to {} director(s), config {}",
            c.node.id,
            c.node.region,
            c.directors.len(),
            c.config.display()
        );
        until_stopped(run_checker(c, token)).await
    })
}

async fn until_stopped(work: impl std::future::Future<Output = ()>) -> anyhow::Result<ExitCode> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = work => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn run_control(a: Args) -> anyhow::Result<ExitCode> {
    let c = a.control.required()?;
    anyhow::ensure!(!a.directors.is_empty(), "--control needs at least one --director ADDR");
    let directors = a
        .directors
        .iter()
        .map(|d| director_addr(d).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
    let token = meridian_sync::read_token(&c.token_file).map_err(anyhow::Error::msg)?;
    let report_token = report_token(a.report_token_file.as_ref())?;
    let node = CheckerNode { id: c.node_id, region: c.region, source_address: a.source_address };
    super::runtime(Some(1))?.block_on(async move {
        let urls = c.urls.join(", ");
        let boot = connect(c.urls, token, &node, Lkg::new(c.snapshot), c.initial_wait).await?;
        let stale = if boot.stale { " (stale: from the last-known-good snapshot)" } else { "" };
        println!(
            "checker {} in {} reporting to {} director(s), config version {} from control {urls}{stale}",
            node.id,
            node.region,
            directors.len(),
            boot.version
        );
        let (tx, rx) = watch::channel(Some(boot.config));
        let follow = follow(boot.follow, boot.events, boot.initial, boot.pending, boot.stale, tx);
        until_stopped(async move {
            tokio::join!(run_probes(node, directors, report_token, rx), follow);
        })
        .await
    })
}

/// A checker connected to the control plane, before it probes.
struct Boot {
    config: ValidConfig,
    version: u64,
    /// Probing by the last-known-good snapshot, not by a version pushed since start.
    stale: bool,
    follow: Follower,
    events: mpsc::Receiver<Event>,
    /// The pushed snapshot the first plan came from: persisted and acked once probing.
    initial: Option<Snapshot>,
    /// Snapshots that arrived while booting, handled once probing.
    pending: Vec<Snapshot>,
}

/// Opens the stream and takes the first config from it, or from the last-known-good snapshot
/// when no instance gives a usable one in time.
async fn connect(
    urls: Vec<String>,
    token: String,
    node: &CheckerNode,
    lkg: Lkg,
    wait: Duration,
) -> anyhow::Result<Boot> {
    let mut running = Running::default();
    let saved = load_saved(&lkg, &mut running, parse_config);
    let info = NodeInfo {
        id: node.id.clone(),
        region: node.region.clone(),
        role: "checker".into(),
        binary_version: env!("CARGO_PKG_VERSION").into(),
        // Only the config: drains and routing controls do not change what a checker probes.
        features: vec![Kind::Config.as_str().into()],
    };
    let (client, mut events) = SyncClient::start(ClientConfig::new(urls, token, info.clone()))?;
    let First { from_control, pending, why } = first_config(&mut events, &running, wait, parse_config).await;
    let (initial, config, version, stale) =
        match start_from(from_control, saved, &why, &lkg, "probing by").map_err(anyhow::Error::msg)? {
            Start::Control(s, c) => {
                let v = s.version;
                (Some(s), c, v, false)
            }
            Start::Saved(s, c) => (None, c, s.snapshot.version, true),
        };
    Ok(Boot {
        config,
        version,
        stale,
        follow: Follower { running, lkg, client, node: info },
        events,
        initial,
        pending,
    })
}

/// Follows the stream while the checker probes: each applied version goes to the probe loop.
async fn follow(
    mut follow: Follower,
    mut events: mpsc::Receiver<Event>,
    initial: Option<Snapshot>,
    pending: Vec<Snapshot>,
    mut stale: bool,
    tx: watch::Sender<Option<ValidConfig>>,
) {
    if let Some(s) = initial {
        follow.accepted(&s);
    }
    for s in pending {
        handle(&mut follow, &tx, s);
    }
    let mut lost_at = None;
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Connected { url } => {
                lost_at = None;
                if stale {
                    tracing::info!(%url, "control plane reachable again");
                    stale = false;
                }
            }
            Event::Disconnected { .. } => {
                lost_at.get_or_insert_with(SystemTime::now);
            }
            Event::AllUnreachable => {
                let since = *lost_at.get_or_insert_with(SystemTime::now);
                if !stale {
                    stale = true;
                    let since_unix_ms =
                        since.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
                    tracing::warn!(
                        since_unix_ms,
                        "no control instance reachable; probing by the running version (stale)"
                    );
                }
            }
            Event::Snapshot(s) => handle(&mut follow, &tx, s),
        }
    }
}

/// Applies one snapshot: a new probe plan, persisted and acked; or nacked, the plan unchanged.
fn handle(follow: &mut Follower, tx: &watch::Sender<Option<ValidConfig>>, s: Snapshot) {
    if s.kind != Kind::Config {
        // Not asked for (see `features`): neither applied nor nacked.
        return;
    }
    match follow.running.judge(&s) {
        Verdict::Refuse(why) => return follow.refused(&s, why),
        Verdict::Same => {}
        Verdict::Newer => match parse_config(&s) {
            Ok(c) => {
                tracing::info!(version = s.version, hash = %c.hash(), "config applied from the control plane");
                tx.send_replace(Some(c));
            }
            Err(e) => return follow.refused(&s, e),
        },
    }
    follow.accepted(&s);
}
