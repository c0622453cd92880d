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
    let eps = |region: &str, v: &[SocketAddr]| {
        if v.is_empty() {
            return String::new();
        }
        let list = v.iter().map(|a| format!("{{ address: \"{a}\" }}")).collect::<Vec<_>>().join(", ");
        format!("{region}: [{list}], ")
    };
    format!(
        "regions:\n  - {{ name: east, peer_address: \"{}\", location: {{ lat: 40, lon: -75 }} }}\n  - {{ name: west, peer_address: \"{}\", location: {{ lat: 37, lon: -122 }} }}\n\
         services:\n  - name: svc\n    endpoints: {{ {}{} }}\n{extra}\
         routes:\n  - name: all\n    match: {{ path: {{ prefix: / }} }}\n    service: svc\n",
        peers.0,
        peers.1,
        eps("east", east_eps),
        eps("west", west_eps)
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
        assert_eq!(r.headers()["x-meridian-region"], "west", "the serving region is named");
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
    let t = two_regions(&[dead_addr()], &[], "    failover: { allowed_regions: [east] }\n").await;
    let c = client();
    let status: Value = c.get(t.east.admin("/-/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["services"][0]["failover_to"], serde_json::json!([]), "west is not a failover target");
    let r = c.get(t.east.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502, "the local failure stands");
    // West may not serve it even for its own clients.
    let r = c.get(t.west.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
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

const FAST_CHECKS: &str = "    health_check: { probe: { type: http, path: /health-probe }, interval: 100ms, timeout: 80ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n";

#[tokio::test]
async fn health_checks_move_a_region_out_before_requests_fail() {
    // East's endpoint accepts connections but never answers: probes time out, and any request
    // sent there would hang for the 30 s per-try timeout.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let west_up = TestUpstream::start("west-1").await;
    let t = two_regions(&[hung.local_addr().unwrap()], &[west_up.addr()], FAST_CHECKS).await;
    let c = client();
    eventually("east reports it cannot serve svc", Duration::from_secs(10), async || {
        c.get(t.east.admin("/-/health/services/svc")).send().await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    assert_eq!(c.get(t.west.admin("/-/health/services/svc")).send().await.unwrap().status(), 200);
    for _ in 0..10 {
        let v: Value = c.get(t.east.url("/x")).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["upstream"], "west-1");
    }
    let status: Value = c.get(t.east.admin("/-/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["services"][0]["health"]["endpoints"][0]["active"], "unhealthy");
}

#[tokio::test]
async fn with_every_region_down_the_local_endpoints_are_used_in_panic_mode() {
    // Both regions' probes fail (the probe path answers 503) while the endpoints still serve:
    // nowhere is healthy, so the local region uses its endpoints anyway rather than failing.
    let east_up = TestUpstream::start("east-1").await;
    let west_up = TestUpstream::start("west-1").await;
    let checks = FAST_CHECKS.replace("/health-probe", "/status/503");
    let t = two_regions(&[east_up.addr()], &[west_up.addr()], &checks).await;
    let c = client();
    eventually("east marked down", Duration::from_secs(10), async || {
        c.get(t.east.admin("/-/health/services/svc")).send().await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    eventually("west marked down", Duration::from_secs(10), async || {
        c.get(t.west.admin("/-/health/services/svc")).send().await.map(|r| r.status() == 503).unwrap_or(false)
    })
    .await;
    let v: Value = c.get(t.east.url("/x")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], "east-1");
}

#[tokio::test]
async fn partial_loss_spills_over_in_proportion() {
    let live = TestUpstream::start("east-live").await;
    let west_up = TestUpstream::start("west-1").await;
    let east = [live.addr(), dead_addr(), dead_addr(), dead_addr()];
    let t = two_regions(&east, &[west_up.addr()], FAST_CHECKS).await;
    let c = client();
    eventually("three dead endpoints marked down", Duration::from_secs(10), async || {
        let s: Value = c.get(t.east.admin("/-/status")).send().await.unwrap().json().await.unwrap();
        s["services"][0]["health"]["available"] == 1
    })
    .await;
    let mut west = 0;
    for _ in 0..200 {
        let v: Value = c.get(t.east.url("/")).send().await.unwrap().json().await.unwrap();
        if v["upstream"] == "west-1" {
            west += 1;
        }
    }
    // 1 of 4 available × overprovisioning 1.4 keeps 35 % local: about 65 % spills over.
    assert!((90..=170).contains(&west), "spilled {west} of 200");
}

#[tokio::test]
async fn region_hops_do_not_need_retry_attempts() {
    let west_up = TestUpstream::start("west-1").await;
    let t = two_regions(&[dead_addr()], &[west_up.addr()], "").await;
    // The same config with retries off: a refused connect in east still moves to west.
    let peers = {
        let s: Value = client().get(t.east.admin("/-/status")).send().await.unwrap().json().await.unwrap();
        s["peers"].clone()
    };
    assert_eq!(peers[0]["region"], "west");
    let cfg = std::fs::read_to_string(&t.east.config_path)
        .unwrap()
        .replace("    service: svc\n", "    service: svc\n    retries: { attempts: 0 }\n");
    let before = t.east.status().reloads_ok;
    t.east.write_config(&cfg);
    eventually("reload", Duration::from_secs(10), async || t.east.status().reloads_ok > before).await;
    let r = client().get(t.east.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
