//! The active checker against real parties on loopback: an HTTP server whose answer the test
//! switches between 200 and 503, and a TCP listener the test closes and opens again. Waits are
//! polls with a deadline, never fixed sleeps.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use meridian_health::{ActiveState, CheckTarget, Labels, ServiceHealth, spawn_active_checks};
use meridian_model::{CircuitBreaker, Dur, HealthCheck, OutlierDetection, Probe};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Polls `cond` every 10ms until it holds; fails the test after 10s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn check(probe: Probe) -> HealthCheck {
    HealthCheck {
        probe,
        interval: Dur::from_millis(50),
        timeout: Dur::from_secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    }
}

fn health(addr: SocketAddr) -> Arc<ServiceHealth> {
    let labels = Labels { service: "orders".into(), region: "eu".into(), endpoints: vec![addr.to_string()] };
    let now = std::time::Instant::now();
    Arc::new(ServiceHealth::new(labels, &OutlierDetection::default(), &CircuitBreaker::default(), true, now))
}

fn target(addr: SocketAddr, source: Option<IpAddr>) -> CheckTarget {
    CheckTarget { index: 0, addr: Box::new(move || Some(addr)), host: "orders.internal".into(), source }
}

/// What the HTTP server saw of the last probe: peer IP, `Host`, path.
type Seen = Arc<Mutex<Option<(IpAddr, String, String)>>>;

/// An HTTP/1.1 server answering every request with the status in `status`.
async fn http_server(status: Arc<AtomicU16>, seen: Seen) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { continue };
            let (status, seen) = (status.clone(), seen.clone());
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
                *seen.lock().expect("lock") = Some((peer.ip(), host.to_owned(), req.uri().path().to_owned()));
                let code = status.load(Ordering::Relaxed);
                async move {
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                    *resp.status_mut() = http::StatusCode::from_u16(code).expect("status");
                    Ok::<_, hyper::Error>(resp)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (addr, task)
}

#[tokio::test]
async fn http_probe_follows_the_status_and_sends_host_path_and_source() {
    let status = Arc::new(AtomicU16::new(200));
    let seen = Seen::default();
    let (addr, server) = http_server(status.clone(), seen.clone()).await;
    let health = health(addr);
    // Linux routes all of 127/8 to loopback, so a second source address proves the bind.
    let source: IpAddr = if cfg!(target_os = "linux") { [127, 0, 0, 2].into() } else { LOCALHOST };
    let probe = Probe::Http { path: "/healthz".into(), expected_statuses: vec![] };
    let guard = spawn_active_checks(&health, vec![target(addr, Some(source))], &check(probe));
    let ep = || health.endpoint(0);

    eventually("a first probe", || seen.lock().expect("lock").is_some()).await;
    assert_eq!(ep().active(), ActiveState::Healthy);
    let (peer, host, path) = seen.lock().expect("lock").clone().expect("seen");
    assert_eq!((peer, host.as_str(), path.as_str()), (source, "orders.internal", "/healthz"));

    status.store(503, Ordering::Relaxed);
    eventually("unhealthy after 503s", || ep().active() == ActiveState::Unhealthy).await;
    assert!(!ep().is_available(std::time::Instant::now()));
    assert_eq!(health.available(std::time::Instant::now()), (0, 1));

    status.store(200, Ordering::Relaxed);
    eventually("healthy again after 200s", || ep().active() == ActiveState::Healthy).await;
    assert!(ep().is_available(std::time::Instant::now()));

    drop(guard);
    server.abort();
}

/// A listener on `addr` (port 0 for any) that can be bound again right after it is closed.
fn tcp_listener(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("bind");
    socket.listen(16).expect("listen")
}

/// Accepts and drops connections until aborted.
fn accept_forever(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}

#[tokio::test]
async fn tcp_probe_sees_a_closed_listener_and_its_return() {
    let listener = tcp_listener((LOCALHOST, 0).into());
    let addr = listener.local_addr().expect("local addr");
    let server = accept_forever(listener);
    let health = health(addr);
    let guard = spawn_active_checks(&health, vec![target(addr, None)], &check(Probe::Tcp));
    let ep = || health.endpoint(0);
    assert_eq!(ep().active(), ActiveState::Healthy);

    // Aborting the task drops the listener: connects are refused.
    server.abort();
    eventually("unhealthy once closed", || ep().active() == ActiveState::Unhealthy).await;

    let server = accept_forever(tcp_listener(addr));
    eventually("healthy once listening again", || ep().active() == ActiveState::Healthy).await;

    // Dropping the ServiceHealth stops the checker by itself.
    drop(health);
    eventually("checker ends without its ServiceHealth", || guard.is_finished()).await;
    server.abort();
}
