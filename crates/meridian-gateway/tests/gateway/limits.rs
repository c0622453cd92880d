//! Abuse limits: body size, header count and size, framing conflicts, slow clients, HTTP/2
//! stream caps.

use std::time::Duration;

use meridian_testkit::TestUpstream;
use serde_json::Value;

use crate::harness::*;

const LIMITS: &str = "    limits:\n      max_body_bytes: 1000\n      max_header_count: 20\n      max_header_bytes: 8192\n      header_read_timeout: 300ms\n      max_concurrent_streams: 7\n";

#[tokio::test]
async fn announced_and_streamed_bodies_over_the_limit_get_413() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), LIMITS, "").await;
    let c = client();
    let r = c.post(gw.url("/sink")).body(vec![b'x'; 1001]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "PayloadTooLarge");
    assert_eq!(up.requests(), 0, "an announced oversize body never reaches the upstream");

    // Chunked (no length): cut when the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|_| Ok(vec![b'y'; 500])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = c.post(gw.url("/sink")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 413);

    let ok = c.post(gw.url("/sink")).body(vec![b'x'; 1000]).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!(v["received"], 1000);
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), LIMITS, "").await;
    let mut req = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let (resp, _) = raw(gw.addr(), req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
    let (resp, _) = raw(gw.addr(), big.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn the_default_header_count_limit_is_100() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let request = |headers: usize| {
        // Host, Connection and `headers - 2` more.
        let mut req = String::from("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..headers - 2 {
            req.push_str(&format!("x-h{i}: v\r\n"));
        }
        req.push_str("\r\n");
        req
    };
    // 100 are proxied (`Via`): the test upstream, with the forwarding headers added, refuses
    // them itself, which is its business. 101 are refused by the gateway's HTTP/1.1 parser.
    let (resp, _) = raw(gw.addr(), request(100).as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.contains("via: 1.1 meridian"), "{resp}");
    let (resp, _) = raw(gw.addr(), request(101).as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431") && !resp.contains("via:"), "{resp}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn conflicting_content_length_and_transfer_encoding_cannot_smuggle() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    // RFC 9112 §6.1: Transfer-Encoding overrides Content-Length, and the connection must close
    // after the response. The bytes after the chunked body are never read as a request.
    let smuggle = "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    let (resp, closed) = raw(gw.addr(), smuggle.as_bytes(), Duration::from_secs(5)).await;
    assert!(closed, "the connection is closed after a framing conflict");
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "the smuggled request is never answered: {resp}");
    assert!(resp.to_ascii_lowercase().contains("connection: close"), "{resp}");
    assert_eq!(up.requests_to("/admin"), 0);
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), LIMITS, "").await;
    // Half a request head, then silence: the connection must close (header_read_timeout 300ms),
    // long before our 10 s read deadline.
    let started = std::time::Instant::now();
    let (_, closed) = raw(gw.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10)).await;
    assert!(closed, "slowloris connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn http2_stream_cap_is_announced() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), LIMITS, "").await;
    let tcp = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    // Settings arrive with the server's preface; a request round trip guarantees we saw them.
    let req = http::Request::get(gw.url("/")).body(()).unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(h2.current_max_send_streams(), 7);
}
