//! End-to-end tests of the `meridian` binary: real processes on loopback, run one at a time
//! where they start several processes (they share the machine's two cores).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use meridian_testkit::TestUpstream;
use meridian_testkit::proc::{ChildGuard, free_addr, peak_rss_kib, wait_for_http_ok, wait_for_tcp};

#[path = "cli/checker.rs"]
mod checker;
#[path = "cli/checkercontrol.rs"]
mod checkercontrol;
#[path = "cli/control.rs"]
mod control;
#[path = "cli/dnscontrol.rs"]
mod dnscontrol;
#[path = "cli/drill.rs"]
mod drill;
#[path = "cli/failover.rs"]
mod failover;
#[path = "cli/lab.rs"]
mod lab;
#[path = "cli/labdns.rs"]
mod labdns;
#[path = "cli/plane.rs"]
mod plane;

/// End-to-end tests that start processes take this lock, so they run serially.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meridian")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> (i32, String, String) {
    run_env(args, &[])
}

/// Runs the binary from the repository root with extra environment variables; returns (exit
/// code, stdout, stderr).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    run_in(&repo(), args, env)
}

/// Runs the binary in `dir` with extra environment variables.
fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).envs(env.iter().copied()).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The admin token of the control planes these tests start.
const ADMIN_TOKEN: &str = "cli-admin-token";

/// Runs a client command in `dir` against the control plane at `server`, as its admin.
fn admin_client(dir: &Path, server: &str, args: &[&str]) -> (i32, String, String) {
    run_in(dir, args, &[("MERIDIAN_SERVER", server), ("MERIDIAN_TOKEN", ADMIN_TOKEN)])
}

/// A port free for both TCP and UDP on `ip`.
fn free_tcp_udp(ip: &str) -> std::net::SocketAddr {
    loop {
        let t = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
        let a = t.local_addr().unwrap();
        if std::net::UdpSocket::bind(a).is_ok() {
            return a;
        }
    }
}

