//! `meridian drill` on a running lab: passes when every service fails over on its own, and
//! fails when failover is switched off.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_testkit::proc::{ChildGuard, free_addr};
use serde_json::Value;

use crate::{SERIAL, bin, repo, run_env};

const ADMINS: [&str; 3] = ["127.0.1.1:9901", "127.0.2.1:9901", "127.0.3.1:9901"];

pub(crate) async fn poll(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Starts the default lab with region isolation and waits until every gateway is ready.
pub(crate) async fn start_lab(dir: &Path) -> ChildGuard {
    let up = ChildGuard::spawn(
        Command::new(bin())
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args(["--control", &free_addr().to_string()])
            // Region isolation: a region's service endpoints accept only that region's
            // addresses, so cross-region traffic must go through the peer gateway tier.
            .arg("--isolate")
            .current_dir(repo())
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null())
            .stdin(Stdio::null()),
    )
    .unwrap();
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
    // The lab writes its state file once everything is ready; the lab commands need it.
    let state = dir.join("state.json");
    poll("every gateway ready", Duration::from_secs(90), async || {
        if !state.exists() {
            return false;
        }
        for a in ADMINS {
            match c.get(format!("http://{a}/-/ready")).send().await {
                Ok(r) if r.status() == 200 => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    up
}

/// Runs a control-plane client command (`apply`, `status`, …) against the lab's control plane
/// with the lab's admin token.
pub(crate) fn control_cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let token = std::fs::read_to_string(dir.join("control/admin.token")).unwrap();
    run_env(args, &[("MERIDIAN_SERVER", "http://127.0.0.1:9700"), ("MERIDIAN_TOKEN", token.trim())])
}

fn drill(dir: &Path, settle: &str, args: &[&str]) -> (i32, String, String) {
    let dir = dir.to_str().unwrap();
    let base = ["drill", "--dir", dir, "--interval", "200ms", "--settle", settle, "--json"];
    run_env(&[&base[..], args].concat(), &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_passes_on_a_healthy_lab_and_fails_without_failover() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_lab(dir.path()).await;

    // Every service in every region, by drain switch.
    let (code, out, err) = drill(dir.path(), "30s", &[]);
    assert_eq!(code, 0, "drill failed:\n{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 9);
    for s in steps {
        assert_eq!(s["passed"], true, "{s}");
        assert_eq!(s["failed"], 0, "{s}");
        assert!(s["others_moved"].as_array().unwrap().is_empty(), "{s}");
        assert_ne!(s["served_by"][0], s["region"], "{s}");
    }

    // A lab fault in each mode for one target.
    for mode in ["kill", "stop", "blackhole"] {
        let (code, out, err) = drill(dir.path(), "30s", &["--mode", mode, "--only", "users@eu-west-1"]);
        assert_eq!(code, 0, "drill --mode {mode} failed:\n{out}\n{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let s = &report["steps"][0];
        assert!(s["detect_ms"].is_u64() && s["failover_ms"].is_u64() && s["recover_ms"].is_u64(), "{s}");
    }

    // Failover switched off for orders, applied through the control plane: the drill must
    // fail for it.
    let global = dir.path().join("global.yaml");
    let text = std::fs::read_to_string(&global).unwrap();
    let edited =
        text.replacen("  - name: orders\n", "  - name: orders\n    failover: { enabled: false }\n", 1);
    assert_ne!(text, edited);
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut before = Vec::new();
    for a in ADMINS {
        let v: Value = c.get(format!("http://{a}/-/config")).send().await.unwrap().json().await.unwrap();
        before.push(v["hash"].clone());
    }
    let edited_path = dir.path().join("no-failover.yaml");
    std::fs::write(&edited_path, edited).unwrap();
    let (code, out, err) = control_cli(dir.path(), &["apply", "-f", edited_path.to_str().unwrap(), "--wait"]);
    assert_eq!(code, 0, "apply failed:\n{out}\n{err}");
    poll("every gateway reloaded", Duration::from_secs(30), async || {
        for (a, h) in ADMINS.iter().zip(&before) {
            let v: Value = c.get(format!("http://{a}/-/config")).send().await.unwrap().json().await.unwrap();
            if v["hash"] == *h {
                return false;
            }
        }
        true
    })
    .await;
    let (code, out, _) = drill(dir.path(), "3s", &["--only", "orders@us-east-1"]);
    assert_eq!(code, 1, "the drill must fail when failover is off: {out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["passed"], false);
    let problems = report["steps"][0]["problems"].to_string();
    assert!(problems.contains("no failover"), "{problems}");

    up.terminate(Duration::from_secs(20)).unwrap();
}

/// Steady load: one loop per URL sending GETs one after another until stopped (at most 100,000
/// each and 5 minutes, so it always ends), counting answers of 200 and everything else.
pub(crate) struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(c: &reqwest::Client, urls: &[&str]) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks = urls
            .iter()
            .map(|url| {
                let (c, stop, ok, failed, url) =
                    (c.clone(), stop.clone(), ok.clone(), failed.clone(), url.to_string());
                tokio::spawn(async move {
                    let end = Instant::now() + Duration::from_secs(300);
                    for _ in 0..100_000 {
                        if stop.load(Ordering::Relaxed) || Instant::now() > end {
                            break;
                        }
                        match c.get(&url).send().await {
                            Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(r) => {
                                eprintln!("{url}: {}", r.status());
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => {
                                eprintln!("{url}: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load { stop, ok, failed, tasks }
    }

    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more requests have succeeded.
    pub(crate) async fn flowing(&self, n: u64) {
        let at = self.ok();
        poll("traffic flowing", Duration::from_secs(30), async || self.ok() >= at + n).await;
    }

    /// Stops the loops; returns (ok, failed).
    pub(crate) async fn finish(self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}
