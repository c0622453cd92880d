//! Cross-region failover through the peer gateway tier, over mutual TLS.

use std::net::SocketAddr;
use std::time::Duration;

use meridian_testkit::TestUpstream;
use meridian_testkit::certs::TestCa;
use meridian_testkit::proc::free_addr;
use serde_json::Value;

use crate::harness::*;

/// Two regions `east` and `west`, each with a gateway and its peer listener.
struct TwoRegions {
    east: Gw,
    west: Gw,
    _dir: tempfile::TempDir,
}

fn global_two(
    east_eps: &[SocketAddr],
    west_eps: &[SocketAddr],
    peers: (SocketAddr, SocketAddr),
    extra: &str,
) -> String {
    let eps =
        |v: &[SocketAddr]| v.iter().map(|a| format!("{{ address: \"{a}\" }}")).collect::<Vec<_>>().join(", ");
    format!(
        "regions:\n  - {{ name: east, peer_address: \"{}\", location: {{ lat: 40, lon: -75 }} }}\n  - {{ name: west, peer_address: \"{}\", location: {{ lat: 37, lon: -122 }} }}\n\
         services:\n  - name: svc\n    endpoints: {{ east: [{}], west: [{}] }}\n{extra}\
         routes:\n  - name: all\n    match: {{ path: {{ prefix: / }} }}\n    service: svc\n",
        peers.0,
        peers.1,
        eps(east_eps),
        eps(west_eps)
    )
}

async fn two_regions(east_eps: &[SocketAddr], west_eps: &[SocketAddr], extra: &str) -> TwoRegions {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("deployment ca");
    let ca_path = ca.write_cert(dir.path(), "ca.pem");
    let peers = (free_addr(), free_addr());
    let global = global_two(east_eps, west_eps, peers, extra);
    let mut gws = Vec::new();
    for (region, addr) in [("east", peers.0), ("west", peers.1)] {
        let leaf = ca.issue(&[&format!("{region}.peer.meridian")]);
        let (cert, key) = leaf.write_named(dir.path(), region);
        let top = format!(
            "peer: {{ address: \"{addr}\", cert: {}, key: {}, ca: {} }}\n",
            cert.display(),
            key.display(),
            ca_path.display()
        );
        gws.push(Gw::start_in(region, &global, "", &top).await);
    }
    let west = gws.pop().unwrap();
    let east = gws.pop().unwrap();
    TwoRegions { east, west, _dir: dir }
}

fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn a_service_down_locally_is_served_by_the_peer_region() {
    let west_up = TestUpstream::start("west-1").await;
    let t = two_regions(&[dead_addr()], &[west_up.addr()], "").await;
    let c = client();
    for _ in 0..5 {
        let r = c.post(t.east.url("/orders")).body("payload").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["upstream"], "west-1");
        // The hop is visible to the serving region's upstream only through standard headers.
        assert!(v["headers"].get("x-meridian-hop").is_none(), "hop headers stop at the peer gateway");
        assert_eq!(
            v["headers"]["x-forwarded-for"].as_str().unwrap().split(',').next().unwrap().trim(),
            "127.0.0.1"
        );
        assert_eq!(v["body_bytes"], 7);
    }
    // East's own health endpoint tells the truth: it cannot serve svc itself.
    let h = c.get(t.east.admin("/-/health/services/svc")).send().await.unwrap();
    assert_eq!(h.status(), 200, "endpoints exist; health checks are what mark them down");
    let h = c.get(t.west.admin("/-/health/services/svc")).send().await.unwrap();
    assert_eq!(h.status(), 200);
}

#[tokio::test]
async fn a_drained_region_sends_traffic_to_its_peer_and_refuses_peer_traffic() {
    let east_up = TestUpstream::start("east-1").await;
    let west_up = TestUpstream::start("west-1").await;
    let t = two_regions(&[east_up.addr()], &[west_up.addr()], "").await;
    let c = client();
    let v: Value = c.get(t.east.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "east-1", "local first");

    let r = c.put(t.east.admin("/-/drains/svc@east")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = c.get(t.east.admin("/-/health/services/svc")).send().await.unwrap();
    assert_eq!(h.status(), 503);
    let v: Value = c.get(t.east.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "west-1", "drained service fails over");

    // The whole west region drained on west: west refuses peer traffic, serves nobody locally,
    // and east (whose own service is drained) has nowhere to go.
    c.put(t.west.admin("/-/drains/west")).send().await.unwrap();
    let r = c.get(t.east.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ServiceUnavailable");

    c.delete(t.east.admin("/-/drains/svc@east")).send().await.unwrap();
    let v: Value = c.get(t.east.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "east-1", "undrained: local again");
    let status: Value = c.get(t.east.admin("/-/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["region"], "east");
    assert_eq!(status["services"][0]["failover_to"][0]["region"], "west");
}

#[tokio::test]
async fn no_loop_when_both_regions_fail() {
    let t = two_regions(&[dead_addr()], &[dead_addr()], "").await;
    let c = client();
    let r = c.get(t.east.url("/x")).send().await.unwrap();
    assert!(r.status() == 502 || r.status() == 503, "{}", r.status());
    let r = c.get(t.west.url("/x")).send().await.unwrap();
    assert!(r.status() == 502 || r.status() == 503, "{}", r.status());
}

#[tokio::test]
async fn residency_keeps_failover_inside_the_allowed_regions() {
    let west_up = TestUpstream::start("west-1").await;
    let t =
        two_regions(&[dead_addr()], &[west_up.addr()], "    failover: { allowed_regions: [east] }\n").await;
    let r = client().get(t.east.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502, "west is not allowed: the local failure stands");
    assert_eq!(west_up.requests(), 0);
}

#[tokio::test]
async fn spoofed_hop_headers_from_clients_are_ignored_and_peers_need_a_certificate() {
    let east_up = TestUpstream::start("east-1").await;
    let west_up = TestUpstream::start("west-1").await;
    let t = two_regions(&[east_up.addr()], &[west_up.addr()], "").await;
    let c = client();
    let v: Value = c
        .get(t.east.url("/"))
        .header("x-meridian-hop", "west")
        .header("x-meridian-service", "other")
        .header("x-meridian-client", "6.6.6.6")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["upstream"], "east-1");
    assert!(v["headers"].get("x-meridian-hop").is_none());
    assert!(v["headers"].get("x-meridian-client").is_none());
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");

    // The peer listener does not talk to a client without a deployment certificate.
    let peer_addr = t.west.running.as_ref().unwrap().listeners.iter().find(|l| l.0 == "peer").unwrap().1;
    let stranger = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = stranger.get(format!("https://{peer_addr}/")).header("x-meridian-service", "svc").send().await;
    assert!(r.is_err(), "peer listener accepted a client without a certificate");
    assert_eq!(west_up.requests(), 0);
}
