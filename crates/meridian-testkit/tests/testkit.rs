//! The testkit's own tests: every helper against real clients on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meridian_testkit::certs::TestCa;
use meridian_testkit::grpc::{GrpcUpstream, grpc_echo, grpc_fail, grpc_stream, grpc_stream_then_fail};
use meridian_testkit::proc::{
    ChildGuard, current_rss_kib, free_addr, free_port, peak_rss_kib, wait_for_http_ok, wait_for_tcp,
};
use meridian_testkit::{Protocols, TestUpstream, UpstreamOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn http1() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().unwrap()
}

fn h2c() -> reqwest::Client {
    reqwest::Client::builder().http2_prior_knowledge().build().unwrap()
}

async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn echo_over_http1() {
    let up = TestUpstream::start("alpha").await;
    let response =
        http1().get(format!("{}/api/items?x=1", up.url())).header("x-test", "yes").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "alpha");
    let doc = json(response).await;
    assert_eq!(doc["upstream"], "alpha");
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["path"], "/api/items");
    assert_eq!(doc["query"], "x=1");
    assert_eq!(doc["version"], "HTTP/1.1");
    assert_eq!(doc["headers"]["x-test"], "yes");
    assert_eq!(doc["body_bytes"], 0);
    assert_eq!(up.requests(), 1);
    assert_eq!(up.requests_to("/api"), 1);
    assert_eq!(up.last_request_headers().unwrap()["x-test"], "yes");
}

#[tokio::test]
async fn echo_over_h2c_and_body_count() {
    let up = TestUpstream::start("beta").await;
    let response = h2c().post(format!("{}/", up.url())).body(vec![7u8; 1000]).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let doc = json(response).await;
    assert_eq!(doc["version"], "HTTP/2.0");
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["query"], Value::Null);
    assert_eq!(doc["body_bytes"], 1000);
    assert_eq!(up.requests_to("/"), 1);
}

#[tokio::test]
async fn h2_only_upstream_refuses_http1() {
    let up = TestUpstream::start_with("h2", UpstreamOptions { protocols: Protocols::Http2Only }).await;
    assert!(http1().get(up.url()).send().await.is_err());
    assert_eq!(h2c().get(up.url()).send().await.unwrap().status(), 200);

    let up = TestUpstream::start_with("h1", UpstreamOptions { protocols: Protocols::Http1Only }).await;
    assert!(h2c().get(up.url()).send().await.is_err());
    assert_eq!(http1().get(up.url()).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bytes_streams_the_exact_length_and_pattern() {
    let up = TestUpstream::start("bytes").await;
    let response = h2c().get(format!("{}/bytes/1048576", up.url())).send().await.unwrap();
    assert_eq!(response.content_length(), Some(1_048_576));
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 1_048_576);
    assert!(body.iter().enumerate().all(|(i, b)| *b == i as u8));

    let body = http1().get(format!("{}/bytes/100000", up.url())).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), 100_000);
}

#[tokio::test]
async fn big_transfers_stay_at_flat_memory() {
    let up = TestUpstream::start("big").await;
    let pid = std::process::id();
    let before = current_rss_kib(pid).unwrap();
    let mut response = http1().get(format!("{}/bytes/{}", up.url(), 2u64 << 30)).send().await.unwrap();
    let mut total = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        total += chunk.len() as u64;
    }
    assert_eq!(total, 2 << 30);

    let chunks = futures_util::stream::iter(
        (0..8192).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 256 << 10]))),
    );
    let response = http1()
        .post(format!("{}/sink", up.url()))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["received"], 2u64 << 30);
    let grown = current_rss_kib(pid).unwrap().saturating_sub(before);
    assert!(grown < 128 * 1024, "RSS grew by {grown} KiB for 2 x 2 GiB streamed");
}

#[tokio::test]
async fn sink_counts_the_request_body() {
    let up = TestUpstream::start("sink").await;
    for client in [http1(), h2c()] {
        let response =
            client.post(format!("{}/sink", up.url())).body(vec![0u8; 3_000_000]).send().await.unwrap();
        assert_eq!(json(response).await["received"], 3_000_000);
    }
    assert_eq!(up.requests_to("/sink"), 2);
}

