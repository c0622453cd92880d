//! The local lab end to end: `meridian up` runs 3 regions × 3 services as real processes;
//! `meridian lab` shows them and injects every fault mode; nothing is left behind afterwards.
//! Every wait is a poll against a deadline; no assertion depends on how fast the machine is.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_testkit::proc::{ChildGuard, free_addr};
use serde_json::Value;

use crate::{SERIAL, bin, repo};

const START_WITHIN: Duration = Duration::from_secs(90);
const REGIONS: [(&str, u8); 3] = [("us-east-1", 1), ("eu-west-1", 2), ("ap-southeast-2", 3)];

/// `meridian lab --dir DIR ARGS...`: (exit code, stdout, stderr).
fn lab(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(bin()).arg("lab").arg("--dir").arg(dir).args(args).current_dir(repo()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lab_ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = lab(dir, args);
    assert_eq!(code, 0, "meridian lab {args:?} failed: {out}{err}");
    out
}

fn status(dir: &Path) -> Value {
    serde_json::from_str(&lab_ok(dir, &["status", "--json"])).unwrap()
}

fn instance<'a>(status: &'a Value, service: &str, region: &str) -> &'a Value {
    let s = status["services"].as_array().unwrap().iter().find(|s| s["name"] == service).unwrap();
    let r = s["regions"].as_array().unwrap().iter().find(|r| r["region"] == region).unwrap();
    &r["instances"][0]
}

/// A client without pooled connections, so each request sees the instance as it is now.
fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(timeout).build().unwrap()
}

