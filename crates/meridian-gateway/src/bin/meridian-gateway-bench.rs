//! `meridian-gateway-bench`: the parties of the hot-path regression guard (`bench/callgrind.sh`)
//! in one small binary, so CI builds the gateway crate in an optimised profile and not the whole
//! `meridian` binary (control plane, director, lab). It times nothing.
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
        _ => Err(anyhow::anyhow!(
            "usage: meridian-gateway-bench gateway|upstream|mix ... (see bench/callgrind.sh)"
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
