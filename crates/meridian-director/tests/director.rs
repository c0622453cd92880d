//! The director as a real server on 127.0.0.1, queried with hickory-resolver and with `dig`
//! (Debian's dnsutils; these tests fail without it, they never skip).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use meridian_director::{AllHealthy, Director, HealthTarget, HealthView, Options, Source};
use tokio_util::sync::CancellationToken;

const EXAMPLE: &str = include_str!("../../../examples/dns.yaml");

/// The example plus a TXT set far larger than 1232 bytes (20 values of 200 bytes).
fn config() -> String {
    let big: Vec<String> = (0..20).map(|i| format!("\"{i:02}{}\"", "x".repeat(198))).collect();
    EXAMPLE.replace(
        "  record_sets:\n",
        &format!(
            "  record_sets:\n    - name: big.api.example.com.\n      type: TXT\n      \
             policy: {{ kind: simple, values: [{}] }}\n",
            big.join(", ")
        ),
    )
}

struct Running {
    director: Director,
    stop: CancellationToken,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(yaml: &str) -> Running {
    start_with(yaml, Arc::new(AllHealthy)).await
}

async fn start_with(yaml: &str, health: Arc<dyn HealthView>) -> Running {
    start_opts(yaml, health, None).await
}

async fn start_opts(
    yaml: &str,
    health: Arc<dyn HealthView>,
    geo_database: Option<Arc<meridian_director::GeoDatabase>>,
) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("global.yaml");
    std::fs::write(&file, yaml).unwrap();
    let stop = CancellationToken::new();
    let opts = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        source: Source::File { path: file.clone(), poll_interval: Duration::from_millis(50) },
        tcp_timeout: Duration::from_secs(5),
        http: None,
        geo_database,
        report_tokens: None,
    };
    let director = Director::start_with_health(opts, health, stop.clone()).await.unwrap();
    Running { director, stop, file, _dir: dir }
}

impl Running {
    fn port(&self) -> u16 {
        self.director.local_addr().port()
    }

    fn resolver(&self) -> TokioResolver {
        let mut ns = NameServerConfig::udp_and_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for c in &mut ns.connections {
            c.port = self.port();
        }
        let mut b = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        );
        b.options_mut().cache_size = 0;
        b.options_mut().attempts = 1;
        b.build().unwrap()
    }

    /// `dig` against the director; returns its full output.
    async fn dig(&self, args: &str) -> String {
        let mut cmd = Command::new("dig");
        cmd.arg("@127.0.0.1").arg("-p").arg(self.port().to_string()).args(["+time=2", "+tries=1"]);
        cmd.args(args.split_whitespace());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .expect("`dig` must be installed (Debian package dnsutils); this test does not skip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn answer_ips(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with(';') && (l.contains("\tA\t") || l.contains("\tAAAA\t")))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_policy_answers_hickory_resolver() {
    let d = start(&config()).await;
    let r = d.resolver();
    let a = |name: &'static str| {
        let r = r.clone();
        async move {
            let l = r.lookup(name, RecordType::A).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut v: Vec<String> = l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::A(a) => Some(a.0.to_string()),
                    _ => None,
                })
                .collect();
            v.sort();
            v
        }
    };
    // The resolver's address (127.0.0.1) is in no table: first listed, default rules.
    assert_eq!(a("api.example.com.").await, ["127.0.1.1"]);
    assert_eq!(a("failover.api.example.com.").await, ["127.0.1.1"]);
    let w = a("weighted.api.example.com.").await;
    assert!(w == ["127.0.1.1"] || w == ["127.0.2.1"], "{w:?}");
    assert_eq!(a("latency.api.example.com.").await, ["127.0.1.1"]);
    assert_eq!(a("geo.api.example.com.").await, ["127.0.1.1"]);
    assert_eq!(a("near.api.example.com.").await, ["127.0.1.1"]);
    assert_eq!(a("multi.api.example.com.").await, ["127.0.1.1", "127.0.2.1", "192.0.2.1", "192.0.2.2"]);
    let txt = r.lookup("api.example.com.", RecordType::TXT).await.unwrap();
    assert_eq!(txt.answers()[0].ttl, 300);
    // Far over the UDP size: truncated over UDP, the resolver retries over TCP.
    let big = r.lookup("big.api.example.com.", RecordType::TXT).await.unwrap();
    assert_eq!(big.answers().len(), 20);
    let nx = r.lookup("nope.api.example.com.", RecordType::A).await.unwrap_err();
    assert!(nx.is_nx_domain(), "{nx}");
    let nodata = r.lookup("failover.api.example.com.", RecordType::AAAA).await.unwrap_err();
    assert!(nodata.is_no_records_found() && !nodata.is_nx_domain(), "{nodata}");
}

