//! Retries, timeouts, budgets and concurrency limits.

use meridian_testkit::TestUpstream;
use serde_json::Value;

use crate::harness::*;
use crate::scripted::{fill_until, find};

#[tokio::test]
async fn idempotent_requests_are_retried_and_posts_are_not() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let c = client();
    // 503 is a retriable status by default: the second try succeeds.
    let r = c.get(gw.url("/fail-once/get-1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests_to("/fail-once"), 2);
    // A POST is not idempotent: the 503 goes back to the client.
    let r = c.post(gw.url("/fail-once/post-1")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(up.requests_to("/fail-once"), 3);
}

#[tokio::test]
async fn routes_may_allow_retrying_posts_within_the_replay_limit() {
    let up = TestUpstream::start("a").await;
    let routes = "routes:\n  - name: all\n    match: { path: { prefix: / } }\n    service: svc\n    retries: { allow_non_idempotent: true, max_replay_body_bytes: 100 }\n";
    let gw = Gw::start(&global(&[up.addr()], "", routes)).await;
    let c = client();
    let r = c.post(gw.url("/fail-once/small")).body(vec![b'x'; 50]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["body_bytes"], 50, "the replayed body arrives whole");
    // Beyond the replay limit the body is streamed and the request not retried.
    let r = c.post(gw.url("/fail-once/large")).body(vec![b'x'; 500]).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn connect_failures_and_resets_move_to_another_endpoint() {
    let up = TestUpstream::start("live").await;
    // A port nobody listens on: connect is refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = Gw::start(&global(&[dead, up.addr()], "", CATCH_ALL)).await;
    let c = client();
    for _ in 0..10 {
        let r = c.post(gw.url("/x")).body("payload").send().await.unwrap();
        assert_eq!(r.status(), 200, "connect refused is retried even for POST: nothing was sent");
    }
    // A reset mid-request: retried for GET (ends 502 after the tries, as every try resets).
    let r = c.get(gw.url("/reset")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "BadGateway");
    assert!(up.requests_to("/reset") >= 2, "GET was retried after a reset");
    let before = up.requests_to("/reset");
    let r = c.post(gw.url("/reset")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(up.requests_to("/reset"), before + 1, "POST is not retried after a reset");
}

#[tokio::test]
async fn per_try_timeout_gives_504() {
    let up = TestUpstream::start("a").await;
    let routes = "routes:\n  - name: all\n    match: { path: { prefix: / } }\n    service: svc\n    timeouts: { per_try: 200ms, request: 1s }\n    retries: { attempts: 1 }\n";
    let gw = Gw::start(&global(&[up.addr()], "", routes)).await;
    let r = client().get(gw.url("/delay/5000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "GatewayTimeout");
    assert_eq!(up.requests_to("/delay"), 2, "one retry after the per-try timeout");
}

#[tokio::test]
async fn no_endpoints_in_the_region_is_503() {
    let up = TestUpstream::start("a").await;
    let yaml = format!(
        "regions:\n  - name: local\n  - name: far\nservices:\n  - name: svc\n    endpoints: {{ far: [{{ address: {} }}] }}\n{CATCH_ALL}",
        up.addr()
    );
    let gw = Gw::start(&yaml).await;
    let r = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ServiceUnavailable");
}

/// An upstream that answers each request on a connection with keep-alive, then closes the
/// connection once the answer is written, as a server with a short keep-alive timeout does
/// between two requests. Reports each close on `closed`.
async fn closing_upstream() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut head = Vec::new();
            fill_until(&mut s, &mut head, |b| find(b, b"\r\n\r\n").is_some()).await;
            let text = String::from_utf8_lossy(&head).to_lowercase();
            let body_len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let start = find(&head, b"\r\n\r\n").map_or(head.len(), |p| p + 4);
            fill_until(&mut s, &mut head, |b| b.len() >= start + body_len).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
                .await;
            drop(s);
            let _ = tx.send(());
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_while_idle_is_not_used() {
    let (addr, mut closed) = closing_upstream().await;
    let gw = Gw::start(&global(&[addr], "", CATCH_ALL)).await;
    let c = client();
    for i in 0..5 {
        // A POST is never retried once written, so it only succeeds if the gateway noticed
        // that the pooled connection from the previous request was closed, and opened another.
        let r = c.post(gw.url("/x")).body("payload").send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
        closed.recv().await.unwrap();
    }
}
