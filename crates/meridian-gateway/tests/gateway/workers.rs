//! Listener workers (`workers: N`): N event loops, each accepting from the same listening
//! sockets and serving what it accepts on its own thread, with upstream connections pooled per
//! worker.

use std::time::Duration;

use crate::harness::*;
use crate::scripted::*;

const WAIT: Duration = Duration::from_secs(10);

/// The names of this process's threads that are listener workers.
fn worker_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(comm) = std::fs::read_to_string(task.path().join("comm"))
            && comm.starts_with("meridian-wrk-")
        {
            names.push(comm.trim().to_string());
        }
    }
    names.sort();
    names
}

#[tokio::test]
async fn three_workers_serve_concurrent_keep_alive_clients_and_stop_with_the_gateway() {
    let up = Scripted::start(|seen| ok(&format!("{} {}", seen.method, seen.target))).await;
    let routes = "routes:\n  - name: all\n    match: { path: { prefix: / } }\n    service: svc\n";
    let mut gw = Gw::start_with(&global(&[up.addr], "", routes), "", "workers: 3\n").await;
    // This runtime is worker 0; two more threads, each with its own event loop.
    eventually("two worker threads run", WAIT, async || {
        worker_threads() == ["meridian-wrk-1", "meridian-wrk-2"]
    })
    .await;

    // 24 clients at once, 5 keep-alive requests each: every answer is the right one.
    let mut clients = Vec::new();
    for c in 0..24 {
        let url = gw.url("");
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            for r in 0..5 {
                let path = format!("/c{c}/r{r}");
                let resp = client.get(format!("{url}{path}")).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.text().await.unwrap(), format!("GET {path}"));
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(up.seen().len(), 120);
    // Upstream connections are pooled (per worker): far fewer than requests.
    assert!(up.accepted() <= 24, "{} upstream connections for 120 requests", up.accepted());

    // A graceful stop ends the workers too.
    let running = gw.running.take().unwrap();
    running.stop().await;
    eventually("the worker threads have exited", WAIT, async || worker_threads().is_empty()).await;
}
