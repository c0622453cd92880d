//! A real `meridian control`, a `meridian director --control` and a `meridian checker
//! --control`, on 127.0.33.x: the checker's probe plan comes from the control plane and reaches
//! the director; an apply that points the check at a failing path (and gives it its own
//! interval and threshold) changes what the checker reports without a restart, and the checker
//! acks that version (the fleet status lists it with role `checker`); with the control plane
//! gone, a restarted checker probes by its last-known-good snapshot, says it is stale and keeps
//! reporting. Polls with generous deadlines.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meridian_testkit::TestUpstream;
use meridian_testkit::proc::{ChildGuard, wait_for_tcp};
use serde_json::Value;

use crate::{SERIAL, bin};

const DEADLINE: Duration = Duration::from_secs(30);

/// The global config: one check of us-east-1 (the test upstream standing in for its gateways)
/// at `path`, with `extra` fields on the check.
fn global(gateway: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "deployment: lab\nregions:\n  - {{ name: us-east-1, public_addresses: [127.0.33.10] }}\n  \
         - {{ name: eu-west-1, public_addresses: [127.0.33.20] }}\n\
         dns:\n  zones:\n    - name: api.example.com.\n      \
         ns: [{{ name: ns1.api.example.com., address: 127.0.33.53 }}]\n  record_sets:\n    \
         - name: failover.api.example.com.\n      type: A\n      \
         policy: {{ kind: failover, primary: us-east-1, secondary: eu-west-1 }}\n  \
         health:\n    interval: 200ms\n    timeout: 200ms\n    failure_threshold: 2\n    checks:\n      \
         - {{ name: us-east-1, region: us-east-1, address: \"{gateway}\", path: {path}{extra} }}\n"
    )
}

fn checker(dir: &Path, server: &str, director: SocketAddr, out: &str) -> ChildGuard {
    let log = std::fs::File::create(dir.join(out)).unwrap();
    ChildGuard::spawn(
        Command::new(bin())
            .args(["checker", "--control", server, "--token-file", "chk.token", "--node-id", "chk-eu-1"])
            .args(["--region", "eu-west-1", "--snapshot", "chk.snapshot", "--initial-wait", "1s"])
            .args(["--director", &format!("http://{director}"), "--source-address", "127.0.33.20"])
            .current_dir(dir)
            .env("MERIDIAN_LOG", "warn")
            .stdout(log),
    )
    .unwrap()
}

