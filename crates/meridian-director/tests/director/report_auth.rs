//! Checkers' reports need the report token: a director with a token file (two tokens, as
//! during a rotation) refuses reports without one or with a wrong one (401, counted on
//! `/metrics`) and takes reports with either token; a real checker task sends its token, and
//! one a director refuses still reports to the others. Polls with generous deadlines; no timing
//! thresholds.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_director::meridian_health::{CheckerConfig, CheckerNode, run_checker};
use meridian_director::report_auth::ReportTokens;
use meridian_director::{Director, Options, Source};
use meridian_testkit::TestUpstream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);

fn config(gateway: SocketAddr) -> String {
    format!(
        "regions:\n  - {{ name: us-east-1, public_addresses: [127.0.30.1] }}\n  \
         - {{ name: eu-west-1, public_addresses: [127.0.31.1] }}\n\
         dns:\n  zones:\n    - name: api.example.com.\n      \
         ns: [{{ name: ns1.api.example.com., address: 127.0.30.53 }}]\n  record_sets:\n    \
         - name: failover.api.example.com.\n      type: A\n      \
         policy: {{ kind: failover, primary: us-east-1, secondary: eu-west-1 }}\n  \
         health:\n    interval: 100ms\n    timeout: 100ms\n    checks:\n      \
         - {{ name: us-east-1, region: us-east-1, address: \"{gateway}\", path: /-/ready }}\n"
    )
}

struct Running {
    director: Director,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A director reading `config`; with `tokens`, from a token file of that text.
async fn director(config: &str, tokens: Option<&str>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("global.yaml");
    std::fs::write(&file, config).unwrap();
    let report_tokens = tokens.map(|text| {
        let path = dir.path().join("report.token");
        std::fs::write(&path, text).unwrap();
        ReportTokens::load(&path).unwrap()
    });
    let stop = CancellationToken::new();
    let opts = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        source: Source::File { path: file, poll_interval: Duration::from_millis(100) },
        tcp_timeout: Duration::from_secs(5),
        http: Some("127.0.0.1:0".parse().unwrap()),
        geo_database: None,
        report_tokens,
    };
    let director = Director::start(opts, stop.clone()).await.unwrap();
    Running { director, stop, _dir: dir }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.director.http_addr().unwrap())
    }

    async fn health(&self) -> serde_json::Value {
        reqwest::get(self.url("/v1/health")).await.unwrap().json().await.unwrap()
    }

    async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap()
    }

    /// The checkers with an observation of the check `us-east-1`.
    async fn reporters(&self) -> Vec<String> {
        let h = self.health().await;
        let check = h["checks"].as_array().unwrap().iter().find(|c| c["name"] == "us-east-1").unwrap();
        check["vantage_points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["checker"].as_str().unwrap().into())
            .collect()
    }

    /// Polls until `checker` has reported.
    async fn until_reported_by(&self, checker: &str) {
        let end = Instant::now() + DEADLINE;
        loop {
            let seen = self.reporters().await;
            if seen.iter().any(|c| c == checker) {
                return;
            }
            assert!(Instant::now() < end, "no report from {checker} within {DEADLINE:?}: {seen:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn report(checker: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    serde_json::json!({
        "checker": checker,
        "region": "eu-west-1",
        "observations": [{"check": "us-east-1", "healthy": true, "consecutive_passes": 1,
            "consecutive_failures": 0, "observed_at_ms": now as u64}],
    })
    .to_string()
}

fn refused_total(metrics: &str) -> &str {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("meridian_director_reports_refused_total{reason=\"unauthorized\"} "))
        .unwrap_or_else(|| panic!("no refused counter in /metrics:\n{metrics}"));
    line.rsplit(' ').next().unwrap()
}

#[tokio::test]
async fn reports_need_one_of_the_directors_tokens() {
    let up = TestUpstream::start("gw").await;
    let d = director(&config(up.addr()), Some("# new token first while rotating\nnew-token\n\nold-token\n"))
        .await;
    let http = reqwest::Client::new();
    let post = |auth: Option<&str>, checker: &str| {
        let mut r = http.post(d.url("/v1/observations")).body(report(checker));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    assert_eq!(refused_total(&d.metrics().await), "0");

    let none = post(None, "forger-1").await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = none.json().await.unwrap();
    assert_eq!(body["code"], "Unauthorized", "{body}");
    assert!(body["message"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");

    let wrong = post(Some("Bearer newer-token"), "forger-2").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "Unauthorized", "{body}");
    // Not a bearer token at all.
    assert_eq!(post(Some("new-token"), "forger-3").await.unwrap().status(), 401);
    assert_eq!(refused_total(&d.metrics().await), "3");

    // The second token of the file (the old one, still accepted during a rotation).
    let old = post(Some("Bearer old-token"), "checker-eu-west-1").await.unwrap();
    assert_eq!(old.status(), 204);
    assert_eq!(d.reporters().await, ["checker-eu-west-1"], "refused reports never count");
    assert_eq!(post(Some("Bearer new-token"), "checker-eu-west-2").await.unwrap().status(), 204);
    let mut seen = d.reporters().await;
    seen.sort();
    assert_eq!(seen, ["checker-eu-west-1", "checker-eu-west-2"]);
    assert_eq!(refused_total(&d.metrics().await), "3");
}

#[tokio::test]
async fn a_director_without_tokens_takes_every_report_as_before() {
    let up = TestUpstream::start("gw").await;
    let d = director(&config(up.addr()), None).await;
    let r =
        reqwest::Client::new().post(d.url("/v1/observations")).body(report("anyone")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.reporters().await, ["anyone"]);
    assert_eq!(refused_total(&d.metrics().await), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkers_send_their_token_and_a_refusal_does_not_stop_the_other_directors() {
    let up = TestUpstream::start("gw").await;
    let yaml = config(up.addr());
    let authenticated = director(&yaml, Some("new-token\nold-token\n")).await;
    let open = director(&yaml, None).await;
    let dir = tempfile::tempdir().unwrap();
    let global = dir.path().join("global.yaml");
    std::fs::write(&global, &yaml).unwrap();
    let checker = |id: &str, token: Option<&str>| {
        let c = CheckerConfig {
            node: CheckerNode { id: id.into(), region: "eu-west-1".into(), source_address: None },
            config: global.clone(),
            directors: vec![authenticated.url(""), open.url("")],
            report_token_file: None,
        };
        tokio::spawn(run_checker(c, token.map(String::from)))
    };
    let good = checker("chk-good", Some("old-token"));
    let bad = checker("chk-bad", Some("stolen-long-ago"));
    let none = checker("chk-none", None);
    authenticated.until_reported_by("chk-good").await;
    // The refused checkers' reports reach the director that takes them.
    open.until_reported_by("chk-bad").await;
    open.until_reported_by("chk-none").await;
    assert_eq!(authenticated.reporters().await, ["chk-good"]);
    assert_ne!(refused_total(&authenticated.metrics().await), "0");
    for c in [good, bad, none] {
        c.abort();
    }
}
