//! `meridian-gateway-bench`: the parties of the hot-path regression guard (`bench/callgrind.sh`)
//! in one small binary, so CI builds the gateway crate in an optimised profile and not the whole
//! `meridian` binary (control plane, director, lab), and the client of bench/latency.sh. Only
//! that client (`latency`) times anything.
//!
//! - `gateway -c BOOTSTRAP [--workers 1]`, or quick mode `gateway --listen L --upstream U
//!   [--admin A] [--workers 1]`: the data plane exactly as `meridian gateway` runs it (the same
//!   `meridian_gateway::start`, current-thread runtimes, one per worker), without the command
//!   line and log set-up of the main binary; `bench/proxy.sh` can run it as `MERIDIAN_BIN`.
//! - `upstream --listen ADDR`: a fixed upstream, `200 "hello from backend\n"` (like the nginx
//!   backend of bench/proxy.sh); request bodies are read and dropped.
//! - `mix --addr ADDR [--warmup N] [--scenario S] [--count N]`: a fixed, sequential request mix
//!   on one keep-alive connection, one request at a time, so the gateway does the same work in
//!   the same order on every run. Warm-up: N rounds of every scenario. Then `--count` requests of
//!   the measured scenario. Every status is checked; a wrong one fails the run.
//! - `latency --target NAME=ADDR... [--count N] [--block N] [--warmup N] [--http2]`: one
//!   keep-alive connection per target (`--http2`: cleartext, prior knowledge) and one `GET /` at
//!   a time, taking turns between the targets (`--block`
//!   requests per turn; each round of turns in a random order), so whatever else the
//!   machine does lands on every target alike. Prints each target's latency percentiles and,
//!   for every pair, the median of the differences between their turns (each turn's median)
//!   with a 95 % confidence interval (bench/latency.sh). The only subcommand that times
//!   anything; the guard does not run it.
//!
//! Loopback addresses only; nothing here is part of the gateway's behaviour.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use meridian_gateway::config_source::{ConfigSource, FileSource, StaticSource};

/// The allocator `meridian` runs with, so the counts here are the gateway's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("gateway") => gateway(&args[1..]),
        Some("upstream") => upstream(&args[1..]),
        Some("mix") => mix(&args[1..]),
        Some("latency") => latency(&args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: meridian-gateway-bench gateway|upstream|mix|latency ... (see bench/callgrind.sh)"
        )),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].as_str())
}

fn number(args: &[String], name: &str, default: u32) -> anyhow::Result<u32> {
    flag(args, name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name} {v:?}")))
}

/// As `meridian gateway` builds it (crates/meridian/src/cmd/gateway.rs): a current-thread
/// runtime, the first of the listener workers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn gateway(args: &[String]) -> anyhow::Result<()> {
    let (mut bootstrap, source): (_, Box<dyn ConfigSource>) = match flag(args, "-c") {
        Some(path) => {
            let bootstrap =
                meridian_model::load_bootstrap(&PathBuf::from(path)).map_err(|e| anyhow::anyhow!("{e}"))?;
            let meridian_model::ConfigSource::File { path: config, watch_interval } = &bootstrap.config
            else {
                bail!("the bench gateway reads its config from a file");
            };
            let source = Box::new(FileSource::new(config.clone(), watch_interval.get()));
            (bootstrap, source)
        }
        // Quick mode, as `meridian gateway --listen L --upstream U [--admin A]` (bench/proxy.sh).
        None => {
            let listen =
                flag(args, "--listen").context("gateway needs -c BOOTSTRAP or --listen and --upstream")?;
            let upstream = flag(args, "--upstream").context("quick mode needs --upstream")?;
            let admin = flag(args, "--admin").unwrap_or("127.0.0.1:0");
            let (bootstrap, valid) = meridian_gateway::quick::configs(listen, upstream, admin)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (bootstrap, Box::new(StaticSource(Some(valid))))
        }
    };
    bootstrap.workers = Some(number(args, "--workers", 1)?.max(1) as usize);
    runtime()?.block_on(async move {
        let running = meridian_gateway::start(bootstrap, source).await?;
        running.run_until_signal().await
    })
}

