//! `meridian control` and the client commands end to end: a real control process with a redb
//! file, driven by `meridian apply`/`diff`/`history`/`rollback`/`status`/`drain`/`export`/`import`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use meridian_testkit::proc::{ChildGuard, free_addr, wait_for_tcp};

use crate::{SERIAL, bin};

fn config(port: u16) -> String {
    format!(
        "deployment: cli\nregions:\n  - name: r1\nservices:\n  - name: orders\n    endpoints:\n      \
         r1: [{{address: \"127.0.0.1:{port}\"}}]\nroutes:\n  - name: root\n    service: orders\n"
    )
}

/// Writes `admin.token` and a `control.yaml` on a free address with these expected nodes (YAML
/// lines); returns the address.
fn control_files(dir: &Path, expected: &str) -> std::net::SocketAddr {
    let addr = free_addr();
    std::fs::write(dir.join("admin.token"), format!("{}\n", crate::ADMIN_TOKEN)).unwrap();
    let yaml = format!(
        "listen: {addr}\ndeployment: cli\nadmin_token_file: admin.token\nexpected_nodes:\n{expected}"
    );
    std::fs::write(dir.join("control.yaml"), yaml).unwrap();
    addr
}

fn start(dir: &Path) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(bin()).args(["control", "-c", "control.yaml"]).current_dir(dir).stdout(Stdio::null()),
    )
    .unwrap()
}

#[test]
fn help_on_every_control_plane_command() {
    for sub in
        ["control", "apply", "diff", "history", "rollback", "status", "drain", "undrain", "export", "import"]
    {
        let out = Command::new(bin()).args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{sub} --help: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("Usage: meridian"), "{sub}: {text}");
    }
}

