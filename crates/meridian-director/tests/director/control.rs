//! The director following a control instance (meridian-sync's fake, a real HTTP server on
//! loopback): the SOA serial is the config version, later versions swap in and are acked, a
//! lower version is nacked, a lost control plane leaves the answers as they are (stale), and a
//! restarted director boots from its last-known-good snapshot.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use meridian_director::{AllHealthy, ControlSpec, Director, Options, Source};
use meridian_sync::controls::{ControlsContent, with_change};
use meridian_sync::fake::FakeControl;
use meridian_sync::protocol::{Kind, Snapshot};
use tokio_util::sync::CancellationToken;

const EXAMPLE: &str = include_str!("../../../../examples/dns.yaml");
const TOKEN: &str = "director-token";
const ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 30, 1);

/// The example as a pushed config version; `api.example.com` answers `region`.
fn config(version: u64, region: &str) -> Snapshot {
    let yaml = EXAMPLE.replace(
        "policy: { kind: simple, region: us-east-1 }",
        &format!("policy: {{ kind: simple, region: {region} }}"),
    );
    let valid = meridian_model::parse_global(&yaml).unwrap();
    Snapshot {
        kind: Kind::Config,
        deployment: valid.config().deployment.clone(),
        version,
        hash: valid.hash().to_string(),
        content: serde_json::from_str(valid.canonical_json()).unwrap(),
    }
}

/// Routing controls version `version` with `off` switched off.
fn controls(version: u64, off: &[&str]) -> Snapshot {
    let mut c = ControlsContent::default();
    for name in off {
        c = with_change(&c, name, false, version, 0);
    }
    let (content, hash) = c.canonical();
    Snapshot {
        kind: Kind::Controls,
        deployment: "lab".into(),
        version,
        hash,
        content: serde_json::from_str(&content).unwrap(),
    }
}

struct Node {
    director: Director,
    stop: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn spec(dir: &std::path::Path, urls: Vec<String>) -> ControlSpec {
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut s = ControlSpec::new(urls, token_file, "dir-1".into(), "us-east-1".into(), dir.join("snap"));
    s.initial_wait = Duration::from_secs(3);
    s.dead_after = Duration::from_millis(600);
    s.connect_timeout = Duration::from_millis(300);
    s
}

async fn start(spec: ControlSpec) -> Node {
    let stop = CancellationToken::new();
    let opts = Options {
        listen: SocketAddr::new(IpAddr::V4(ADDR), 0),
        source: Source::Control(spec),
        tcp_timeout: Duration::from_secs(5),
        http: None,
        geo_database: None,
        report_tokens: None,
    };
    let director = Director::start_with_health(opts, Arc::new(AllHealthy), stop.clone()).await.unwrap();
    Node { director, stop }
}

fn resolver(port: u16) -> TokioResolver {
    let mut ns = NameServerConfig::udp_and_tcp(IpAddr::V4(ADDR));
    for c in &mut ns.connections {
        c.port = port;
    }
    let mut b = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    );
    b.options_mut().cache_size = 0;
    b.options_mut().attempts = 1;
    b.build().unwrap()
}

async fn api(n: &Node) -> Vec<String> {
    a(n, "api.example.com.").await
}

async fn a(n: &Node, name: &str) -> Vec<String> {
    let l = resolver(n.director.local_addr().port()).lookup(name, RecordType::A).await.unwrap();
    l.answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

async fn soa_serial(n: &Node) -> u32 {
    let l =
        resolver(n.director.local_addr().port()).lookup("api.example.com.", RecordType::SOA).await.unwrap();
    l.answers()
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
        .unwrap()
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(tokio::time::Instant::now() < end, "not within 5s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn director_follows_the_control_plane_and_boots_from_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let control = FakeControl::start(TOKEN, Duration::from_millis(100)).await;
    control.push(config(3, "us-east-1"));
    let n = start(spec(dir.path(), vec![control.url()])).await;

    // The first version answers, its serial the version; acked; announced as a director that
    // applies config only.
    assert_eq!(n.director.serial(), 3);
    assert_eq!(soa_serial(&n).await, 3);
    assert_eq!(api(&n).await, ["127.0.1.1"]);
    let ack = control.wait_ack(Duration::from_secs(5), |a| a.version == 3).await;
    assert!(ack.ok && ack.node == "dir-1" && ack.kind == Kind::Config, "{ack:?}");
    let st = n.director.source_status();
    assert!(!st.stale && !st.from_snapshot && st.versions["config"] == 3, "{st:?}");

    // A new version swaps in.
    control.push(config(4, "eu-west-1"));
    control.wait_ack(Duration::from_secs(5), |a| a.version == 4 && a.ok).await;
    assert_eq!(n.director.serial(), 4);
    assert_eq!(api(&n).await, ["127.0.2.1"]);

    // A lower version is nacked; version 4 keeps answering.
    control.push(config(2, "ap-southeast-2"));
    let nack = control.wait_ack(Duration::from_secs(5), |a| a.version == 2).await;
    assert!(
        !nack.ok && nack.error.as_deref().unwrap().contains("lower than the running version 4"),
        "{nack:?}"
    );
    assert_eq!(api(&n).await, ["127.0.2.1"]);

    // A routing control switches us-east-1 off: it leaves the failover answer (healthy or not).
    assert_eq!(a(&n, "failover.api.example.com.").await, ["127.0.1.1"]);
    control.push(controls(1, &["us-east-1"]));
    let ack = control.wait_ack(Duration::from_secs(5), |a| a.kind == Kind::Controls).await;
    assert!(ack.ok && ack.version == 1, "{ack:?}");
    assert_eq!(a(&n, "failover.api.example.com.").await, ["127.0.2.1"]);
    assert_eq!(n.director.source_status().versions["controls"], 1);

    // The control plane goes away: same answers, and the director says it is stale.
    control.kill();
    eventually("stale", async || n.director.source_status().stale).await;
    assert_eq!(api(&n).await, ["127.0.2.1"]);
    assert_eq!(soa_serial(&n).await, 4);
    assert_eq!(a(&n, "failover.api.example.com.").await, ["127.0.2.1"]);
    drop(n);

    // Restarted with no control instance answering: version 4 from the snapshot, stale.
    let n = start(spec(dir.path(), vec![control.url()])).await;
    assert_eq!(n.director.serial(), 4);
    assert_eq!(api(&n).await, ["127.0.2.1"]);
    let st = n.director.source_status();
    assert!(st.stale && st.from_snapshot && st.stale_since_unix_ms.is_some(), "{st:?}");
    // The last controls too.
    assert_eq!(a(&n, "failover.api.example.com.").await, ["127.0.2.1"]);
    assert_eq!(st.versions["controls"], 1);
}

#[tokio::test]
async fn director_without_control_or_snapshot_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), vec!["http://127.0.30.1:9".into()]);
    s.initial_wait = Duration::from_millis(500);
    let opts = Options {
        listen: SocketAddr::new(IpAddr::V4(ADDR), 0),
        source: Source::Control(s),
        tcp_timeout: Duration::from_secs(5),
        http: None,
        geo_database: None,
        report_tokens: None,
    };
    let e = match Director::start_with_health(opts, Arc::new(AllHealthy), CancellationToken::new()).await {
        Ok(_) => panic!("started without any config"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("no last-known-good snapshot at") && e.contains("snap.config"), "{e}");
}