/// The director's view of check us-east-1 from the checker, once there is one.
async fn observation(http: SocketAddr) -> Option<Value> {
    let h: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{http}/v1/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let check = h["checks"].as_array()?.iter().find(|c| c["name"] == "us-east-1")?.clone();
    let v = check["vantage_points"].as_array()?.iter().find(|v| v["checker"] == "chk-eu-1")?.clone();
    Some(serde_json::json!({ "check": check, "vantage": v }))
}

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let end = std::time::Instant::now() + DEADLINE;
    while !f().await {
        assert!(std::time::Instant::now() < end, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_observed(http: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let o = observation(http).await;
        if let Some(o) = o.as_ref().filter(|o| ok(o)) {
            return o.clone();
        }
        assert!(std::time::Instant::now() < end, "not within {DEADLINE:?}: {what}; last: {o:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn checker_follows_the_control_plane_and_probes_by_its_snapshot_without_it() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let gateway = TestUpstream::start("us-gateway").await;
    let (control, server) = crate::start_control(dir, "127.0.33.1").await;
    let run = |args: &[&str]| crate::admin_client(dir, &server, args);
    std::fs::write(dir.join("global.yaml"), global(gateway.addr(), "/-/ready", "")).unwrap();
    let (code, out, err) = run(&["apply", "-f", "global.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    for (id, region, file) in [("dir-1", "us-east-1", "dir.token"), ("chk-eu-1", "eu-west-1", "chk.token")] {
        let (code, token, err) = run(&["token", "create", id, "--node", id, "--region", region]);
        assert_eq!(code, 0, "{err}");
        std::fs::write(dir.join(file), token.trim()).unwrap();
    }

    let (dns, http) = (crate::free_tcp_udp("127.0.33.53"), crate::free_tcp_udp("127.0.33.53"));
    let _director = ChildGuard::spawn(
        Command::new(bin())
            .args(["director", "--control", &server, "--token-file", "dir.token", "--node-id", "dir-1"])
            .args(["--region", "us-east-1", "--snapshot", "dir.snapshot", "--initial-wait", "2s"])
            .args(["--listen", &dns.to_string(), "--http", &http.to_string(), "--workers", "1"])
            .current_dir(dir)
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null()),
    )
    .unwrap();
    wait_for_tcp(http, Duration::from_secs(20)).await.unwrap();
    let chk = checker(dir, &server, http, "checker-1.out");

    // Version 1: the probes pass and reach the director, counted (another region's view).
    let o = until_observed(http, "the checker's observation of us-east-1", |o| {
        o["vantage"]["counted"] == true && o["vantage"]["healthy"] == true
    })
    .await;
    assert!(o["vantage"]["error"].is_null(), "{o}");
    assert!(gateway.requests_to("/-") > 0);

    // The fleet status lists the checker: role checker, config only, acked.
    let acked = |version: u64| {
        let v: Value = serde_json::from_str(&run(&["status", "--json"]).1).unwrap_or_default();
        let n = v["nodes"].as_array().and_then(|n| n.iter().find(|n| n["id"] == "chk-eu-1").cloned());
        n.is_some_and(|n| {
            n["role"] == "checker"
                && n["kinds"]["config"]["applied"] == version
                && n["kinds"]["config"]["nack"].is_null()
                && n["kinds"].get("drains").is_none()
        })
    };
    until("the checker acked config version 1", || std::future::ready(acked(1))).await;
    let (code, out, _) = run(&["status"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.contains("chk-eu-1") && l.contains("checker")), "{out}");

    // Version 2: the check probes a failing path, on its own interval and threshold. The
    // running checker follows it: the director sees it fail, and the checker acks version 2.
    std::fs::write(
        dir.join("global.yaml"),
        global(gateway.addr(), "/status/503", ", interval: 300ms, failure_threshold: 1"),
    )
    .unwrap();
    let (code, out, err) = run(&["apply", "-f", "global.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    let o = until_observed(http, "the checker's observation turns unhealthy", |o| {
        o["vantage"]["healthy"] == false && o["check"]["healthy"] == false
    })
    .await;
    assert!(o["vantage"]["error"].as_str().unwrap_or("").contains("503"), "{o}");
    // The check's staleness follows its own interval: 3 × 300ms.
    assert_eq!(o["check"]["staleness_ms"], 900, "{o}");
    until("the checker acked config version 2", || std::future::ready(acked(2))).await;
    assert!(gateway.requests_to("/status") > 0);

    // The control plane goes away; a restarted checker probes by its snapshot (version 2),
    // says so, and keeps reporting.
    drop(control);
    drop(chk);
    let before = observation(http).await.unwrap()["vantage"]["observed_at_ms"].as_u64().unwrap();
    let _chk = checker(dir, &server, http, "checker-2.out");
    until("the restarted checker says it is stale", || {
        let out = std::fs::read_to_string(dir.join("checker-2.out")).unwrap_or_default();
        std::future::ready(out.contains("config version 2") && out.contains("stale"))
    })
    .await;
    let o = until_observed(http, "reports from the restarted checker", |o| {
        o["vantage"]["observed_at_ms"].as_u64().is_some_and(|t| t > before) && o["vantage"]["fresh"] == true
    })
    .await;
    assert!(o["vantage"]["error"].as_str().unwrap_or("").contains("503"), "{o}");
    assert_eq!(o["check"]["healthy"], false, "{o}");
}