/// Starts `meridian up` with `extra` args and waits until its state file is written.
async fn start_lab(dir: &Path, extra: &[&str]) -> ChildGuard {
    let control = free_addr().to_string();
    let mut up = ChildGuard::spawn(
        Command::new(bin())
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args(["--control", &control])
            .args(extra)
            .current_dir(repo())
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null())
            .stdin(Stdio::null()),
    )
    .unwrap();
    let deadline = Instant::now() + START_WITHIN;
    // The state file names its supervisor: one left by an earlier lab does not count.
    let written_by = |pid: u32| {
        std::fs::read_to_string(dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["supervisor_pid"] == pid)
    };
    while !written_by(up.pid()) {
        if let Some(status) = up.try_wait().unwrap() {
            panic!("meridian up exited while starting: {status}");
        }
        assert!(Instant::now() < deadline, "the lab did not start within {START_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    up
}

fn pids(dir: &Path) -> Vec<u32> {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

fn nft_table_exists() -> bool {
    let out =
        Command::new("nft").args(["list", "tables"]).output().expect("nft must be installed (nftables)");
    String::from_utf8_lossy(&out.stdout).contains("table inet meridian_lab")
}

/// Polls until `f` holds, or panics with `what` after `within`.
async fn eventually(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_serves_every_region_and_injects_every_fault_mode() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut up = start_lab(dir, &[]).await;
    let users_eu = "http://127.0.2.12:9000/users/1";

    // Every region's gateway serves /orders from its own region's instance.
    for (region, n) in REGIONS {
        let v: Value = client(Duration::from_secs(10))
            .get(format!("http://127.0.{n}.1:8080/orders/42"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["service"], "orders");
        assert_eq!(v["region"], region);
        assert_eq!(v["instance"], format!("orders-{region}-1"));
    }

    // Status lists every region with its URLs and every service with its endpoints.
    let s = status(dir);
    assert_eq!(s["regions"].as_array().unwrap().len(), 3);
    for (region, n) in REGIONS {
        let r = s["regions"].as_array().unwrap().iter().find(|r| r["name"] == region).unwrap();
        assert_eq!(r["state"], "up");
        let g = &r["gateways"][0];
        assert_eq!(g["public_url"], format!("http://127.0.{n}.1:8080"));
        assert_eq!(g["admin_url"], format!("http://127.0.{n}.1:9901"));
        assert_eq!(g["peer_address"], format!("127.0.{n}.1:9443"));
        assert_eq!(g["ready"], true, "{g}");
        for (k, svc) in ["orders", "users", "catalog"].iter().enumerate() {
            let i = instance(&s, svc, region);
            assert_eq!(i["endpoint"], format!("127.0.{n}.{}:9000", 11 + k));
            assert_eq!(i["state"], "up");
        }
    }
    let table = lab_ok(dir, &["status"]);
    assert!(table.contains("eu-west-1") && table.contains("/catalog"), "{table}");

    // A client in eu-west-1 reaches eu-west-1's gateway from a eu-west-1 source address.
    let out = lab_ok(dir, &["curl", "--region", "eu-west-1", "http://api.example.com/users/7"]);
    assert!(out.contains("200 OK") && out.contains("127.0.2.250"), "{out}");
    assert!(out.contains("\"region\":\"eu-west-1\"") && out.contains("\"service\":\"users\""), "{out}");
    assert!(out.contains("served by users-eu-west-1-1 in eu-west-1"), "{out}");

    // A second lab on the same directory is refused before it touches anything.
    let second = Command::new(bin())
        .args(["up", "--control", &free_addr().to_string(), "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    // Every generated file is a valid config.
    let mut files = vec![dir.join("global.yaml")];
    files.extend(std::fs::read_dir(dir.join("gateways")).unwrap().map(|e| e.unwrap().path()));
    assert_eq!(files.len(), 4);
    for f in files {
        let out = Command::new(bin()).args(["validate", "-f"]).arg(&f).output().unwrap();
        assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
    }

    // kill: connections are refused; up restarts it.
    lab_ok(dir, &["down", "users@eu-west-1", "--mode", "kill"]);
    assert_eq!(instance(&status(dir), "users", "eu-west-1")["state"], "killed");
    let e = client(Duration::from_secs(5)).get(users_eu).send().await.unwrap_err();
    assert!(e.is_connect(), "expected connection refused, got {e:?}");
    lab_ok(dir, &["up", "users@eu-west-1"]);
    assert_eq!(instance(&status(dir), "users", "eu-west-1")["state"], "up");
    assert_eq!(client(Duration::from_secs(10)).get(users_eu).send().await.unwrap().status(), 200);

    // stop: the connection is accepted and then hangs; up resumes it.
    lab_ok(dir, &["down", "users@eu-west-1", "--mode", "stop"]);
    assert_eq!(instance(&status(dir), "users", "eu-west-1")["state"], "stopped");
    let e = client(Duration::from_millis(500)).get(users_eu).send().await.unwrap_err();
    assert!(e.is_timeout(), "expected a timeout, got {e:?}");
    lab_ok(dir, &["up", "users@eu-west-1"]);
    assert_eq!(client(Duration::from_secs(10)).get(users_eu).send().await.unwrap().status(), 200);

    // blackhole: packets are dropped (nftables), so the client times out; up removes the rules.
    let (code, out, err) = lab(dir, &["down", "users@eu-west-1", "--mode", "blackhole"]);
    assert_eq!(code, 0, "blackhole needs nft (Debian package nftables) and root: {out}{err}");
    assert!(nft_table_exists());
    assert_eq!(instance(&status(dir), "users", "eu-west-1")["state"], "blackholed");
    let e = client(Duration::from_millis(500)).get(users_eu).send().await.unwrap_err();
    assert!(e.is_timeout(), "expected a timeout, got {e:?}");
    lab_ok(dir, &["up", "users@eu-west-1"]);
    assert!(!nft_table_exists());
    assert_eq!(client(Duration::from_secs(10)).get(users_eu).send().await.unwrap().status(), 200);

    // slow: responses still arrive, through the relay, which reports the delay it added.
    lab_ok(dir, &["slow", "users@eu-west-1", "300ms"]);
    let r = client(Duration::from_secs(20)).get("http://127.0.2.1:8080/users/9").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let i = instance(&status(dir), "users", "eu-west-1").clone();
    assert_eq!(i["delay_ms"], 300);
    assert!(i["delayed_chunks"].as_u64().unwrap() >= 1, "{i}");
    lab_ok(dir, &["slow", "users@eu-west-1", "0ms"]);
    assert_eq!(instance(&status(dir), "users", "eu-west-1")["delay_ms"], 0);

    // A whole region, blackholed and restored, leaves rules behind for the supervisor to remove.
    lab_ok(dir, &["down", "ap-southeast-2", "--mode", "blackhole"]);
    assert_eq!(status(dir)["regions"][2]["state"], "blackholed");
    lab_ok(dir, &["down", "orders@us-east-1", "--mode", "stop"]);

    // SIGTERM: every child is gone (reaped), the nftables table and state file too.
    // The control plane, 9 service instances, 3 gateways, the director, 3 checkers.
    let children = pids(dir);
    assert_eq!(children.len(), 17);
    let status = up.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "meridian up exited with {status}");
    for pid in children {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} is still there");
    }
    assert!(!nft_table_exists(), "the lab's nftables table is still there");
    assert!(!dir.join("state.json").exists());
}

/// A child that dies without a `lab down` stops the whole lab, leaving nothing behind; `-f`
/// runs a lab config of one's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_child_stops_the_whole_lab() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("small.yaml");
    std::fs::write(
        &config,
        "regions:\n  - {name: north, octet: 61, location: {lat: 60, lon: 10}}\n  - {name: south, octet: 62, location: {lat: -30, lon: 20}}\n\
         services:\n  - {name: echo, path: /echo}\n",
    )
    .unwrap();
    let mut up = start_lab(dir, &["-f", config.to_str().unwrap()]).await;
    let v: Value = client(Duration::from_secs(10))
        .get("http://127.0.62.1:8080/echo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["instance"], "echo-south-1");
    let children = pids(dir);
    assert_eq!(children.len(), 8);
    // Kill one instance behind the supervisor's back.
    let victim = rustix::process::Pid::from_raw(children[0] as i32).unwrap();
    rustix::process::kill_process(victim, rustix::process::Signal::KILL).unwrap();
    let status = up.wait_exit(Duration::from_secs(30)).unwrap().expect("meridian up did not stop");
    assert!(!status.success(), "a crash must fail the lab, got {status}");
    eventually("every child reaped", Duration::from_secs(5), async || {
        children.iter().all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    })
    .await;
}

/// A process that is gone, or dead and waiting to be reaped by whoever inherited it.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// When `meridian up` itself is SIGKILLed it cannot stop its children; the next `meridian up`
/// on the same run directory kills any that are left and starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_lab_cleans_up_after_a_supervisor_that_died() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("small.yaml");
    std::fs::write(
        &config,
        "regions:\n  - {name: east, octet: 63, location: {lat: 0, lon: 90}}\n\
         services:\n  - {name: echo, path: /echo}\n",
    )
    .unwrap();
    let args = ["-f", config.to_str().unwrap()];
    let mut first = start_lab(dir, &args).await;
    let orphans = pids(dir);
    assert_eq!(orphans.len(), 5);
    first.child_mut().kill().unwrap();
    first.child_mut().wait().unwrap();
    // The children may outlive it (unless whoever inherits them kills them): either way, the
    // stale state file must not stop the next lab, which kills whatever is left.

    let mut second = start_lab(dir, &args).await;
    assert!(orphans.iter().all(|p| gone(*p)), "the orphans of the first lab were not killed");
    let v: Value = client(Duration::from_secs(10))
        .get("http://127.0.63.1:8080/echo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["instance"], "echo-east-1");
    let status = second.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
}

/// `--isolate`: a region's service endpoints accept only the region's own addresses (its
/// gateway, its `lab curl` clients); everyone else times out. The table goes with the lab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_regions_reach_only_their_own_endpoints() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("two.yaml");
    std::fs::write(
        &config,
        "regions:\n  - {name: west, octet: 71, location: {lat: 40, lon: -100}}\n  - {name: east, octet: 72, location: {lat: 40, lon: 100}}\n\
         services:\n  - {name: echo, path: /echo}\n",
    )
    .unwrap();
    let mut up = start_lab(dir, &["-f", config.to_str().unwrap(), "--isolate"]).await;
    assert!(nft_table_exists());
    assert_eq!(status(dir)["isolated"], true);
    // The region's gateway reaches its own endpoint (from its source address 127.0.72.1).
    let v: Value = client(Duration::from_secs(10))
        .get("http://127.0.72.1:8080/echo")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["instance"], "echo-east-1");
    // A client in the region reaches the endpoint directly; one in the other region does not.
    let out = lab_ok(dir, &["curl", "--region", "east", "http://127.0.72.11:9000/echo"]);
    assert!(out.contains("200 OK"), "{out}");
    let (code, out, err) =
        lab(dir, &["curl", "--region", "west", "--timeout", "500ms", "http://127.0.72.11:9000/"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("timed out"), "{err}");
    // So does any other local client (source 127.0.0.1).
    let e = client(Duration::from_millis(500)).get("http://127.0.72.11:9000/").send().await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    let status = up.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
    assert!(!nft_table_exists());
}