#[tokio::test]
async fn status_delay_and_fail_once() {
    let up = TestUpstream::start("st").await;
    let client = http1();
    let response = client.get(format!("{}/status/418", up.url())).send().await.unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(json(response).await["upstream"], "st");
    let response = client.get(format!("{}/status/204", up.url())).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(client.get(format!("{}/status/abc", up.url())).send().await.unwrap().status(), 400);

    let started = Instant::now();
    let response = client.get(format!("{}/delay/60", up.url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(60));

    let fail = |key: &str| client.get(format!("{}/fail-once/{key}", up.url())).send();
    assert_eq!(fail("a").await.unwrap().status(), 503);
    assert_eq!(fail("a").await.unwrap().status(), 200);
    assert_eq!(fail("a").await.unwrap().status(), 200);
    assert_eq!(fail("b").await.unwrap().status(), 503);
    assert_eq!(up.requests_to("/fail-once"), 4);
    assert_eq!(up.requests_to("/status"), 3);
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_response() {
    let up = TestUpstream::start("rst").await;
    let err = http1().get(format!("{}/reset", up.url())).send().await.unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert!(h2c().get(format!("{}/reset", up.url())).send().await.is_err());
    assert_eq!(up.requests_to("/reset"), 2);
}

#[tokio::test]
async fn trailers_arrive_over_h2() {
    let up = TestUpstream::start("tr").await;
    let tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(format!("{}/trailers", up.url())).body(Empty::<Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"trailers follow\n"));
    assert_eq!(trailers["x-checksum"], "len-16");
}

#[tokio::test]
async fn websocket_echo() {
    let up = TestUpstream::start("ws").await;
    let (mut ws, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", up.addr())).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-upstream"], "ws");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(vec![1u8, 2, 3]));
    ws.close(None).await.unwrap();

    let plain = http1().get(format!("{}/ws", up.url())).send().await.unwrap();
    assert_eq!(plain.status(), 426);
}

#[tokio::test]
async fn stop_is_graceful_and_drop_frees_the_port() {
    let up = TestUpstream::start("stop").await;
    let addr = up.addr();
    let url = up.url();
    let in_flight = tokio::spawn(async move { http1().get(format!("{url}/delay/300")).send().await });
    wait_until(|| up.requests() == 1).await;
    up.stop().await;
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 200, "request in flight finished");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let up = TestUpstream::start("abrupt").await;
    let mut response = http1().get(format!("{}/bytes/{}", up.url(), 1u64 << 30)).send().await.unwrap();
    response.chunk().await.unwrap();
    up.stop_abruptly().await;
    let mut failed = false;
    while !failed {
        match response.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a 1 GiB body cannot have completed"),
            Err(_) => failed = true,
        }
    }
}

async fn wait_until(condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn grpc_unary_stream_and_errors() {
    let (addr, server) = GrpcUpstream::start().await;
    let uri = format!("http://{addr}");
    assert_eq!(grpc_echo(&uri, "hi").await.unwrap(), "hi");
    assert_eq!(grpc_stream(&uri, 3).await.unwrap(), vec!["item-0", "item-1", "item-2"]);
    assert!(grpc_stream(&uri, 0).await.unwrap().is_empty());

    let status = grpc_fail(&uri, tonic::Code::PermissionDenied, "no entry").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "no entry");

    let (items, status) = grpc_stream_then_fail(&uri, 2, tonic::Code::Aborted).await;
    assert_eq!(items, vec!["item-0", "item-1"]);
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert_eq!(status.message(), "failed after 2");
    assert_eq!(server.calls(), 5);

    let unreachable = format!("http://{}", free_addr());
    assert_eq!(grpc_echo(&unreachable, "x").await.unwrap_err().code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn tls_leaf_verifies_against_the_ca() {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let ca = TestCa::new("testkit-ca");
    let leaf = ca.issue(&["localhost", "api.test", "*.wild.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = leaf.write_to(dir.path());
    let chain: Vec<_> = CertificateDer::pem_file_iter(&cert_path).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&key_path).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    for name in ["localhost", "api.test", "x.wild.test", "127.0.0.1"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(ServerName::try_from(name).unwrap().to_owned(), tcp).await.unwrap();
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf, b"ok", "{name}");
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let wrong = connector.connect(ServerName::try_from("other.test").unwrap(), tcp).await;
    assert!(wrong.is_err(), "a name outside the SANs must not verify");
}

#[tokio::test]
async fn wait_helpers_poll_until_ready_or_deadline() {
    let up = TestUpstream::start("wait").await;
    wait_for_tcp(up.addr(), Duration::from_secs(2)).await.unwrap();
    wait_for_http_ok(&format!("{}/status/200", up.url()), Duration::from_secs(2)).await.unwrap();

    let started = Instant::now();
    let err =
        wait_for_http_ok(&format!("{}/status/503", up.url()), Duration::from_millis(200)).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let closed = free_addr();
    assert!(wait_for_tcp(closed, Duration::from_millis(100)).await.is_err());
    assert_ne!(free_port(), 0);
}

#[test]
fn child_guard_terminates_and_reaps() {
    let mut child = ChildGuard::spawn(std::process::Command::new("sleep").arg("30")).unwrap();
    let pid = child.pid();
    assert!(peak_rss_kib(pid).is_some_and(|kib| kib > 0));
    assert!(current_rss_kib(pid).is_some());
    let started = Instant::now();
    let status = child.terminate(Duration::from_secs(5)).unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(2), "SIGTERM ends sleep at once");

    // Ignores SIGTERM (the ignore survives exec): SIGKILL after the grace period.
    let mut stubborn =
        ChildGuard::spawn(std::process::Command::new("sh").args(["-c", "trap '' TERM; exec sleep 30"]))
            .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    stubborn.terminate(Duration::from_millis(200)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));

    let guard = ChildGuard::spawn(std::process::Command::new("sleep").arg("30")).unwrap();
    let pid = guard.pid();
    drop(guard);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "dropped child is reaped");
}