/// Writes `admin.token` and a `control.yaml` (deployment `lab`, embedded store) in `dir`,
/// starts `meridian control` there on a free port of `ip` and waits until it listens; returns
/// the process and its URL.
async fn start_control(dir: &Path, ip: &str) -> (ChildGuard, String) {
    let addr = free_tcp_udp(ip);
    std::fs::write(dir.join("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let yaml = format!("listen: {addr}\ndeployment: lab\nadmin_token_file: admin.token\n");
    std::fs::write(dir.join("control.yaml"), yaml).unwrap();
    let control = ChildGuard::spawn(
        Command::new(bin()).args(["control", "-c", "control.yaml"]).current_dir(dir).stdout(Stdio::null()),
    )
    .unwrap();
    wait_for_tcp(addr, Duration::from_secs(20)).await.unwrap();
    (control, format!("http://{addr}"))
}

#[test]
fn version_and_help_on_every_subcommand() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("meridian {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["gateway", "up", "lab", "drill", "validate", "schema", "demo-upstream"] {
        assert!(out.contains(sub), "{sub} missing from --help");
        let (code, out, err) = run(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub} --help: {err}");
        assert!(out.contains("Usage: meridian"), "{sub}: {out}");
    }
}

#[test]
fn validate_accepts_the_examples_and_lists_every_error_with_its_path() {
    for f in ["examples/quickstart.yaml", "examples/multi-region.yaml", "examples/quickstart.bootstrap.yaml"]
    {
        let (code, out, err) = run(&["validate", "-f", f]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "regions:\n  - name: local\nservices:\n  - name: orders\n    endpoints: { local: [{ address: \"nope\" }] }\n\
         routes:\n  - name: a\n    service: orders\n  - name: b\n    service: ordrs\n    policies: [missing]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("routes[1].service: unknown service \"ordrs\""), "{err}");
    assert!(err.contains("routes[1].policies[0]"), "{err}");
    assert!(err.contains("services[0].endpoints.local[0].address"), "{err}");
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "regions:\n  - name: local\n    colour: blue\n").unwrap();
    let (code, _, err) = run(&["validate", "-f", unknown.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn schema_command_matches_the_committed_schemas() {
    let (code, out, _) = run(&["schema"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(repo().join("schema/global.schema.json")).unwrap();
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(a, b, "run `meridian schema --write schema/`");
    let (code, out, _) = run(&["schema", "--bootstrap"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(repo().join("schema/bootstrap.schema.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::from_str::<serde_json::Value>(&committed).unwrap()
    );
}

/// The layer of each crate (DESIGN.md §5); a crate may depend only on lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("meridian-core", 0),
    ("meridian-model", 1),
    ("meridian-health", 2),
    ("meridian-sync", 2),
    ("meridian-gateway", 3),
    ("meridian-director", 3),
    ("meridian-control", 3),
    ("meridian-lab", 3),
    ("meridian", 4),
];

#[test]
fn no_crate_depends_on_a_higher_layer() {
    let layer = |name: &str| LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if name == "meridian-testkit" {
            // The dev layer: used only as a dev-dependency, never by production code.
            continue;
        }
        let mine = layer(&name).unwrap_or_else(|| panic!("crate {name} has no layer in LAYERS"));
        let mut section = String::new();
        for line in manifest.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                section = t.to_string();
                continue;
            }
            let Some(dep) = t.split(['=', '.', ' ']).next().filter(|d| d.starts_with("meridian")) else {
                continue;
            };
            if section == "[dev-dependencies]" && dep == "meridian-testkit" {
                continue;
            }
            assert!(
                section != "[dependencies]" || dep != "meridian-testkit",
                "{name} depends on the testkit"
            );
            let theirs = layer(dep).unwrap_or_else(|| panic!("{name} depends on unknown crate {dep}"));
            assert!(theirs < mine, "{name} (layer {mine}) depends on {dep} (layer {theirs}) in {section}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "too few internal dependencies found: {checked}");
}

/// Streams 2 GiB through a gateway process in each direction; its peak RSS stays under 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_two_gib_each_way_in_flat_memory() {
    let _serial = SERIAL.lock().await;
    const SIZE: u64 = 2 << 30;
    let up = TestUpstream::start("bulk").await;
    let listen = free_addr();
    let mut gw = ChildGuard::spawn(
        Command::new(bin())
            .args([
                "gateway",
                "--listen",
                &listen.to_string(),
                "--upstream",
                &up.addr().to_string(),
                "--workers",
                "1",
            ])
            .env("MERIDIAN_LOG", "warn")
            .stdin(Stdio::null()),
    )
    .unwrap();
    wait_for_tcp(listen, Duration::from_secs(20)).await.unwrap();
    let c = reqwest::Client::builder().no_proxy().build().unwrap();

    // Download.
    let mut r = c.get(format!("http://{listen}/bytes/{SIZE}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, SIZE);

    // Upload, streamed from a generator (never in memory at once).
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    let stream =
        futures_util::stream::iter((0..(SIZE >> 20)).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = c
        .post(format!("http://{listen}/sink"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["received"], SIZE);

    let peak = peak_rss_kib(gw.pid()).unwrap();
    eprintln!("gateway peak RSS after 2 GiB each way: {} KiB", peak);
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB >= 64 MiB");
    gw.terminate(Duration::from_secs(10)).unwrap();
}

/// `meridian up` starts the quickstart deployment as child processes, serves, and leaves no
/// process behind when stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_quickstart_and_stops_cleanly() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, admin, upstream) = (free_addr(), free_addr(), free_addr());
    let global = std::fs::read_to_string(repo().join("examples/quickstart.yaml"))
        .unwrap()
        .replace("127.0.0.1:9000", &upstream.to_string());
    std::fs::write(dir.path().join("global.yaml"), global).unwrap();
    let bootstrap = format!(
        "node: {{ id: gw-up-test, region: local }}\nlisteners:\n  - {{ name: public, address: \"{gw}\" }}\n\
         admin: {{ address: \"{admin}\" }}\nconfig: {{ source: file, path: {} }}\nshutdown: {{ drain_period: 0s }}\n",
        dir.path().join("global.yaml").display()
    );
    let bpath = dir.path().join("bootstrap.yaml");
    std::fs::write(&bpath, bootstrap).unwrap();
    let mut up = ChildGuard::spawn(
        Command::new(bin())
            .args(["up", "-c", bpath.to_str().unwrap(), "--upstream", &upstream.to_string()])
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stdin(Stdio::null()),
    )
    .unwrap();
    wait_for_http_ok(&format!("http://{admin}/-/ready"), Duration::from_secs(30)).await.unwrap();
    let v: serde_json::Value =
        reqwest::get(format!("http://{gw}/api/users/42")).await.unwrap().json().await.unwrap();
    assert_eq!(v["service"], "demo");
    assert_eq!(v["path"], "/api/users/42");
    assert_eq!(v["headers"]["x-gateway"], "meridian");

    let status = up.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "up exited with {status}");
    // Children are gone: their ports are closed.
    for addr in [gw, admin, upstream] {
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "{addr} still open"
        );
    }
}

#[test]
fn director_reads_a_maxmind_geo_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo.mmdb");
    let script = repo().join("crates/meridian-director/tests/data/write-geo-db.pl");
    let mut writer = Command::new("perl").arg(&script).arg(&db).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut writer.stdin.take().unwrap(), b"100.64.0.0/10 OC NZ -41.3 174.8\n")
        .unwrap();
    assert!(writer.wait().unwrap().success(), "needs Debian's libmaxmind-db-writer-perl; never skipped");
    let db = db.to_str().unwrap();
    let explain = |subnet: &str| {
        run(&[
            "director",
            "-f",
            "examples/dns.yaml",
            "explain",
            "near.api.example.com",
            "--client-subnet",
            subnet,
            "--geo-database",
            db,
        ])
    };
    // Wellington (from the database) is nearest ap-southeast-2.
    let (code, out, err) = explain("100.64.9.0/24");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.0.3.1") && out.contains("ECS scope: /10"), "{out}");
    // A missing database is an error naming it, not a silent fallback.
    let (code, _, err) = run(&["director", "-f", "examples/dns.yaml", "--geo-database", "absent.mmdb"]);
    assert_ne!(code, 0);
    assert!(err.contains("geo database absent.mmdb"), "{err}");
}
