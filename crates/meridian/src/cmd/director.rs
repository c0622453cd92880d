//! `meridian director`: the authoritative DNS server for the configured zones, with an HTTP
//! listener for the checkers' reports (`--http`), and `meridian director explain NAME`: which
//! answer and why, from the file or from a running director (`--director`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// The global config file (with a `dns` section); re-read when it changes.
    #[arg(short = 'f', long, global = true)]
    file: Option<PathBuf>,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// HTTP address for checkers' reports (`POST /v1/observations`), `GET /v1/health` and
    /// `GET /v1/explain`, e.g. `127.0.0.1:8053`. Default: none (health stays all healthy).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Worker threads (default: one per core; 1: a current-thread runtime).
    #[arg(long)]
    workers: Option<usize>,
    /// How often the config file is checked for changes, e.g. `1s`.
    #[arg(long, default_value = "1s", value_parser = meridian_core::parse_duration)]
    poll_interval: Duration,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Which answer a client gets for NAME and why (policy, member, table row), from the file.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The name asked, e.g. `latency.api.example.com`.
    name: String,
    /// Record type.
    #[arg(long = "type", default_value = "A")]
    record_type: String,
    /// EDNS Client Subnet the resolver sends, e.g. `198.51.100.0/24`.
    #[arg(long)]
    client_subnet: Option<String>,
    /// The resolver's own address (decides when no client subnet is given).
    #[arg(long, default_value = "127.0.0.1")]
    resolver: IpAddr,
    /// Ask a running director's HTTP listener (`--http` address) instead of reading the file:
    /// the answer with live health per vantage point.
    #[arg(long)]
    director: Option<SocketAddr>,
    /// Print JSON (as `GET /v1/explain`) instead of text; needs `--director`.
    #[arg(long, requires = "director")]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(Sub::Explain(e)) = &a.command
        && let Some(director) = e.director
    {
        return explain_remote(director, e);
    }
    let file = a.file.context("give the global config file with -f FILE")?;
    if let Some(Sub::Explain(e)) = a.command {
        let config = meridian_model::load_global(&file)
            .map_err(|errs| anyhow::anyhow!("{}:\n{errs}", file.display()))?;
        let text = meridian_director::explain(
            &config,
            &e.name,
            &e.record_type,
            e.resolver,
            e.client_subnet.as_deref(),
        )?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let opts = meridian_director::Options {
        listen: a.listen,
        config: file,
        poll_interval: a.poll_interval,
        tcp_timeout: Duration::from_secs(10),
        http: a.http,
    };
    super::runtime(a.workers)?.block_on(async move {
        let stop = CancellationToken::new();
        let director = meridian_director::Director::start(opts, stop.clone()).await?;
        println!("director answering on {} (udp, tcp), serial {}", director.local_addr(), director.serial());
        if let Some(http) = director.http_addr() {
            println!("director http on http://{http} (/v1/observations, /v1/health, /v1/explain)");
        }
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            stop.cancel();
        });
        director.wait().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `explain --director ADDR`: the running director's explanation, with live health.
fn explain_remote(director: SocketAddr, e: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let mut query =
        vec![("name", e.name.clone()), ("type", e.record_type.clone()), ("resolver", e.resolver.to_string())];
    if let Some(s) = &e.client_subnet {
        query.push(("client_subnet", s.clone()));
    }
    if !e.json {
        query.push(("format", "text".into()));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // Names, record types, addresses and CIDRs need no escaping in a query string.
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("http://{director}/v1/explain?{}", q.join("&"));
        let r = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("cannot reach the director at {url}"))?;
        let ok = r.status().is_success();
        let body = r.text().await?;
        anyhow::ensure!(ok, "director: {body}");
        print!("{body}");
        if e.json {
            println!();
        }
        Ok(ExitCode::SUCCESS)
    })
}
