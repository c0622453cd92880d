//! The control plane in the lab (`meridian up` runs it; every gateway takes its config from
//! it): propagation of applied changes to three regions, measured; the data plane through the
//! control plane's loss (killed, blackholed) under steady load; a gateway restarted while the
//! control plane is down boots from its last-known-good snapshot.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::SERIAL;
use crate::drill::{Load, control_cli, poll, start_lab};
use crate::failover::lab;

const CONTROL: &str = "http://127.0.0.1:9700";
const PUBLIC: [&str; 3] = ["127.0.1.1:8080", "127.0.2.1:8080", "127.0.3.1:8080"];
const ADMINS: [&str; 3] = ["127.0.1.1:9901", "127.0.2.1:9901", "127.0.3.1:9901"];

fn token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("control/admin.token")).unwrap().trim().to_string()
}

/// The lab's global config with one more route, `/probe-N` → orders.
fn with_probe_route(global: &str, n: usize) -> String {
    let route = format!(
        "  - name: probe-{n}\n    match:\n      path: {{ exact: /probe-{n} }}\n    service: orders\n"
    );
    let edited = global.replacen("\nroutes:\n", &format!("\nroutes:\n{route}"), 1);
    assert_ne!(edited, global);
    edited
}

async fn current_version(c: &reqwest::Client, token: &str) -> u64 {
    let v: Value =
        c.get(format!("{CONTROL}/v1/config")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    v["version"].as_u64().unwrap()
}

async fn apply(c: &reqwest::Client, token: &str, yaml: String, expected: u64) -> reqwest::Response {
    c.post(format!("{CONTROL}/v1/config"))
        .bearer_auth(token)
        .header("x-meridian-expected-version", expected.to_string())
        .body(yaml)
        .send()
        .await
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Gateway admin `/-/config` of every region.
async fn configs(c: &reqwest::Client) -> Vec<Value> {
    let mut out = Vec::new();
    for a in ADMINS {
        out.push(c.get(format!("http://{a}/-/config")).send().await.unwrap().json().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_changes_reach_every_region_and_propagation_is_measured() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_lab(dir.path()).await;
    let token = token(dir.path());
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let global = std::fs::read_to_string(dir.path().join("global.yaml")).unwrap();

    // Every gateway was given the lab's config by the control plane.
    for v in configs(&c).await {
        assert!(v["source"].as_str().unwrap().starts_with("control "), "{v}");
        assert_eq!(v["stale"], false, "{v}");
    }

    // Twenty changes, one after another: from the apply request to the moment the new route
    // answers in every region (each gateway polled every few milliseconds).
    let mut times = Vec::new();
    for n in 0..20 {
        let expected = current_version(&c, &token).await;
        let started = Instant::now();
        let r = apply(&c, &token, with_probe_route(&global, n), expected).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let mut pending: Vec<&str> = PUBLIC.to_vec();
        let deadline = started + Duration::from_secs(30);
        while !pending.is_empty() {
            assert!(Instant::now() < deadline, "/probe-{n} never reached {pending:?}");
            let mut still = Vec::new();
            for a in pending {
                match c.get(format!("http://{a}/probe-{n}")).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => still.push(a),
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!(
        "propagation to 3 regions over {} applies: p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );

    // `apply --wait` reports every expected node acked, and the fleet table agrees.
    let edited = dir.path().join("edited.yaml");
    std::fs::write(&edited, with_probe_route(&global, 99)).unwrap();
    let (code, out, err) = control_cli(dir.path(), &["apply", "-f", edited.to_str().unwrap(), "--wait"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = control_cli(dir.path(), &["status", "--json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    let version = current_version(&c, &token).await;
    let nodes = status["nodes"].as_array().unwrap();
    // Three gateways, the lab's DNS director and a checker per region: all follow the control
    // plane.
    assert_eq!(nodes.len(), 7, "{status}");
    for (role, count) in [("gateway", 3), ("director", 1), ("checker", 3)] {
        assert_eq!(nodes.iter().filter(|n| n["role"] == role).count(), count, "{role}: {status}");
    }
    for n in nodes {
        assert_eq!(n["kinds"]["config"]["applied"], version, "{n}");
    }

    // An invalid config is refused whole; every gateway keeps what it runs.
    let before: Vec<Value> = configs(&c).await.into_iter().map(|v| v["hash"].clone()).collect();
    let r = apply(&c, &token, global.replace("service: orders", "service: ordrs"), version).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("routes[0].service"), "{body}");
    assert_eq!(current_version(&c, &token).await, version);
    let after: Vec<Value> = configs(&c).await.into_iter().map(|v| v["hash"].clone()).collect();
    assert_eq!(before, after);

    up.terminate(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_serves_through_the_control_planes_loss() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_lab(dir.path()).await;
    let token = token(dir.path());
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();
    let global = std::fs::read_to_string(dir.path().join("global.yaml")).unwrap();
    let urls: Vec<String> =
        PUBLIC.iter().flat_map(|a| ["/orders", "/users"].map(|p| format!("http://{a}{p}"))).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();

    for mode in ["kill", "blackhole"] {
        let load = Load::start(&c, &urls);
        load.flowing(50).await;
        lab(dir.path(), &["down", "control", "--mode", mode]);
        eprintln!("control plane down by {mode}");
        // Every gateway notices and says it is serving on stale versions.
        poll("every gateway stale", Duration::from_secs(90), async || {
            configs(&c).await.iter().all(|v| v["stale"] == true)
        })
        .await;
        eprintln!("every gateway says it is stale");
        load.flowing(200).await;
        // The control plane is unreachable: an apply cannot happen (a clear client error).
        let (code, _, err) = control_cli(dir.path(), &["status"]);
        assert_ne!(code, 0, "status answered with the control plane down by {mode}");
        assert!(!err.trim().is_empty());
        lab(dir.path(), &["up", "control"]);
        eprintln!("control plane back");
        poll("every gateway connected again", Duration::from_secs(90), async || {
            configs(&c).await.iter().all(|v| v["stale"] == false)
        })
        .await;
        load.flowing(50).await;
        let (ok, failed) = load.finish().await;
        eprintln!("control plane down by {mode} under load: {ok} ok, {failed} failed");
        assert_eq!(failed, 0, "{mode}: {failed} requests failed");
    }

    // A gateway restarted while the control plane is down boots from its snapshot and serves.
    lab(dir.path(), &["down", "control", "--mode", "kill"]);
    lab(dir.path(), &["down", "gw-eu-west-1-1", "--mode", "kill"]);
    lab(dir.path(), &["up", "gw-eu-west-1-1"]);
    let r = c.get("http://127.0.2.1:8080/users").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-meridian-region"], "eu-west-1");
    let v: Value = c.get("http://127.0.2.1:9901/-/config").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["from_snapshot"], true, "{v}");
    // Changes made once the control plane is back reach it.
    lab(dir.path(), &["up", "control"]);
    let expected = current_version(&c, &token).await;
    let r = apply(&c, &token, with_probe_route(&global, 1), expected).await;
    assert_eq!(r.status(), 200);
    poll(
        "the new route in the restarted region",
        Duration::from_secs(60),
        async || matches!(c.get("http://127.0.2.1:8080/probe-1").send().await, Ok(r) if r.status() == 200),
    )
    .await;

    up.terminate(Duration::from_secs(20)).unwrap();
}
