//! `meridian checker` and `meridian director --http` as processes: three checkers (one per
//! region, each from its own 127.0.2N.x source address) probe test upstreams standing in for
//! the regions' gateway tiers and report to the director; `meridian director explain
//! --director` shows the answer moving when a region goes down. Polls with generous deadlines.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meridian_testkit::TestUpstream;
use meridian_testkit::proc::{ChildGuard, free_port, wait_for_tcp};
use tokio::time::Instant;

use crate::{SERIAL, bin};

const REGIONS: [(&str, &str); 3] =
    [("us-east-1", "127.0.23.1"), ("eu-west-1", "127.0.24.1"), ("ap-southeast-2", "127.0.25.1")];
const DEADLINE: Duration = Duration::from_secs(60);

fn global(gateways: [std::net::SocketAddr; 3]) -> String {
    let regions: String =
        REGIONS.iter().map(|(n, ip)| format!("  - {{ name: {n}, public_addresses: [{ip}] }}\n")).collect();
    let checks: String = REGIONS
        .iter()
        .zip(gateways)
        .map(|((n, _), gw)| format!("      - {{ name: {n}, region: {n}, address: \"{gw}\" }}\n"))
        .collect();
    format!(
        "regions:\n{regions}dns:\n  zones:\n    - name: api.example.com.\n      \
         ns: [{{ name: ns1.api.example.com., address: 127.0.23.53 }}]\n  record_sets:\n    \
         - name: failover.api.example.com.\n      type: A\n      \
         policy: {{ kind: failover, primary: us-east-1, secondary: eu-west-1 }}\n  \
         health:\n    interval: 200ms\n    timeout: 200ms\n    failure_threshold: 2\n    \
         staleness: 5s\n    checks:\n{checks}"
    )
}

fn explain(dir: &Path, http: &str) -> String {
    let out = Command::new(bin())
        .args(["director", "explain", "failover.api.example.com", "--director", http])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn explain_until(dir: &Path, http: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let text = explain(dir, http);
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < end, "not within {DEADLINE:?}: {what}; last explain:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn checkers_and_a_director_as_processes_move_the_answer_when_a_region_goes_down() {
    let _serial = SERIAL.lock().await;
    let out = Command::new(bin()).args(["checker", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: meridian checker"));

    let us = TestUpstream::start("us-gateway").await;
    let eu = TestUpstream::start("eu-gateway").await;
    let ap = TestUpstream::start("ap-gateway").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("global.yaml"), global([us.addr(), eu.addr(), ap.addr()])).unwrap();
    let http = format!("127.0.23.53:{}", free_port());
    let dns = format!("127.0.23.53:{}", free_port());
    let _director = ChildGuard::spawn(
        Command::new(bin())
            .args(["director", "-f", "global.yaml", "--listen", &dns, "--http", &http, "--workers", "1"])
            .current_dir(dir)
            .stdout(Stdio::null()),
    )
    .unwrap();
    wait_for_tcp(http.parse().unwrap(), Duration::from_secs(20)).await.unwrap();
    let mut checkers = Vec::new();
    for (region, ip) in REGIONS {
        let file = format!("checker-{region}.yaml");
        std::fs::write(
            dir.join(&file),
            format!(
                "node: {{ id: checker-{region}, region: {region}, source_address: {ip} }}\n\
                 config: global.yaml\ndirectors: [\"http://{http}\"]\n"
            ),
        )
        .unwrap();
        let mut c = Command::new(bin());
        c.args(["checker", "-c", &file]).current_dir(dir).stdout(Stdio::null());
        checkers.push(ChildGuard::spawn(&mut c).unwrap());
    }

    let text = explain_until(dir, &http, "every vantage point counted", |t| {
        t.contains("check us-east-1: healthy — 2 of 2 other fresh")
            && t.contains("check eu-west-1: healthy — 2 of 2 other fresh")
    })
    .await;
    assert!(text.contains("member:     primary us-east-1"), "{text}");
    assert!(
        text.contains("checker-us-east-1 (us-east-1): healthy") && text.contains("own region: not counted")
    );

    us.stop_abruptly().await;
    let text =
        explain_until(dir, &http, "the answer moves to eu-west-1", |t| t.contains("secondary eu-west-1"))
            .await;
    assert!(text.contains("127.0.24.1"), "{text}");
    assert!(text.contains("check us-east-1: UNHEALTHY — 0 of 2 other fresh"), "{text}");

    let json = Command::new(bin())
        .args(["director", "explain", "failover.api.example.com", "--director", &http, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["member"], "secondary eu-west-1");
    for mut c in checkers {
        c.terminate(Duration::from_secs(5)).unwrap();
    }
}