#[tokio::test]
async fn control_role_and_config_commands_end_to_end() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = control_files(dir, "  r1: [gw-1]\n");
    std::fs::write(dir.join("v1.yaml"), config(1)).unwrap();
    std::fs::write(dir.join("v2.yaml"), config(2)).unwrap();
    std::fs::write(dir.join("bad.yaml"), "deployment: cli\nroutes:\n  - name: a\n    service: ordrs\n")
        .unwrap();
    let mut control = start(dir);
    wait_for_tcp(addr, Duration::from_secs(20)).await.unwrap();
    let server = format!("http://{addr}");
    let run = |args: &[&str]| crate::admin_client(dir, &server, args);

    let (code, out, err) = run(&["diff", "-f", "v1.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ routes/root") && out.contains("+ services/orders"), "{out}");
    let (code, out, err) = run(&["apply", "-f", "v1.yaml", "-m", "first"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied version 1"), "{out}");
    let (code, out, err) = run(&["apply", "-f", "bad.yaml"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("routes[0].service: unknown service \"ordrs\""), "{err}");
    let (code, out, _) = run(&["diff", "-f", "v2.yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("~ services/orders (endpoints)"), "{out}");
    assert!(run(&["apply", "-f", "v2.yaml"]).1.contains("applied version 2"));
    let (code, out, _) = run(&["rollback", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("version 3 has the content of version 1"), "{out}");
    let (code, out, _) = run(&["history"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("VERSION") && lines.len() == 4, "{out}");
    assert!(lines[1].starts_with('3') && lines[1].contains("rollback to version 1"), "{out}");
    assert!(lines[3].contains("bootstrap") && lines[3].contains("first"), "{out}");

    // The expected node was never seen: missing; `apply --wait` times out on it.
    let (code, out, _) = run(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("config version 3") && out.contains("gw-1") && out.contains("MISSING"), "{out}");
    let (code, out, _) = run(&["status", "--json"]);
    assert_eq!(code, 0);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["nodes"][0]["missing"], true);
    let (code, _, err) = run(&["apply", "-f", "v2.yaml", "--wait", "--timeout", "300ms"]);
    assert_eq!(code, 1);
    assert!(err.contains("timeout") && err.contains("gw-1"), "{err}");

    assert!(run(&["drain", "r1"]).1.contains("r1 drained (drains version 1)"));
    assert_eq!(run(&["drain", "nope@"]).0, 1);
    let (code, backup, _) = run(&["export"]);
    assert_eq!(code, 0);
    std::fs::write(dir.join("backup.json"), &backup).unwrap();
    // An older backup cannot lower the versions; as new versions it can be restored.
    assert!(run(&["apply", "-f", "v1.yaml"]).1.contains("applied version 5"));
    let (code, _, err) = run(&["import", "backup.json"]);
    assert_eq!(code, 1);
    assert!(err.contains("VersionRegression"), "{err}");
    let (code, out, _) = run(&["import", "backup.json", "--as-new-version"]);
    assert_eq!(code, 0);
    assert!(out.contains("config version 6"), "{out}");

    // Tokens: created (shown once), listed, revoked.
    let (code, viewer, _) = run(&["token", "create", "vera", "--role", "viewer"]);
    assert_eq!(code, 0);
    let (code, out, _) = run(&["token", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("vera") && out.contains("viewer") && !out.contains(viewer.trim()), "{out}");
    assert!(run(&["token", "revoke", "vera"]).1.contains("revoked vera"));
    assert_eq!(run(&["token", "revoke", "vera"]).0, 1);

    // A wrong token is refused; a restarted process keeps everything.
    let out = Command::new(bin())
        .args(["history", "--server", &server, "--token", "wrong"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotAuthorized"));
    control.terminate(Duration::from_secs(10)).unwrap();
    let _control = start(dir);
    wait_for_tcp(addr, Duration::from_secs(20)).await.unwrap();
    let (code, out, _) = run(&["history"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 7, "{out}");
}

/// A real gateway process takes its config from a real control process; `apply --wait` returns
/// once the gateway acked, and the gateway then serves the new route.
#[tokio::test]
async fn a_gateway_serves_what_apply_wait_reports_as_acked() {
    let _serial = SERIAL.lock().await;
    let up = meridian_testkit::TestUpstream::start("orders").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = control_files(dir, "  r1: [gw-1]\n");
    let _control = start(dir);
    wait_for_tcp(addr, Duration::from_secs(20)).await.unwrap();
    let server = format!("http://{addr}");
    let run = |args: &[&str]| crate::admin_client(dir, &server, args);
    let route = |name: &str, prefix: &str| {
        format!("  - name: {name}\n    match: {{ path: {{ prefix: {prefix} }} }}\n    service: orders\n")
    };
    let cfg = |routes: &str| {
        format!(
            "deployment: cli\nregions:\n  - name: r1\nservices:\n  - name: orders\n    endpoints:\n      \
             r1: [{{address: \"{}\"}}]\nroutes:\n{routes}",
            up.addr()
        )
    };
    std::fs::write(dir.join("v1.yaml"), cfg(&route("a", "/a"))).unwrap();
    std::fs::write(dir.join("v2.yaml"), cfg(&(route("a", "/a") + &route("b", "/b")))).unwrap();
    assert!(run(&["apply", "-f", "v1.yaml"]).1.contains("applied version 1"));

    let (code, node_token, err) = run(&["token", "create", "gw-1", "--node", "gw-1", "--region", "r1"]);
    assert_eq!(code, 0, "{err}");
    assert!(node_token.starts_with("mrd_"), "{node_token}");
    let node_token = node_token.trim();
    std::fs::write(dir.join("node.token"), format!("{node_token}\n")).unwrap();
    let listen = free_addr();
    let admin = free_addr();
    std::fs::write(
        dir.join("gw.yaml"),
        format!(
            "node: {{ id: gw-1, region: r1 }}\nlisteners:\n  - name: public\n    address: {listen}\n\
             admin: {{ address: {admin} }}\nconfig: {{ source: control, urls: [\"{server}\"], token_file: node.token }}\n\
             snapshot_path: gw.snapshot\nshutdown: {{ drain_period: 0s, grace_period: 2s }}\n"
        ),
    )
    .unwrap();
    let _gw = ChildGuard::spawn(
        Command::new(bin())
            .args(["gateway", "-c", "gw.yaml", "--workers", "1"])
            .current_dir(dir)
            .env("MERIDIAN_LOG", "warn")
            .stdout(Stdio::null()),
    )
    .unwrap();
    wait_for_tcp(listen, Duration::from_secs(20)).await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{listen}{path}"));
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    // Version 1 reaches the gateway once it connects.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get("/a/x").await != 200 {
        assert!(std::time::Instant::now() < deadline, "the gateway never served version 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("/b/x").await, 404);

    let (code, out, err) = run(&["apply", "-f", "v2.yaml", "--wait", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied version 2") && out.contains("acked by 1 node(s) in"), "{out}");
    eprintln!("{}", out.lines().last().unwrap_or(""));
    assert_eq!(get("/b/x").await, 200);
    let (_, out, _) = run(&["status"]);
    let line = out.lines().find(|l| l.contains("gw-1")).unwrap_or("");
    assert!(line.contains("gateway") && line.contains(" ok ") && line.contains("2 (lag 0)"), "{out}");

    // A config this node cannot run (its region is gone): a nack with the node's reason;
    // `apply --wait` fails, the node keeps serving version 2 and status shows the nack.
    std::fs::write(dir.join("v3.yaml"), cfg(&route("a", "/a")).replace("r1", "r2")).unwrap();
    let (code, out, err) = run(&["apply", "-f", "v3.yaml", "--wait", "--timeout", "10s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("applied version 3") && err.contains("gw-1 (r1) refused version 3"), "{out}{err}");
    assert_eq!(get("/b/x").await, 200);
    let (_, out, _) = run(&["status"]);
    let line = out.lines().find(|l| l.contains("gw-1")).unwrap_or("");
    assert!(line.contains("stale") && line.contains("2 (lag 1, nack 3:"), "{out}");
}

/// Staged rollout from the command line: `apply --regions` reaches one region (and `--wait`
/// waits only for its nodes), `rollout status` shows the other held, `rollout pin` refuses to go
/// back, `rollout promote` releases every region.
#[tokio::test]
async fn staged_rollout_with_apply_regions_rollout_status_and_promote() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let addr = control_files(dir, "  r1: [gw-1]\n  r2: [gw-2]\n");
    let two = |port: u16| {
        config(port).replace("regions:\n  - name: r1\n", "regions:\n  - name: r1\n  - name: r2\n")
    };
    for v in 1..=3 {
        std::fs::write(dir.join(format!("v{v}.yaml")), two(v)).unwrap();
    }
    let _control = start(dir);
    wait_for_tcp(addr, Duration::from_secs(20)).await.unwrap();
    let server = format!("http://{addr}");
    let run = |args: &[&str]| crate::admin_client(dir, &server, args);

    assert_eq!(run(&["apply", "-f", "v1.yaml"]).0, 0);
    let (code, out, err) = run(&["apply", "-f", "v2.yaml", "--regions", "r1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied version 2") && out.contains("to regions r1 only"), "{out}");
    let (code, _, err) = run(&["apply", "-f", "v3.yaml", "--regions", "r1,nowhere"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown region(s) nowhere") && err.contains("r1, r2"), "{err}");

    let (code, out, _) = run(&["rollout", "status"]);
    assert_eq!(code, 0);
    let row = |out: &str, r: &str| out.lines().find(|l| l.starts_with(r)).unwrap_or("").to_string();
    assert!(row(&out, "r1").contains("2  ") && row(&out, "r1").contains("(newest)"), "{out}");
    assert!(row(&out, "r2").contains("pinned at 1"), "{out}");
    let (_, out, _) = run(&["rollout", "status", "--json"]);
    let ro: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((ro["latest"].as_u64(), ro["regions"][1]["target"].as_u64()), (Some(2), Some(1)), "{ro}");
    let (_, out, _) = run(&["status"]);
    assert!(out.contains("staged rollout: pinned r2 at 1"), "{out}");

    // `--wait` waits for r1's node only (it never connects here: the timeout names it alone).
    let (code, out, err) =
        run(&["apply", "-f", "v3.yaml", "--regions", "r1", "--wait", "--timeout", "300ms"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("gw-1 (r1)") && !err.contains("gw-2"), "{err}");

    // Pins never go back; rollback --regions is the way.
    let (code, _, err) = run(&["rollout", "pin", "r1", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("rollback 1 --regions r1"), "{err}");
    let (code, out, _) = run(&["rollout", "pin", "r2", "1"]);
    assert_eq!((code, out.contains("no change")), (0, true), "{out}");
    let (code, out, _) = run(&["rollout", "promote"]);
    assert_eq!(code, 0);
    assert!(out.contains("pinned: none"), "{out}");
    let (_, out, _) = run(&["rollout", "status"]);
    assert!(row(&out, "r2").contains("3  ") && row(&out, "r2").contains("(newest)"), "{out}");
    assert!(run(&["history"]).1.lines().count() == 4);
    assert_eq!(run(&["rollout", "--help"]).0, 0);
}
