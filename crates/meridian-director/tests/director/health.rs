//! Health from every region, end to end: real checker tasks (one per region, each from its
//! own 127.0.2N.1 source address) probe real test upstreams standing in for each region's
//! gateway tier and report to a real director over HTTP (and to one that never answers);
//! answers are read over UDP with hickory-resolver. Polls with generous deadlines; no timing thresholds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use meridian_director::meridian_health::{CheckerConfig, CheckerNode, run_checker};
use meridian_director::{Director, Options, Source};
use meridian_testkit::TestUpstream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const REGIONS: [(&str, &str); 3] =
    [("us-east-1", "127.0.20.1"), ("eu-west-1", "127.0.21.1"), ("ap-southeast-2", "127.0.22.1")];
const DEADLINE: Duration = Duration::from_secs(60);

/// us-east-1 is a calculated check (AND) of an HTTP and a TCP check of its gateway tier; the
/// other regions have one HTTP check each.
fn config(gateways: &[SocketAddr; 3]) -> String {
    let regions: String =
        REGIONS.iter().map(|(n, ip)| format!("  - {{ name: {n}, public_addresses: [{ip}] }}\n")).collect();
    let us = gateways[0];
    let mut checks = format!(
        "      - {{ name: us-east-1-ready, region: us-east-1, address: \"{us}\", path: /-/ready }}\n      \
         - {{ name: us-east-1-tcp, region: us-east-1, address: \"{us}\", protocol: tcp }}\n      \
         - {{ name: us-east-1, protocol: calculated, children: [us-east-1-ready, us-east-1-tcp] }}\n"
    );
    for ((n, _), gw) in REGIONS.iter().zip(gateways).skip(1) {
        checks.push_str(&format!("      - {{ name: {n}, region: {n}, address: \"{gw}\" }}\n"));
    }
    format!(
        "regions:\n{regions}dns:\n  zones:\n    - name: api.example.com.\n      \
         ns: [{{ name: ns1.api.example.com., address: 127.0.20.53 }}]\n  record_sets:\n    \
         - name: failover.api.example.com.\n      type: A\n      ttl: 1s\n      \
         policy: {{ kind: failover, primary: us-east-1, secondary: eu-west-1 }}\n  \
         health:\n    interval: 100ms\n    timeout: 100ms\n    failure_threshold: 2\n    \
         staleness: 3s\n    checks:\n{checks}"
    )
}

struct Lab {
    director: Director,
    stop: CancellationToken,
    checkers: Vec<JoinHandle<()>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _hanging: std::net::TcpListener,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.cancel();
        for c in &self.checkers {
            c.abort();
        }
    }
}

impl Lab {
    async fn start(gateways: &[SocketAddr; 3]) -> Lab {
        Lab::start_seen_as(gateways, [gateways; 3]).await
    }

    /// The director's config has `gateways`; checker `i` probes `seen[i]` instead (where a
    /// region is unreachable from that checker only).
    async fn start_seen_as(gateways: &[SocketAddr; 3], seen: [&[SocketAddr; 3]; 3]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("global.yaml");
        std::fs::write(&file, config(gateways)).unwrap();
        let stop = CancellationToken::new();
        let opts = Options {
            listen: "127.0.20.53:0".parse().unwrap(),
            source: Source::File { path: file.clone(), poll_interval: Duration::from_millis(100) },
            tcp_timeout: Duration::from_secs(5),
            http: Some("127.0.20.53:0".parse().unwrap()),
            geo_database: None,
            report_tokens: None,
        };
        let director = Director::start(opts, stop.clone()).await.unwrap();
        let http_addr = director.http_addr().unwrap();
        // A second "director" that accepts connections (the kernel does) and never answers:
        // every checker reports to it too, and must not let it hold back the real one.
        let hanging = std::net::TcpListener::bind("127.0.20.54:0").unwrap();
        let hanging_addr = hanging.local_addr().unwrap();
        let checkers = REGIONS
            .iter()
            .zip(seen)
            .map(|((region, ip), gateways)| {
                let file = dir.path().join(format!("global-seen-from-{region}.yaml"));
                std::fs::write(&file, config(gateways)).unwrap();
                let c = CheckerConfig {
                    node: CheckerNode {
                        id: format!("checker-{region}"),
                        region: region.to_string(),
                        source_address: Some(ip.parse().unwrap()),
                    },
                    config: file,
                    directors: vec![format!("http://{hanging_addr}"), format!("http://{http_addr}")],
                    report_token_file: None,
                };
                tokio::spawn(run_checker(c, None))
            })
            .collect();
        Lab { director, stop, checkers, http: reqwest::Client::new(), _dir: dir, _hanging: hanging }
    }