#[tokio::test]
async fn dig_sees_flags_negative_answers_and_refusals() {
    let d = start(&config()).await;
    let ok = d.dig("api.example.com A").await;
    assert!(ok.contains("status: NOERROR") && ok.contains("flags: qr aa rd;"), "{ok}");
    assert_eq!(answer_ips(&ok), ["127.0.1.1"]);
    let nx = d.dig("nope.api.example.com A").await;
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("ANSWER: 0, AUTHORITY: 1"), "{nx}");
    assert!(nx.contains(";; AUTHORITY SECTION:\napi.example.com.\t30\tIN\tSOA"), "{nx}");
    let nodata = d.dig("failover.api.example.com AAAA").await;
    assert!(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0, AUTHORITY: 1"), "{nodata}");
    let refused = d.dig("example.org A").await;
    assert!(refused.contains("status: REFUSED") && !refused.contains(" aa"), "{refused}");
    let ns = d.dig("api.example.com NS").await;
    assert!(ns.contains("ns1.api.example.com.") && ns.contains("ADDITIONAL: 2"), "glue + OPT: {ns}");
    let edns = d.dig("+bufsize=4096 api.example.com A").await;
    assert!(edns.contains("; EDNS: version: 0, flags:; udp: 1232"), "{edns}");
    let badvers = d.dig("+edns=1 +noednsneg api.example.com A").await;
    assert!(badvers.contains("status: BADVERS"), "{badvers}");
    let cname = d.dig("www.api.example.com A").await;
    assert!(cname.contains("CNAME\tapi.example.com."), "{cname}");
}

#[tokio::test]
async fn client_subnet_decides_and_is_echoed_with_scope() {
    let d = start(&config()).await;
    let au = d.dig("+subnet=203.0.113.0/24 latency.api.example.com A").await;
    assert_eq!(answer_ips(&au), ["127.0.3.1"], "{au}");
    assert!(au.contains("CLIENT-SUBNET: 203.0.113.0/24/24"), "{au}");
    let ie = d.dig("+subnet=198.51.100.0/24 geo.api.example.com A").await;
    assert_eq!(answer_ips(&ie), ["127.0.2.1"], "{ie}");
    let wide = d.dig("+subnet=198.51.0.0/16 geo.api.example.com A").await;
    assert!(wide.contains("CLIENT-SUBNET: 198.51.0.0/16/16"), "no row: scope = source: {wide}");
    let near = d.dig("+subnet=192.0.2.0/24 near.api.example.com A").await;
    assert_eq!(answer_ips(&near), ["127.0.1.1"], "{near}");
    let au6 = d.dig("+subnet=2001:db8::/48 latency.api.example.com AAAA").await;
    assert_eq!(answer_ips(&au6), ["fd00::2:1"], "{au6}");
    assert!(au6.contains("CLIENT-SUBNET: 2001:db8::/48/32"), "{au6}");
    let simple = d.dig("+subnet=203.0.113.0/24 api.example.com A").await;
    assert!(simple.contains("CLIENT-SUBNET: 203.0.113.0/24/0"), "{simple}");
}

