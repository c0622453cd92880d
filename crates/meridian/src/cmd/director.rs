//! `meridian director`: the authoritative DNS server for the configured zones, with an HTTP
//! listener for the checkers' reports (`--http`), and `meridian director explain NAME`: which
//! answer and why, from the file or from a running director (`--director`). The config comes
//! from a file (`-f`) or from the control plane (`--control`, as gateways take theirs).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use meridian_director::report_auth::ReportTokens;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// The global config file (with a `dns` section); re-read when it changes.
    #[arg(short = 'f', long, global = true)]
    file: Option<PathBuf>,
    #[command(flatten)]
    control: super::control_flags::ControlArgs,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// HTTP address for checkers' reports (`POST /v1/observations`), `GET /v1/health` and
    /// `GET /v1/explain`, e.g. `127.0.0.1:8053`. Default: none (health stays all healthy).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The tokens a checker's report must carry (`Authorization: Bearer`), one per line (blank
    /// lines and `#` comments ignored; several while a token is rotated). Read once at start.
    /// Default: none, reports are not authenticated (a warning at start).
    #[arg(long)]
    report_token_file: Option<PathBuf>,
    /// A MaxMind-format database (GeoIP2/GeoLite2 Country or City `.mmdb`) for geolocation
    /// and geoproximity answers, consulted for client networks the config's `dns.geo` rows do
    /// not cover. Read once at start.
    #[arg(long, global = true)]
    geo_database: Option<PathBuf>,
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
    // Checked here, not with clap's conflicts_with: `-f` is global and `explain` has no `--control`.
    anyhow::ensure!(!a.control.given() || a.file.is_none(), "give either -f FILE or --control URL, not both");
    if a.control.given() && a.command.is_none() {
        return serve(&a, meridian_director::Source::Control(a.control.required()?));
    }
    let file = a.file.clone().context("give the global config file with -f FILE (or --control URL)")?;
    if let Some(Sub::Explain(e)) = &a.command {
        let config = meridian_model::load_global(&file)
            .map_err(|errs| anyhow::anyhow!("{}:\n{errs}", file.display()))?;
        let text = meridian_director::explain(
            &config,
            &e.name,
            &e.record_type,
            e.resolver,
            e.client_subnet.as_deref(),
            geo_database(&a)?,
        )?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    serve(&a, meridian_director::Source::File { path: file, poll_interval: a.poll_interval })
}

fn geo_database(a: &Args) -> anyhow::Result<Option<std::sync::Arc<meridian_director::GeoDatabase>>> {
    let Some(path) = &a.geo_database else { return Ok(None) };
    let db = meridian_director::GeoDatabase::open(path)?;
    tracing::info!(path = %path.display(), kind = db.database_type(), "geo database loaded");
    Ok(Some(std::sync::Arc::new(db)))
}

/// The accepted report tokens; without them, a warning when reports can arrive.
fn report_tokens(a: &Args) -> anyhow::Result<Option<ReportTokens>> {
    match &a.report_token_file {
        Some(path) => {
            let tokens = ReportTokens::load(path)?;
            tracing::info!(path = %path.display(), tokens = tokens.len(), "checkers' reports need a report token");
            Ok(Some(tokens))
        }
        None => {
            if a.http.is_some() {
                tracing::warn!(
                    "checkers' reports are not authenticated: anyone who reaches --http can report; \
                     give --report-token-file"
                );
            }
            Ok(None)
        }
    }
}

fn serve(a: &Args, source: meridian_director::Source) -> anyhow::Result<ExitCode> {
    let opts = meridian_director::Options {
        listen: a.listen,
        source,
        tcp_timeout: Duration::from_secs(10),
        http: a.http,
        geo_database: geo_database(a)?,
        report_tokens: report_tokens(a)?,
    };
    super::runtime(a.workers)?.block_on(async move {
        let stop = CancellationToken::new();
        let director = meridian_director::Director::start(opts, stop.clone()).await?;
        let st = director.source_status();
        let stale = if st.stale { " (stale: from the last-known-good snapshot)" } else { "" };
        println!(
            "director answering on {} (udp, tcp), serial {}, config from {}{stale}",
            director.local_addr(),
            director.serial(),
            st.source
        );
        if let Some(http) = director.http_addr() {
            println!("director http on http://{http} (/v1/observations, /v1/health, /v1/status, /v1/explain)");
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
