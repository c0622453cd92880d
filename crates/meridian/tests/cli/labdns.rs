//! DNS in the lab: the director and one checker per region that `meridian up` runs. Queried
//! with `dig` (Debian dnsutils) from a client address in a region, as `meridian lab dig` does.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::SERIAL;
use crate::drill::{control_cli, poll, start_lab};
use crate::failover::lab;

/// `(status, A records)` for `api.meridian.lab.` asked from a client in region 127.0.N.0/24.
fn dig(octet: u8) -> (String, Vec<String>) {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", "8553", "-b", &format!("127.0.{octet}.250")])
        .args(["api.meridian.lab.", "A", "+tries=1", "+time=2", "+nocmd", "+noall", "+comments", "+answer"])
        .output()
        .expect("`dig` is needed (Debian package dnsutils; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status =
        text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("NO ANSWER").to_string();
    let records = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains("\tA\t"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    (status, records)
}

async fn health(c: &reqwest::Client) -> Value {
    c.get("http://127.0.0.1:8554/v1/health").send().await.unwrap().json().await.unwrap()
}

fn verdict(h: &Value, region: &str) -> bool {
    h["checks"].as_array().unwrap().iter().find(|c| c["name"] == region).unwrap()["healthy"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downed_region_leaves_the_answers_and_comes_back_without_an_empty_answer() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_lab(dir.path()).await;
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();

    // Every region's clients are sent to their own region.
    poll("every region healthy", Duration::from_secs(30), async || {
        let h = health(&c).await;
        ["us-east-1", "eu-west-1", "ap-southeast-2"].iter().all(|r| verdict(&h, r))
    })
    .await;
    for (octet, region_ip) in [(1, "127.0.1.1"), (2, "127.0.2.1"), (3, "127.0.3.1")] {
        assert_eq!(dig(octet), ("NOERROR".to_string(), vec![region_ip.to_string()]));
    }

    for mode in ["kill", "stop", "blackhole"] {
        lab(dir.path(), &["down", "ap-southeast-2", "--mode", mode]);
        let started = Instant::now();
        // Every answer on the way is a real one: NOERROR with a record, never empty/SERVFAIL.
        let mut seen = 0;
        loop {
            let (status, records) = dig(3);
            assert_eq!(status, "NOERROR", "{mode}: {records:?}");
            assert_eq!(records.len(), 1, "{mode}: {records:?}");
            seen += 1;
            if records[0] != "127.0.3.1" {
                // The next nearest region for ap-southeast-2's clients: us-east-1 (200 ms).
                assert_eq!(records[0], "127.0.1.1");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{mode}: ap-southeast-2 never left the answers"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "ap-southeast-2 down by {mode}: left the answers after {:?} ({seen} queries)",
            started.elapsed()
        );
        // Other regions' clients are unaffected.
        assert_eq!(dig(2).1, vec!["127.0.2.1".to_string()]);
        lab(dir.path(), &["up", "ap-southeast-2"]);
        let started = Instant::now();
        loop {
            let (status, records) = dig(3);
            assert_eq!((status.as_str(), records.len()), ("NOERROR", 1), "{mode}: {records:?}");
            if records[0] == "127.0.3.1" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{mode}: ap-southeast-2 never came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Manual failover with a routing control, through the control plane: the director follows
    // it whatever the health; the safety rule keeps one region on.
    let (code, out, err) = control_cli(dir.path(), &["routing-control", "set", "ap-southeast-2", "off"]);
    assert_eq!(code, 0, "{out}\n{err}");
    poll("ap-southeast-2 switched out of the answers", Duration::from_secs(30), async || {
        dig(3) == ("NOERROR".to_string(), vec!["127.0.1.1".to_string()])
    })
    .await;
    for r in ["us-east-1", "eu-west-1"] {
        let _ = control_cli(dir.path(), &["routing-control", "set", r, "off"]);
    }
    let (code, out, err) = control_cli(dir.path(), &["routing-control", "list", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let on = serde_json::from_str::<Value>(&out).unwrap().to_string().matches("\"on\"").count();
    assert!(on >= 1, "the safety rule let every region go off: {out}");
    poll("every control back on", Duration::from_secs(30), async || {
        ["us-east-1", "eu-west-1", "ap-southeast-2"]
            .iter()
            .all(|r| control_cli(dir.path(), &["routing-control", "set", r, "on"]).0 == 0)
    })
    .await;
    poll("ap-southeast-2 back in the answers", Duration::from_secs(30), async || {
        dig(3).1 == vec!["127.0.3.1".to_string()]
    })
    .await;
    up.terminate(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_checker_flips_nothing_and_a_partitioned_director_keeps_its_answers() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_lab(dir.path()).await;
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    poll("three fresh vantage points", Duration::from_secs(30), async || {
        health(&c).await["vantage_points_fresh"] == 3
    })
    .await;

    // One checker cut off by nftables (every packet from its source address dropped): it
    // goes stale; the other two still agree, nothing flips.
    lab(dir.path(), &["down", "chk-us-east-1-1", "--mode", "blackhole"]);
    poll("the cut-off checker stale", Duration::from_secs(30), async || {
        health(&c).await["vantage_points_fresh"] == 2
    })
    .await;
    let h = health(&c).await;
    assert_eq!(h["partitioned"], false, "{h}");
    for r in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
        assert!(verdict(&h, r), "{r} flipped: {h}");
    }
    assert_eq!(dig(1).1, vec!["127.0.1.1".to_string()]);

    // A second checker lost: one fresh vantage point of three. The director is partitioned and
    // keeps its last verdicts, even for a region that really goes down meanwhile.
    lab(dir.path(), &["down", "chk-eu-west-1-1", "--mode", "kill"]);
    poll("the director partitioned", Duration::from_secs(30), async || {
        health(&c).await["partitioned"] == true
    })
    .await;
    lab(dir.path(), &["down", "us-east-1", "--mode", "kill"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h = health(&c).await;
    assert_eq!(h["partitioned"], true, "{h}");
    assert!(verdict(&h, "us-east-1"), "a partitioned director changed a verdict: {h}");
    assert_eq!(dig(1), ("NOERROR".to_string(), vec!["127.0.1.1".to_string()]));

    // The vantage points return: the director trusts them again and us-east-1 leaves.
    lab(dir.path(), &["up", "chk-us-east-1-1"]);
    lab(dir.path(), &["up", "chk-eu-west-1-1"]);
    poll("us-east-1 out of the answers", Duration::from_secs(60), async || {
        dig(1).1 == vec!["127.0.2.1".to_string()]
    })
    .await;
    assert_eq!(health(&c).await["partitioned"], false);
    lab(dir.path(), &["up", "us-east-1"]);
    up.terminate(Duration::from_secs(20)).unwrap();
}
