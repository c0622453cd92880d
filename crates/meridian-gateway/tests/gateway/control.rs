//! Config from the control plane: a real gateway against a small real control instance
//! (meridian_sync::fake) on loopback — pushes, acks and nacks, drains, last-known-good boot,
//! control loss under load.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use meridian_gateway::Running;
use meridian_gateway::config_source::{ControlOptions, ControlSource};
use meridian_sync::fake::FakeControl;
use meridian_sync::protocol::{Ack, DrainsContent, Kind, Snapshot};
use meridian_testkit::TestUpstream;

use crate::harness::*;

const TOKEN: &str = "gw-local-token";
const WAIT: Duration = Duration::from_secs(10);

fn opts() -> ControlOptions {
    ControlOptions {
        initial_wait: Duration::from_secs(5),
        dead_after: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
    }
}

/// A config snapshot of deployment `dep` with the given global YAML.
fn config(version: u64, yaml: &str) -> Snapshot {
    config_of("dep", version, yaml)
}

fn config_of(deployment: &str, version: u64, yaml: &str) -> Snapshot {
    let yaml = format!("deployment: {deployment}\n{yaml}");
    let valid = meridian_model::parse_global(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Snapshot {
        kind: Kind::Config,
        deployment: deployment.into(),
        version,
        hash: valid.hash().into(),
        content: serde_json::from_str(valid.canonical_json()).unwrap(),
    }
}

fn drains(version: u64, content: DrainsContent) -> Snapshot {
    Snapshot {
        kind: Kind::Drains,
        deployment: "dep".into(),
        version,
        hash: format!("drains-{version}"),
        content: serde_json::to_value(content).unwrap(),
    }
}

/// Starts a gateway of region `local` whose config source is the control plane at `urls`,
/// keeping its token and last-known-good files in `dir`.
async fn start(dir: &Path, urls: &[String]) -> Result<Running, String> {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let bootstrap = format!(
        "node: {{ id: gw-local, region: local }}\n\
         listeners:\n  - name: public\n    address: 127.0.0.1:0\n\
         admin: {{ address: 127.0.0.1:0 }}\n\
         config: {{ source: control, urls: [{}], token_file: {} }}\n\
         snapshot_path: {}\n\
         shutdown: {{ drain_period: 0s, grace_period: 5s }}\n",
        urls.join(", "),
        dir.join("token").display(),
        dir.join("lkg").display()
    );
    let b = meridian_model::parse_bootstrap(&bootstrap).unwrap_or_else(|e| panic!("{e}\n{bootstrap}"));
    let src = ControlSource::connect(&b, opts()).await.map_err(|e| e.to_string())?;
    Ok(meridian_gateway::start(b, Box::new(src)).await.expect("gateway starts"))
}

async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

async fn served_by(url: &str) -> Option<String> {
    let r = client().get(url).send().await.ok()?;
    r.headers().get("x-upstream").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn admin_json(gw: &Running, path: &str) -> serde_json::Value {
    client().get(format!("http://{}{path}", gw.admin)).send().await.unwrap().json().await.unwrap()
}

fn is(kind: Kind, version: u64, ok: bool) -> impl Fn(&Ack) -> bool {
    move |a| a.kind == kind && a.version == version && a.ok == ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_config_is_served_and_acked_with_its_hash() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let control = FakeControl::start(TOKEN, Duration::from_millis(200)).await;
    let v1 = config(1, &global(&[a.addr()], "", CATCH_ALL));
    control.push(v1.clone());
    // The first URL is dead: the node fails over to the second.
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), &[dead_url().await, control.url()]).await.unwrap();
    let url = format!("http://{}/", gw.addr());
    assert_eq!(served_by(&url).await.as_deref(), Some("a"));
    let ack = control.wait_ack(WAIT, is(Kind::Config, 1, true)).await;
    assert_eq!(
        (ack.hash.as_str(), ack.node.as_str(), ack.region.as_str()),
        (v1.hash.as_str(), "gw-local", "local")
    );

    let v2 = config(2, &global(&[b.addr()], "", CATCH_ALL));
    control.push(v2.clone());
    let ack = control.wait_ack(WAIT, is(Kind::Config, 2, true)).await;
    assert_eq!(ack.hash, v2.hash);
    assert_eq!(served_by(&url).await.as_deref(), Some("b"));
    let status = admin_json(&gw, "/-/config").await;
    assert_eq!(status["hash"], v2.hash.as_str());
    assert_eq!(status["versions"]["config"], 2);
    assert_eq!((status["stale"].as_bool(), status["from_snapshot"].as_bool()), (Some(false), Some(false)));

    // Drain switches: the whole set is replaced by each snapshot, and acked.
    let services = [("local".to_string(), vec!["svc".to_string()])].into_iter().collect();
    control.push(drains(1, DrainsContent { regions: vec!["far".into()], services }));
    control.wait_ack(WAIT, is(Kind::Drains, 1, true)).await;
    let d = admin_json(&gw, "/-/drains").await;
    assert_eq!(d, serde_json::json!({"regions": ["far"], "services": {"local": ["svc"]}}));
    control.push(drains(2, DrainsContent::default()));
    control.wait_ack(WAIT, is(Kind::Drains, 2, true)).await;
    assert_eq!(admin_json(&gw, "/-/drains").await, serde_json::json!({"regions": [], "services": {}}));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_snapshots_are_nacked_and_the_old_version_keeps_serving() {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let control = FakeControl::start(TOKEN, Duration::from_millis(200)).await;
    let v3 = config(3, &global(&[a.addr()], "", CATCH_ALL));
    control.push(v3.clone());
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), &[control.url()]).await.unwrap();
    control.wait_ack(WAIT, is(Kind::Config, 3, true)).await;
    let url = format!("http://{}/", gw.addr());

    // Valid on its own, but this node's region is not in it: a local cause, found while
    // checking it against the bootstrap.
    let elsewhere = format!(
        "regions:\n  - name: elsewhere\nservices:\n  - name: svc\n    endpoints:\n      elsewhere:\n        - address: {}\n{CATCH_ALL}",
        b.addr()
    );
    let mut mislabelled = config(4, &global(&[b.addr()], "", CATCH_ALL));
    mislabelled.content["deployment"] = "other".into();
    mislabelled.hash =
        meridian_model::validate_global(serde_json::from_value(mislabelled.content.clone()).unwrap())
            .unwrap()
            .hash()
            .into();
    let cases = [
        (mislabelled, "deployment: the config says \"other\" but was pushed as deployment \"dep\""),
        (config(5, &elsewhere), "node.region: unknown region \"local\""),
        (
            config(2, &global(&[b.addr()], "", CATCH_ALL)),
            "config version 2 is lower than the running version 3",
        ),
        (config(3, &global(&[b.addr()], "", CATCH_ALL)), "refusing other content under the same version"),
        (
            config_of("restored", 9, &global(&[b.addr()], "", CATCH_ALL)),
            "snapshot of deployment \"restored\"; this node belongs to deployment \"dep\"",
        ),
    ];
    for (snap, reason) in cases {
        let version = snap.version;
        let before = control.acks().len();
        control.push(snap);
        let nack = control.wait_ack(WAIT, |a| a.kind == Kind::Config && a.version == version && !a.ok).await;
        assert!(nack.error.as_deref().unwrap_or("").contains(reason), "{nack:?} should say {reason}");
        assert_eq!(nack.hash, v3.hash, "a nack names the hash still running");
        assert_eq!(control.acks().len(), before + 1);
        assert_eq!(served_by(&url).await.as_deref(), Some("a"));
    }
    let status = admin_json(&gw, "/-/config").await;
    assert_eq!(status["hash"], v3.hash.as_str());
    assert_eq!(status["versions"]["config"], 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_from_the_last_known_good_snapshot_when_control_is_unreachable() {
    let a = TestUpstream::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    {
        let control = FakeControl::start(TOKEN, Duration::from_millis(200)).await;
        control.push(config(5, &global(&[a.addr()], "", CATCH_ALL)));
        let gw = start(dir.path(), &[control.url()]).await.unwrap();
        control.wait_ack(WAIT, is(Kind::Config, 5, true)).await;
        gw.stop().await;
        control.kill();
    }
    let gw = start(dir.path(), &[dead_url().await, dead_url().await]).await.unwrap();
    assert_eq!(served_by(&format!("http://{}/", gw.addr())).await.as_deref(), Some("a"));
    let status = admin_json(&gw, "/-/config").await;
    assert_eq!((status["stale"].as_bool(), status["from_snapshot"].as_bool()), (Some(true), Some(true)));
    assert!(status["stale_since"].is_string(), "{status}");
    assert_eq!(status["versions"]["config"], 5);
    gw.stop().await;

    // A corrupt snapshot is refused with a clear error instead of serving something else.
    let path = dir.path().join("lkg.config");
    let text = std::fs::read_to_string(&path).unwrap().replacen("\"svc\"", "\"svd\"", 1);
    std::fs::write(&path, text).unwrap();
    let err = start(dir.path(), &[dead_url().await]).await.err().expect("boot refused");
    assert!(err.contains("lkg.config is corrupt (checksum mismatch"), "{err}");
    assert!(err.contains("no usable config from the control plane"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_loss_under_load_fails_no_request() {
    let a = TestUpstream::start("a").await;
    let control = FakeControl::start(TOKEN, Duration::from_millis(200)).await;
    control.push(config(1, &global(&[a.addr()], "", CATCH_ALL)));
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path(), &[control.url()]).await.unwrap();
    control.wait_ack(WAIT, is(Kind::Config, 1, true)).await;

    let (stop, ok, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let url = format!("http://{}/load", gw.addr());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let outcome = match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    eventually("traffic flows", WAIT, async || ok.load(Ordering::Relaxed) >= 100).await;
    control.kill();
    let status = |gw: &Running| gw.config.lock().unwrap().clone();
    eventually("the node notices and reports itself stale", WAIT, async || status(&gw).stale_since.is_some())
        .await;
    let served = ok.load(Ordering::Relaxed);
    eventually("traffic keeps flowing", WAIT, async || ok.load(Ordering::Relaxed) >= served + 200).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{} ok", ok.load(Ordering::Relaxed));
    gw.stop().await;
}
