//! HTTP/2 (h2c and TLS+ALPN with SNI), WebSocket upgrades and gRPC pass-through.

use futures_util::{SinkExt, StreamExt};
use meridian_testkit::TestUpstream;
use meridian_testkit::certs::TestCa;
use meridian_testkit::grpc::{self, GrpcUpstream};
use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_served() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let r = h2c_client().get(gw.url("/h2")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/h2");
    // The upstream speaks HTTP/1.1 to us (service protocol http1) and still gets a Host.
    assert_eq!(v["version"], "HTTP/1.1");
    assert!(v["headers"]["host"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(v["headers"]["x-forwarded-host"], v["headers"]["host"]);

    // Request ids are never indexed by HPACK: each answer on one connection still carries its
    // own, the one the endpoint saw.
    let client = h2c_client();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = client.get(gw.url("/h2")).send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["headers"]["x-request-id"], id.as_str());
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

#[tokio::test]
async fn tls_picks_certificates_by_sni_and_negotiates_h2() {
    let up = TestUpstream::start("a").await;
    let ca = TestCa::new("meridian test ca");
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = ca.issue(&["a.test"]).write_named(dir.path(), "a");
    let (b_cert, b_key) = ca.issue(&["b.test"]).write_named(dir.path(), "b");
    let tls = format!(
        "    tls:\n      certificates:\n        - {{ cert: {}, key: {} }}\n        - {{ cert: {}, key: {} }}\n",
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display()
    );
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), &tls, "").await;
    let root = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([root])
        .resolve("a.test", gw.addr())
        .resolve("b.test", gw.addr())
        .build()
        .unwrap();
    for name in ["a.test", "b.test"] {
        // Hostname verification only passes when the certificate for this SNI name is served.
        let r = c.get(format!("https://{name}:{}/tls", gw.addr().port())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN h2 for {name}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    }
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr())).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(tokio_tungstenite::tungstenite::Message::text(format!("hello {i}"))).await.unwrap();
        let m = ws.next().await.unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn grpc_unary_streaming_and_errors_pass_through_with_trailers() {
    let (addr, _g) = GrpcUpstream::start().await;
    let yaml = format!(
        "regions:\n  - name: local\nservices:\n  - name: svc\n    protocol: http2\n    endpoints: {{ local: [{{ address: {addr} }}] }}\n{CATCH_ALL}"
    );
    let gw = Gw::start(&yaml).await;
    let uri = format!("http://{}", gw.addr());
    assert_eq!(grpc::grpc_echo(&uri, "ping").await.unwrap(), "ping");
    let items = grpc::grpc_stream(&uri, 5).await.unwrap();
    assert_eq!(items.len(), 5);
    let err = grpc::grpc_fail(&uri, tonic::Code::NotFound, "no such thing").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(err.message(), "no such thing");
    let (items, status) = grpc::grpc_stream_then_fail(&uri, 3, tonic::Code::Aborted).await;
    assert_eq!(items.len(), 3);
    assert_eq!(status.code(), tonic::Code::Aborted);
}

#[tokio::test]
async fn certificates_are_reloaded_without_a_restart() {
    let up = TestUpstream::start("a").await;
    let old_ca = TestCa::new("old ca");
    let new_ca = TestCa::new("new ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = old_ca.issue(&["api.test"]).write_named(dir.path(), "api");
    let tls = format!(
        "    tls:\n      certificates:\n        - {{ cert: {}, key: {} }}\n",
        cert.display(),
        key.display()
    );
    let gw = Gw::start_with(&global(&[up.addr()], "", CATCH_ALL), &tls, "").await;
    let trusting = |ca: &TestCa| {
        reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
            .resolve("api.test", gw.addr())
            .build()
            .unwrap()
    };
    let url = format!("https://api.test:{}/", gw.addr().port());
    assert_eq!(trusting(&old_ca).get(&url).send().await.unwrap().status(), 200);
    // Replace the files in place; the listener picks the new certificate up by itself.
    let leaf = new_ca.issue(&["api.test"]);
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    let new_client = trusting(&new_ca);
    eventually("new certificate served", std::time::Duration::from_secs(15), async || {
        new_client.get(&url).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;
    assert!(trusting(&old_ca).get(&url).send().await.is_err(), "the old certificate is no longer served");
}
