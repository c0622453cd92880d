//! Cross-region failover in the lab under steady load: a region dying mid-traffic in each fault
//! mode costs idempotent requests nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::drill::{Load, poll, start_lab};
use crate::{SERIAL, bin, repo};

pub(crate) fn lab(dir: &Path, args: &[&str]) {
    let out =
        Command::new(bin()).arg("lab").arg("--dir").arg(dir).args(args).current_dir(repo()).output().unwrap();
    assert!(out.status.success(), "meridian lab {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_dying_under_load_fails_no_idempotent_request() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut up = start_lab(dir.path()).await;
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap();

    // us-east-1 has no orders instance of its own: its orders traffic goes to a peer region.
    lab(dir.path(), &["down", "orders@us-east-1", "--mode", "kill"]);
    let served = |r: &reqwest::Response| r.headers()["x-meridian-region"].to_str().unwrap().to_string();
    let r = c.get("http://127.0.1.1:8080/orders").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first_peer = served(&r);
    assert_ne!(first_peer, "us-east-1");

    for mode in ["kill", "stop", "blackhole"] {
        let urls = ["/orders", "/orders", "/users", "/catalog"].map(|p| format!("http://127.0.1.1:8080{p}"));
        let load = Load::start(&c, &urls.each_ref().map(String::as_str));
        load.flowing(50).await;
        lab(dir.path(), &["down", &first_peer, "--mode", mode]);
        // Orders from us-east-1 now land in the remaining region.
        poll("orders moved to the last region", Duration::from_secs(60), async || {
            match c.get("http://127.0.1.1:8080/orders").send().await {
                Ok(r) if r.status() == 200 => {
                    let s = served(&r);
                    s != first_peer && s != "us-east-1"
                }
                _ => false,
            }
        })
        .await;
        load.flowing(50).await;
        let (ok, failed) = load.finish().await;
        lab(dir.path(), &["up", &first_peer]);
        eprintln!("{first_peer} down by {mode} under load: {ok} ok, {failed} failed");
        assert_eq!(failed, 0, "{mode}: {failed} requests failed");
        poll("region back", Duration::from_secs(60), async || {
            c.get(format!(
                "http://{}:9901/-/ready",
                if first_peer == "eu-west-1" { "127.0.2.1" } else { "127.0.3.1" }
            ))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
        })
        .await;
        // Traffic returns to the nearer region once it serves again (after its back-off).
        poll("orders back in the first peer region", Duration::from_secs(90), async || {
            match c.get("http://127.0.1.1:8080/orders").send().await {
                Ok(r) if r.status() == 200 => served(&r) == first_peer,
                _ => false,
            }
        })
        .await;
    }
    up.terminate(Duration::from_secs(20)).unwrap();
}
