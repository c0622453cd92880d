//! A real `meridian control` and a real `meridian director --control` following it, on
//! 127.0.30.x: the director answers the applied config with SOA serial = version; routing
//! controls take a region out of the answers; unsafe changes are refused naming the rule and
//! audited; with the control plane killed the director keeps the last config and controls;
//! restarted, it boots from its last-known-good snapshot.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meridian_testkit::proc::{ChildGuard, wait_for_tcp};

use crate::{SERIAL, bin, repo};

/// `(A records, SOA serial)` of `name` from the director at `dns`.
fn dig(dns: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([&format!("@{}", dns.ip()), "-p", &dns.port().to_string(), name, rtype])
        .args(["+tries=1", "+time=2", "+short"])
        .output()
        .expect("`dig` is needed (Debian package dnsutils; .ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn serial(dns: SocketAddr) -> String {
    // +short SOA: mname rname serial refresh retry expire minimum
    dig(dns, "api.example.com.", "SOA").first().and_then(|l| l.split_whitespace().nth(2)).unwrap_or("").into()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(std::time::Instant::now() < end, "not within 15s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn director(dir: &Path, server: &str, dns: SocketAddr, http: SocketAddr) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(bin())
            .args(["director", "--control", server, "--token-file", "node.token", "--node-id", "dir-1"])
            .args(["--region", "us-east-1", "--snapshot", "dir.snapshot", "--initial-wait", "2s"])
            .args(["--listen", &dns.to_string(), "--http", &http.to_string(), "--workers", "1"])
            .current_dir(dir)
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null()),
    )
    .unwrap()
}

async fn director_status(http: SocketAddr) -> serde_json::Value {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{http}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn director_follows_control_and_obeys_routing_controls_through_its_loss() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (control, server) = crate::start_control(dir, "127.0.30.1").await;
    let run = |args: &[&str]| crate::admin_client(dir, &server, args);
    let example = repo().join("examples/dns.yaml");
    let (code, out, err) = run(&["apply", "-f", example.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, token, err) = run(&["token", "create", "dir-1", "--node", "dir-1", "--region", "us-east-1"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(dir.join("node.token"), token.trim()).unwrap();

    let (dns, http) = (crate::free_tcp_udp("127.0.30.2"), crate::free_tcp_udp("127.0.30.2"));
    let d = director(dir, &server, dns, http);
    wait_for_tcp(dns, Duration::from_secs(20)).await.unwrap();
    // The SOA serial is the config version.
    assert_eq!(serial(dns), "1");
    assert_eq!(dig(dns, "failover.api.example.com.", "A"), ["127.0.1.1"]);

    let (code, out, err) = run(&["routing-control", "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("us-east-1 ")).unwrap_or("");
    assert!(line.contains(" on ") && line.contains("never"), "{out}");

    // us-east-1 off: it leaves the answers (it is healthy: the director has no checkers).
    let (code, out, err) = run(&["routing-control", "set", "us-east-1", "off"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("us-east-1 off (controls version 1)"), "{out}");
    until("us-east-1 out of the failover answer", || {
        dig(dns, "failover.api.example.com.", "A") == ["127.0.2.1"]
    })
    .await;
    assert_eq!(
        dig(dns, "multi.api.example.com.", "A").len(),
        3,
        "multivalue without us-east-1: eu-west-1 and two values"
    );

    // `explain` on the running director names the control that decided.
    let (code, out, err) =
        run(&["director", "explain", "failover.api.example.com", "--director", &http.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("secondary eu-west-1")
            && out.contains("controls:   us-east-1 off: members left out whatever their health"),
        "{out}"
    );

    // Unsafe changes are refused, naming the rule.
    assert_eq!(run(&["routing-control", "set", "eu-west-1", "off"]).0, 0);
    let (code, _, err) = run(&["routing-control", "set", "ap-southeast-2", "off"]);
    assert_eq!(code, 1);
    assert!(err.contains("UnsafeChange (409)") && err.contains("\"one-region-on\""), "{err}");
    let (code, _, err) = run(&["routing-control", "set", "us-east-1", "on"]);
    assert!(code == 1 && err.contains("\"wait_period\""), "{err}");
    assert_eq!(run(&["routing-control", "set", "failover-master", "off"]).0, 0);
    let (code, _, err) = run(&["routing-control", "set", "failover-secondary", "off"]);
    assert!(code == 1 && err.contains("\"failover-gate\""), "{err}");
    let (code, out, _) = run(&["routing-control", "list", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 3);
    // Every change, refused ones included, is audited.
    let audit = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{server}/v1/audit"))
        .bearer_auth(crate::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.matches("/v1/routing-controls/").count() >= 6, "{audit}");
    assert!(audit.contains("409"), "{audit}");
    // eu-west-1 and us-east-1 off: failover has every member off, so controls are ignored.
    until("us-east-1 and eu-west-1 out of the latency answer", || {
        dig(dns, "latency.api.example.com.", "A") == ["127.0.3.1"]
    })
    .await;

    // The fleet status shows the director with both kinds it applies, acked.
    until("the director acked controls version 3", || {
        let v: serde_json::Value = serde_json::from_str(&run(&["status", "--json"]).1).unwrap_or_default();
        let n = v["nodes"].as_array().and_then(|n| n.iter().find(|n| n["id"] == "dir-1").cloned());
        n.is_some_and(|n| {
            n["role"] == "director"
                && n["stale"] == false
                && n["kinds"]["config"]["applied"] == 1
                && n["kinds"]["controls"]["applied"] == 3
        })
    })
    .await;

    // The control plane goes away: same answers, and the director says it is stale.
    drop(control);
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while director_status(http).await["stale"] != true {
        assert!(std::time::Instant::now() < end, "never stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dig(dns, "latency.api.example.com.", "A"), ["127.0.3.1"]);
    assert_eq!(serial(dns), "1");

    // Restarted while control is down: from its snapshot, with the last controls.
    drop(d);
    let _d = director(dir, &server, dns, http);
    wait_for_tcp(dns, Duration::from_secs(20)).await.unwrap();
    assert_eq!(serial(dns), "1");
    assert_eq!(dig(dns, "latency.api.example.com.", "A"), ["127.0.3.1"]);
    let st = director_status(http).await;
    assert!(st["stale"] == true && st["from_snapshot"] == true && st["versions"]["controls"] == 3, "{st}");
}