    fn resolver(&self) -> TokioResolver {
        let addr = self.director.local_addr();
        let mut ns = NameServerConfig::udp(addr.ip());
        for c in &mut ns.connections {
            c.port = addr.port();
        }
        let mut b = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        );
        b.options_mut().cache_size = 0;
        b.options_mut().attempts = 1;
        b.options_mut().timeout = Duration::from_secs(2);
        b.build().unwrap()
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("http://{}{path}", self.director.http_addr().unwrap());
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }

    async fn health(&self) -> serde_json::Value {
        self.get("/v1/health").await
    }

    /// Polls `/v1/health` until `ok` holds.
    async fn until(&self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let h = self.health().await;
            if ok(&h) {
                return h;
            }
            assert!(Instant::now() < end, "not within {DEADLINE:?}: {what}; last /v1/health: {h:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One lookup; panics on an empty answer or an error (SERVFAIL, timeout).
async fn lookup(r: &TokioResolver) -> Vec<IpAddr> {
    let answer = r.lookup("failover.api.example.com.", hickory_resolver::proto::rr::RecordType::A).await;
    let answer = answer.unwrap_or_else(|e| panic!("the director must always answer: {e}"));
    let ips: Vec<IpAddr> = answer
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    assert!(!ips.is_empty(), "never an empty answer");
    ips
}

fn all_judged_healthy(h: &serde_json::Value) -> bool {
    h["vantage_points_fresh"] == 3
        && h["checks"].as_array().unwrap().iter().all(|c| {
            let reason = c["reason"].as_str().unwrap();
            c["healthy"] == true && (reason.starts_with("2 of 2 other fresh") || c["children"].is_array())
        })
}

fn check<'a>(h: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    h["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_going_down_leaves_the_answer_without_an_empty_answer_on_the_way() {
    let us = TestUpstream::start("us-gateway").await;
    let eu = TestUpstream::start("eu-gateway").await;
    let ap = TestUpstream::start("ap-gateway").await;
    let lab = Lab::start(&[us.addr(), eu.addr(), ap.addr()]).await;
    let r = lab.resolver();
    let us_ip: IpAddr = "127.0.20.1".parse().unwrap();
    let eu_ip: IpAddr = "127.0.21.1".parse().unwrap();

    // Every checker reports, the warm-up ends, every region is healthy.
    lab.until("three fresh vantage points judging every check", all_judged_healthy).await;
    assert_eq!(lookup(&r).await, [us_ip]);
    // The probes came from each checker's region: us-east-1's own observation is not counted.
    let h = lab.health().await;
    assert_eq!(check(&h, "us-east-1")["reason"], "2 of 2 children healthy, 2 needed");
    let vps = check(&h, "us-east-1-ready")["vantage_points"].as_array().unwrap().clone();
    assert_eq!(vps.len(), 3);
    for v in &vps {
        assert_eq!(v["counted"], v["region"] != "us-east-1", "{v}");
    }

    // us-east-1's gateway tier goes down: answers move to the secondary once the failure
    // threshold is crossed and the quorum agrees, never empty or failed on the way.
    us.stop_abruptly().await;
    let end = Instant::now() + DEADLINE;
    loop {
        let ips = lookup(&r).await;
        if ips == [eu_ip] {
            break;
        }
        assert_eq!(ips, [us_ip], "only the primary or the secondary");
        assert!(Instant::now() < end, "still answering us-east-1 after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The answer moves as soon as one of the two probed children is judged down; the other
    // follows once its own vantage points cross their failure threshold.
    let h = lab
        .until("both probed checks of us-east-1 judged down", |h| {
            ["us-east-1-ready", "us-east-1-tcp"].iter().all(|c| check(h, c)["healthy"] == false)
        })
        .await;
    assert_eq!(check(&h, "us-east-1")["healthy"], false, "{h:#}");
    for probed in ["us-east-1-ready", "us-east-1-tcp"] {
        let c = check(&h, probed);
        assert_eq!(c["healthy"], false, "{h:#}");
        let down: Vec<_> =
            c["vantage_points"].as_array().unwrap().iter().filter(|v| v["healthy"] == false).collect();
        assert!(down.len() >= 2, "{h:#}");
        assert!(down.iter().all(|v| v["error"].as_str().is_some_and(|e| e.contains("connect"))), "{h:#}");
    }
    // Stays on the secondary.
    for _ in 0..5 {
        assert_eq!(lookup(&r).await, [eu_ip]);
    }

    // The HTTP explanation says which answer and why, with the vantage points.
    let e = lab.get("/v1/explain?name=failover.api.example.com&type=A").await;
    assert_eq!(e["member"], "secondary eu-west-1", "{e:#}");
    assert_eq!(e["answers"][0], "failover.api.example.com. 1 A 127.0.21.1", "{e:#}");
    assert_eq!(e["health"]["source"], "quorum");
    let checks: Vec<&str> =
        e["health"]["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(checks, ["us-east-1-ready", "us-east-1-tcp", "us-east-1", "eu-west-1"]);

    // Two of the three checkers fall silent: the director is partitioned and keeps its last
    // verdicts (and answers) rather than trusting the one vantage point left.
    lab.checkers[1].abort();
    lab.checkers[2].abort();
    let h = lab.until("partitioned", |h| h["partitioned"] == true).await;
    assert!(check(&h, "eu-west-1")["reason"].as_str().unwrap().starts_with("kept: partitioned"), "{h:#}");
    assert_eq!(check(&h, "us-east-1")["healthy"], false);
    assert_eq!(lookup(&r).await, [eu_ip]);
    let text = lab.http.get(format!(
        "http://{}/v1/explain?name=failover.api.example.com&format=text",
        lab.director.http_addr().unwrap()
    ));
    let text = text.send().await.unwrap().text().await.unwrap();
    assert!(text.contains("PARTITIONED"), "{text}");
    let m = lab.http.get(format!("http://{}/metrics", lab.director.http_addr().unwrap()));
    let m = m.send().await.unwrap().text().await.unwrap();
    assert!(m.contains("meridian_director_health_partitioned 1\n"), "{m}");
    assert!(m.contains("meridian_director_check_healthy{check=\"us-east-1\"} 0\n"), "{m}");
    assert!(m.contains("meridian_director_check_healthy{check=\"eu-west-1\"} 1\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checker_cut_off_from_a_region_does_not_flip_it() {
    let us = TestUpstream::start("us-gateway").await;
    let eu = TestUpstream::start("eu-gateway").await;
    let ap = TestUpstream::start("ap-gateway").await;
    // A port nobody listens on: from eu-west-1's checker, us-east-1 refuses connections.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let real = [us.addr(), eu.addr(), ap.addr()];
    let cut = [dead, eu.addr(), ap.addr()];
    let lab = Lab::start_seen_as(&real, [&real, &cut, &real]).await;
    // Wait until eu-west-1's checker has reported us-east-1 down (past its threshold) while
    // ap-southeast-2's, fresh, says healthy: one of two is on the line, the verdict stays.
    let h = lab
        .until("eu-west-1's checker reports us-east-1 down", |h| {
            let vps = check(h, "us-east-1-ready")["vantage_points"].as_array().unwrap().clone();
            let by = |id: &str| vps.iter().find(|v| v["checker"] == id).cloned();
            by("checker-eu-west-1").is_some_and(|v| v["healthy"] == false && v["fresh"] == true)
                && by("checker-ap-southeast-2").is_some_and(|v| v["healthy"] == true && v["fresh"] == true)
                && !check(h, "us-east-1-ready")["reason"].as_str().unwrap().contains("warming up")
        })
        .await;
    let ready = check(&h, "us-east-1-ready");
    assert_eq!(ready["healthy"], true, "{h:#}");
    assert!(ready["reason"].as_str().unwrap().starts_with("kept on the line: 1 of 2"), "{h:#}");
    assert_eq!(check(&h, "us-east-1")["healthy"], true);
    assert_eq!(lookup(&lab.resolver()).await, ["127.0.20.1".parse::<IpAddr>().unwrap()]);
}

#[tokio::test]
async fn a_malformed_report_is_refused_with_the_reason() {
    let up = TestUpstream::start("gw").await;
    let lab = Lab::start(&[up.addr(), up.addr(), up.addr()]).await;
    let url = format!("http://{}/v1/observations", lab.director.http_addr().unwrap());
    let r = lab.http.post(&url).body("{\"checker\": 1}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with("invalid report"), "{body}");
    let r = lab
        .http
        .post(&url)
        .body(r#"{"checker": "", "region": "x", "observations": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