#[tokio::test]
async fn a_big_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let d = start(&config()).await;
    let udp = d.dig("+ignore +bufsize=1232 big.api.example.com TXT").await;
    assert!(udp.contains("flags: qr aa tc rd;"), "{udp}");
    let noedns = d.dig("+ignore +noedns big.api.example.com TXT").await;
    assert!(noedns.contains(" tc "), "{noedns}");
    let retried = d.dig("big.api.example.com TXT").await;
    assert!(retried.contains("ANSWER: 20,") && retried.contains("Truncated, retrying in TCP"), "{retried}");
    let tcp = d.dig("+tcp big.api.example.com TXT").await;
    assert!(tcp.contains("ANSWER: 20,") && !tcp.contains(" tc "), "{tcp}");
}

fn serial(dig: &str) -> u32 {
    let line = dig.lines().find(|l| l.contains("\tSOA\t") && !l.starts_with(';')).expect(dig);
    line.split_whitespace().nth(6).unwrap().parse().unwrap()
}

#[tokio::test]
async fn soa_serial_grows_with_each_applied_config_and_bad_configs_are_ignored() {
    let d = start(&config()).await;
    let first = serial(&d.dig("api.example.com SOA").await);
    assert_eq!(first, d.director.serial());
    std::fs::write(
        &d.file,
        config()
            .replace("primary: us-east-1, secondary: eu-west-1", "primary: eu-west-1, secondary: us-east-1"),
    )
    .unwrap();
    let mut now = first;
    for _ in 0..100 {
        now = serial(&d.dig("api.example.com SOA").await);
        if now != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(now, first + 1);
    assert_eq!(answer_ips(&d.dig("failover.api.example.com A").await), ["127.0.2.1"]);
    std::fs::write(&d.file, "dns: [not valid\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(serial(&d.dig("api.example.com SOA").await), first + 1, "the last good config is kept");
    assert_eq!(answer_ips(&d.dig("failover.api.example.com A").await), ["127.0.2.1"]);
    let _: SocketAddr = d.director.local_addr();
}

#[tokio::test]
async fn identical_responses_over_the_rate_limit_are_dropped_or_slipped_over_udp() {
    use hickory_resolver::proto::op::{Message, Query};
    use hickory_resolver::proto::rr::Name;
    let limited = config().replace(
        "  latency:\n",
        "  rate_limit: { responses_per_second: 1, burst: 3, slip: 2 }\n  latency:\n",
    );
    let d = start(&limited).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(d.director.local_addr()).await.unwrap();
    for id in 0..10u16 {
        let mut q = Message::query();
        q.metadata.id = id;
        q.add_query(Query::query(Name::from_ascii("api.example.com.").unwrap(), RecordType::A));
        socket.send(&q.to_vec().unwrap()).await.unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await {
        let m = Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty());
            truncated += 1;
        } else {
            assert_eq!(m.answers.len(), 1);
            full += 1;
        }
    }
    // A burst of 3, then 7 over the limit: every 2nd of those slips (TC), the rest are dropped.
    assert_eq!((full, truncated), (3, 3));
    // TCP is never limited.
    let tcp = d.dig("+tcp api.example.com A").await;
    assert_eq!(answer_ips(&tcp), ["127.0.1.1"], "{tcp}");
}

/// us-east-1 is down.
struct UsDown;

impl HealthView for UsDown {
    fn healthy(&self, t: HealthTarget<'_>) -> bool {
        t != HealthTarget::Region("us-east-1")
    }
}

#[tokio::test]
async fn answers_follow_the_health_view_it_is_given() {
    let d = start_with(&config(), Arc::new(UsDown)).await;
    assert_eq!(answer_ips(&d.dig("failover.api.example.com A").await), ["127.0.2.1"]);
    assert_eq!(answer_ips(&d.dig("multi.api.example.com A").await), ["127.0.2.1", "192.0.2.1", "192.0.2.2"]);
    assert_eq!(answer_ips(&d.dig("api.example.com A").await), ["127.0.1.1"], "simple ignores health");
}

#[path = "director/health.rs"]
mod health;

#[path = "director/control.rs"]
mod control;

#[path = "director/geoip.rs"]
mod geoip;

#[path = "director/wire.rs"]
mod wire;

#[path = "director/report_auth.rs"]
mod report_auth;
