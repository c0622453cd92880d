//! Hot reload under load, invalid reloads, and drain on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use meridian_testkit::TestUpstream;

use crate::harness::*;

/// Runs `workers` client loops against `url` until `stop`; returns (ok, failed) counters.
fn load(
    url: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, Vec<tokio::task::JoinHandle<()>>) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            // Bounded: at most 20k requests per worker even if `stop` never comes.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status();
                        if status == 200 && r.bytes().await.is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed)
                        } else {
                            eprintln!("unexpected status {status}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    }
                    Err(e) => {
                        eprintln!("request error: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    (ok, failed, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_fails_no_request() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let gw = Gw::start(&global(&[a.addr()], "", CATCH_ALL)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(gw.url("/load"), 8, stop.clone());
    let c = client();
    let h0 = gw.hash().unwrap();
    // Swap the endpoint set back and forth a few times while traffic flows.
    for round in 0..4 {
        let eps = if round % 2 == 0 { vec![b.addr()] } else { vec![a.addr(), b.addr()] };
        let before = gw.status().reloads_ok;
        gw.write_config(&global(&eps, "", CATCH_ALL));
        eventually("reload applied", Duration::from_secs(10), async || gw.status().reloads_ok > before).await;
        // Let traffic run on each version for a while before the next swap.
        let served = ok.load(Ordering::Relaxed);
        eventually("traffic on the new version", Duration::from_secs(20), async || {
            ok.load(Ordering::Relaxed) >= served + 100
        })
        .await;
    }
    // A new route appears without a restart.
    let extra = format!(
        "{CATCH_ALL}  - name: extra\n    match: {{ path: {{ exact: /extra }} }}\n    service: svc\n    policies: [tag]\npolicies:\n  - name: tag\n    headers: {{ response: {{ set: {{ x-extra: \"1\" }} }} }}\n"
    );
    gw.write_config(&global(&[a.addr()], "", &extra));
    eventually("new route live", Duration::from_secs(10), async || {
        c.get(gw.url("/extra")).send().await.map(|r| r.headers().get("x-extra").is_some()).unwrap_or(false)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_ne!(gw.hash().unwrap(), h0);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("hot reload under load: {ok} ok, {failed} failed");
    assert!(ok >= 400, "too little load to mean anything: {ok}");
    assert_eq!(failed, 0);
}

#[tokio::test]
async fn an_invalid_reload_is_rejected_and_the_running_config_kept() {
    let a = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[a.addr()], "", CATCH_ALL)).await;
    let h0 = gw.hash().unwrap();
    gw.write_config("routes:\n  - name: r\n    service: ordrs\n    bogus_key: 1\n");
    eventually("rejection recorded", Duration::from_secs(10), async || gw.status().reloads_rejected > 0)
        .await;
    let st = gw.status();
    assert_eq!(st.hash.as_deref(), Some(h0.as_str()));
    assert!(st.last_error.as_deref().unwrap_or("").contains("bogus_key"), "{:?}", st.last_error);
    // A semantically invalid one (unknown service) too.
    gw.write_config(&global(&[a.addr()], "", "routes:\n  - name: r\n    service: ordrs\n"));
    eventually("second rejection", Duration::from_secs(10), async || gw.status().reloads_rejected > 1).await;
    let st = gw.status();
    assert!(st.last_error.as_deref().unwrap_or("").contains("routes[0].service"), "{:?}", st.last_error);
    let r = client().get(gw.url("/still")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let admin: serde_json::Value =
        client().get(gw.admin("/-/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(admin["hash"], h0.as_str());
    assert_eq!(admin["reloads_rejected"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_on_shutdown_fails_no_request() {
    let a = TestUpstream::start("a").await;
    let mut gw = Gw::start(&global(&[a.addr()], "", CATCH_ALL)).await;
    let c = client();
    assert_eq!(c.get(gw.admin("/-/ready")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(gw.admin("/-/live")).send().await.unwrap().status(), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(gw.url("/drain"), 4, stop.clone());
    // Some slow requests in flight when the stop comes must finish too.
    let slow: Vec<_> = (0..4).map(|_| tokio::spawn(c.get(gw.url("/delay/700")).send())).collect();
    eventually("load flowing", Duration::from_secs(10), async || ok.load(Ordering::Relaxed) > 50).await;
    let admin_ready = gw.admin("/-/ready");
    let gw_url_drain = gw.url("/drain");
    let addr = gw.addr();
    let running = gw.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown_gracefully());
    // Readiness fails first while traffic is still served (the balancer in front moves away).
    eventually("readiness fails", Duration::from_secs(5), async || {
        c.get(&admin_ready).send().await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    // While draining, HTTP/1.1 responses tell clients to reconnect elsewhere.
    let r = c.get(gw_url_drain.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    let during = ok.load(Ordering::Relaxed);
    eventually("served while draining", Duration::from_secs(5), async || {
        ok.load(Ordering::Relaxed) > during + 10
    })
    .await;
    // The client side stops sending, as a load balancer that saw readiness fail would.
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap().status(), 200);
    }
    shutdown.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed after shutdown");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}