fn upstream(args: &[String]) -> anyhow::Result<()> {
    let addr = flag(args, "--listen").context("upstream needs --listen ADDR")?.to_string();
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut r =
                            hyper::Response::new(Full::new(Bytes::from_static(b"hello from backend\n")));
                        r.headers_mut().insert("content-type", http::HeaderValue::from_static("text/plain"));
                        Ok::<_, Infallible>(r)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// One request of the mix: name, raw request bytes, expected status.
struct Scenario {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
}

fn scenarios() -> Vec<Scenario> {
    let head = |method: &str, path: &str, extra: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: meridian-bench-mix\r\n\
             Accept: */*\r\n{extra}\r\n"
        )
        .into_bytes()
    };
    let body = vec![b'x'; 1024];
    let mut post =
        head("POST", "/api/items", "Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n");
    post.extend_from_slice(&body);
    vec![
        // The plain keep-alive route (what bench/proxy.sh compares with nginx).
        Scenario { name: "get", request: head("GET", "/api/items?page=2", ""), status: 200 },
        // A small body, buffered for replay by the retry policy.
        Scenario { name: "post", request: post, status: 200 },
        // No route: the gateway answers itself.
        Scenario { name: "not-found", request: head("GET", "/nowhere", ""), status: 404 },
        // A route with policies (CORS, request and response headers).
        Scenario {
            name: "pipeline",
            request: head("GET", "/web/items", "Origin: http://localhost:3000\r\n"),
            status: 200,
        },
    ]
}

fn mix(args: &[String]) -> anyhow::Result<()> {
    let addr = flag(args, "--addr").context("mix needs --addr ADDR")?;
    let warmup = number(args, "--warmup", 20)?;
    let count = number(args, "--count", 0)?;
    let name = flag(args, "--scenario").unwrap_or("get");
    let all = scenarios();
    let Some(measured) = all.iter().find(|s| s.name == name) else {
        bail!("unknown scenario {name:?} (get, post, not-found, pipeline)");
    };
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    for _ in 0..warmup {
        for s in &all {
            exchange(&mut w, &mut r, s)?;
        }
    }
    for _ in 0..count {
        exchange(&mut w, &mut r, measured)?;
    }
    println!(
        "{{\"scenario\":\"{}\",\"warmup_requests\":{},\"requests\":{count}}}",
        measured.name,
        warmup as usize * all.len()
    );
    Ok(())
}

fn latency(args: &[String]) -> anyhow::Result<()> {
    let count = number(args, "--count", 100_000)?;
    let warmup = number(args, "--warmup", 1_000)?;
    let block = number(args, "--block", 1)?;
    if count == 0 || block == 0 || u64::from(count) * u64::from(block) > 2_000_000 {
        bail!("--count {count} --block {block}: 1 to 2,000,000 requests per target");
    }
    let http2 = args.iter().any(|a| a == "--http2");
    // HTTP/2 runs on a current-thread runtime of its own: the connections' tasks make progress
    // while a request is waited for.
    let rt = runtime()?;
    let mut conns: Vec<(String, Client)> = Vec::new();
    for w in args.windows(2).filter(|w| w[0] == "--target") {
        let (name, addr) = w[1].split_once('=').with_context(|| format!("--target {:?}: NAME=ADDR", w[1]))?;
        let addr: std::net::SocketAddr =
            addr.parse().with_context(|| format!("--target {name}: {addr:?}"))?;
        if !addr.ip().is_loopback() {
            bail!("--target {name}: {addr} is not a loopback address");
        }
        let client = if http2 {
            Client::h2(&rt, addr).with_context(|| format!("HTTP/2 to {name} at {addr}"))?
        } else {
            Client::h1(addr).with_context(|| format!("connecting to {name} at {addr}"))?
        };
        conns.push((name.to_string(), client));
    }
    if conns.is_empty() {
        bail!("latency needs at least one --target NAME=ADDR");
    }
    let n = conns.len();
    for _ in 0..warmup {
        for (_, c) in &mut conns {
            c.exchange(&rt)?;
        }
    }
    // Nanoseconds, per target: every request, and each turn's median (what the pairs compare).
    let mut samples = vec![Vec::with_capacity((count * block) as usize); n];
    let mut turns = vec![Vec::with_capacity(count as usize); n];
    let mut turn = Vec::with_capacity(block as usize);
    // Each round takes the targets in a fresh random order: in a fixed cycle every target
    // would always follow the same one, and a proxy that follows another process running the
    // same binary (the nginx proxies) finds its code still in the CPU's caches.
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    for _ in 0..count {
        for i in (1..n).rev() {
            // xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        for &t in &order {
            let c = &mut conns[t].1;
            turn.clear();
            for _ in 0..block {
                let start = std::time::Instant::now();
                c.exchange(&rt)?;
                turn.push(start.elapsed().as_nanos() as i64);
            }
            samples[t].extend_from_slice(&turn);
            turn.sort_unstable();
            turns[t].push(quantile(&turn, 0.5));
        }
    }
    let us = |ns: i64| ns as f64 / 1000.0;
    for ((name, _), v) in conns.iter().zip(&mut samples) {
        v.sort_unstable();
        let mean = v.iter().sum::<i64>() as f64 / v.len() as f64;
        println!(
            "target {name} {} {:.1} {:.1} {:.1} {:.1} {:.1}",
            v.len(),
            us(quantile(v, 0.5)),
            us(quantile(v, 0.9)),
            us(quantile(v, 0.99)),
            us(quantile(v, 0.999)),
            mean / 1000.0
        );
    }
    for a in 0..n {
        for b in a + 1..n {
            let mut d: Vec<i64> = turns[b].iter().zip(&turns[a]).map(|(y, x)| y - x).collect();
            d.sort_unstable();
            let (lo, hi) = median_interval(&d);
            let b_faster = d.iter().filter(|&&x| x < 0).count() as f64 / d.len() as f64;
            println!(
                "paired {} {} {} {:.2} {:.2} {:.2} {:.3}",
                conns[a].0,
                conns[b].0,
                d.len(),
                us(quantile(&d, 0.5)),
                us(lo),
                us(hi),
                b_faster
            );
        }
    }
    Ok(())
}

/// One keep-alive connection of the latency client and its `GET /`.
enum Client {
    H1(TcpStream, BufReader<TcpStream>, Scenario),
    /// Cleartext HTTP/2 with prior knowledge; one stream at a time.
    H2(hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>, http::Uri),
}

impl Client {
    fn h1(addr: std::net::SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: meridian-bench-latency\r\n\r\n");
        let scenario = Scenario { name: "latency", request: request.into_bytes(), status: 200 };
        Ok(Client::H1(stream.try_clone()?, BufReader::new(stream), scenario))
    }

    fn h2(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr) -> anyhow::Result<Client> {
        let sender = rt.block_on(async {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(stream),
            )
            .await?;
            tokio::spawn(conn);
            anyhow::Ok(sender)
        })?;
        Ok(Client::H2(sender, format!("http://{addr}/").parse()?))
    }

    fn exchange(&mut self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        match self {
            Client::H1(w, r, s) => exchange(w, r, s),
            Client::H2(sender, uri) => rt.block_on(async {
                let req = hyper::Request::get(uri.clone())
                    .header("user-agent", "meridian-bench-latency")
                    .body(http_body_util::Empty::new())?;
                let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
                    .await
                    .context("no answer in 10 s")??;
                if resp.status() != 200 {
                    bail!("expected status 200, got {}", resp.status());
                }
                resp.into_body().collect().await?;
                Ok(())
            }),
        }
    }
}

/// The value at quantile `q` of sorted samples (nearest rank).
fn quantile(sorted: &[i64], q: f64) -> i64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

/// A distribution-free 95 % confidence interval for the median of sorted samples: the order
/// statistics k and n-1-k with k = (n - 1.96 sqrt(n)) / 2 (the binomial's normal approximation;
/// the counts here are thousands).
fn median_interval(sorted: &[i64]) -> (i64, i64) {
    let n = sorted.len() as f64;
    let k = ((n - 1.96 * n.sqrt()) / 2.0).floor().max(0.0) as usize;
    (sorted[k], sorted[sorted.len() - 1 - k])
}

/// Sends one request and reads its whole response (Content-Length or chunked).
fn exchange(w: &mut TcpStream, r: &mut BufReader<TcpStream>, s: &Scenario) -> anyhow::Result<()> {
    w.write_all(&s.request)?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if status != s.status {
        bail!("{}: expected status {}, got {:?}", s.name, s.status, line.trim_end());
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("{}: connection closed in the response head", s.name);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                bail!("{}: the gateway closed the keep-alive connection", s.name);
            }
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("{}: bad chunk size {line:?}", s.name))?;
            skip(r, size + 2)?; // data and its CRLF (the last chunk: just the final CRLF)
            if size == 0 {
                return Ok(());
            }
        }
    }
    skip(r, length.unwrap_or(0))
}

fn skip(r: &mut BufReader<TcpStream>, n: usize) -> anyhow::Result<()> {
    let copied = std::io::copy(&mut r.by_ref().take(n as u64), &mut std::io::sink())?;
    if copied as usize != n {
        bail!("connection closed in a response body");
    }
    Ok(())
}
