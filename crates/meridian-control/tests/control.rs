//! The control plane end to end: real instances on loopback with temp redb files or a real
//! etcd, real HTTP clients, fake nodes reading the real stream.

use std::time::Duration;

use meridian_sync::protocol::{Kind, Push};
use serde_json::json;

#[path = "control/contract.rs"]
mod contract;
#[path = "control/etcd.rs"]
mod etcd;
#[path = "control/harness.rs"]
mod harness;
#[path = "control/rollout.rs"]
mod rollout;
#[path = "control/state.rs"]
mod state;

use harness::{ADMIN, Ctl, config};

#[tokio::test]
async fn apply_is_pushed_to_the_stream_and_acks_show_in_status() {
    let ctl = Ctl::start("").await;
    let mut node = ctl.node("gw-1", "r1").await;
    let (s, v) = ctl.apply(ADMIN, &config(1)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 1);
    let snap = node.snapshot(Kind::Config).await;
    assert_eq!((snap.version, snap.deployment.as_str()), (1, "test"));
    assert_eq!(snap.hash, v["hash"].as_str().unwrap());
    assert_eq!(snap.hash, meridian_model::parse_global(&config(1)).unwrap().hash());
    assert_eq!(node.ack(&snap, None).await, 200);
    let st = ctl.node_status("gw-1").await;
    assert_eq!(st["kinds"]["config"]["applied"], 1, "{st}");
    assert_eq!((st["live"].as_bool(), st["stale"].as_bool()), (Some(true), Some(false)), "{st}");

    let (s, v) = ctl.apply(ADMIN, &config(2)).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(2)), "{v}");
    let snap = node.snapshot(Kind::Config).await;
    assert_eq!(snap.version, 2);
    let st = ctl.node_status("gw-1").await;
    assert_eq!((st["kinds"]["config"]["lag"].as_u64(), st["stale"].as_bool()), (Some(1), Some(true)), "{st}");

    // The same content again is not a new version.
    let (s, v) = ctl.apply(ADMIN, &config(2)).await;
    assert_eq!((s, v["changed"].as_bool(), v["version"].as_u64()), (200, Some(false), Some(2)), "{v}");

    // Drains are their own kind, pushed the same way.
    let (s, v) = ctl.call(ADMIN, "PUT", "/v1/drains/orders@r1", &[], None).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)), "{v}");
    let d = node.snapshot(Kind::Drains).await;
    assert_eq!(d.content, json!({"regions": [], "services": {"r1": ["orders"]}}));
    assert_eq!(ctl.get("/v1/drains/orders@r1").await["drained"], true);
    let (s, _) = ctl.call(ADMIN, "PUT", "/v1/drains/nowhere", &[], None).await;
    assert_eq!(s, 404);
    let (s, v) = ctl.call(ADMIN, "DELETE", "/v1/drains/orders@r1", &[], None).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(2)), "{v}");
    assert_eq!(node.snapshot(Kind::Drains).await.content, json!({"regions": [], "services": {}}));

    // A late joiner gets the current snapshot of every kind first.
    let mut late = ctl.node("gw-2", "r2").await;
    let mut got = vec![];
    while got.len() < 2 {
        if let Some(Push::Snapshot(s)) = late.next(Duration::from_secs(5)).await {
            got.push((s.kind, s.version));
        }
    }
    got.sort();
    assert_eq!(got, vec![(Kind::Config, 2), (Kind::Drains, 2)]);
}

#[tokio::test]
async fn invalid_apply_is_refused_whole_with_every_path_and_nothing_changes() {
    let ctl = Ctl::start("").await;
    assert_eq!(ctl.apply(ADMIN, &config(1)).await.0, 200);
    let bad = "deployment: test\nregions:\n  - name: r1\nroutes:\n  - name: a\n    service: ordrs\n    policies: [nope]\n";
    let (s, v) = ctl.apply_at(ADMIN, bad, 1).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "InvalidConfig");
    let paths: Vec<&str> =
        v["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"routes[0].service") && paths.contains(&"routes[0].policies[0]"), "{v}");
    let (s, v) = ctl.apply_at(ADMIN, &config(2).replace("deployment: test", "deployment: other"), 1).await;
    assert_eq!((s, v["errors"][0]["path"].as_str()), (422, Some("deployment")), "{v}");
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/config/plan", &[], Some(bad.into())).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("InvalidConfig")));
    assert_eq!(ctl.get("/v1/config").await["version"], 1);
    assert_eq!(ctl.get("/v1/config/history").await["versions"].as_array().unwrap().len(), 1);
    // Missing expected version: a plain error, nothing stored.
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/config", &[], Some(config(3))).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("BadRequest")), "{v}");
}

#[tokio::test]
async fn plan_shows_the_diff_and_concurrent_applies_get_exactly_one_conflict() {
    let ctl = Ctl::start("").await;
    assert_eq!(ctl.apply(ADMIN, &config(1)).await.0, 200);
    let (s, plan) = ctl.call(ADMIN, "POST", "/v1/config/plan", &[], Some(config(2))).await;
    assert_eq!(s, 200);
    assert_eq!(plan["current_version"], 1);
    assert_eq!(plan["text"], "~ services/orders (endpoints)\n", "{plan}");
    let (c2, c3) = (config(2), config(3));
    let (a, b) = tokio::join!(ctl.apply_at(ADMIN, &c2, 1), ctl.apply_at(ADMIN, &c3, 1));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let conflict = if a.0 == 409 { a.1 } else { b.1 };
    assert_eq!(
        (conflict["code"].as_str(), conflict["current_version"].as_u64()),
        (Some("Conflict"), Some(2))
    );
    assert_eq!(ctl.get("/v1/config").await["version"], 2);
}

#[tokio::test]
async fn rollback_is_a_new_version_with_the_old_content() {
    let ctl = Ctl::start("").await;
    let (_, v1) = ctl.apply(ADMIN, &config(1)).await;
    ctl.apply(ADMIN, &config(2)).await;
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/config/rollback/1", &[], None).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(3)), "{v}");
    assert_eq!(v["hash"], v1["hash"]);
    let h = ctl.get("/v1/config/history").await;
    assert_eq!(h["versions"][0]["comment"], "rollback to version 1");
    let cur = ctl.get("/v1/config").await;
    assert!(cur["yaml"].as_str().unwrap().contains("127.0.0.1:1"), "{cur}");
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/config/rollback/9", &[], None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("NotFound")));
    let (s, _) = ctl
        .call(ADMIN, "POST", "/v1/config/rollback/1", &[("x-meridian-expected-version", "2".into())], None)
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn roles_are_enforced_and_every_write_is_audited() {
    let ctl = Ctl::start("").await;
    let viewer = ctl.token(json!({"name": "vera", "role": "viewer"})).await;
    let operator = ctl.token(json!({"name": "otto", "role": "operator"})).await;
    assert_eq!(ctl.apply(ADMIN, &config(1)).await.0, 200);
    let (s, v) = ctl.apply(&viewer, &config(2)).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("AccessDenied")), "{v}");
    assert_eq!(ctl.apply(&operator, &config(2)).await.0, 403);
    assert_eq!(ctl.call(&viewer, "GET", "/v1/status", &[], None).await.0, 200);
    assert_eq!(ctl.call(&viewer, "PUT", "/v1/drains/r2", &[], None).await.0, 403);
    assert_eq!(ctl.call(&operator, "PUT", "/v1/drains/r2", &[], None).await.0, 200);
    assert_eq!(
        ctl.call(
            &operator,
            "POST",
            "/v1/tokens",
            &[],
            Some(json!({"name": "x", "role": "admin"}).to_string())
        )
        .await
        .0,
        403
    );
    assert_eq!(ctl.call("wrong", "GET", "/v1/status", &[], None).await.0, 401);
    let (s, v) = ctl.call("", "GET", "/v1/config", &[], None).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("NotAuthorized")));

    let audit = ctl.get("/v1/audit").await;
    let lines: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {} {} {}", e["who"], e["method"], e["path"], e["status"], e["version"]))
        .collect();
    let has = |s: &str| lines.iter().any(|l| l == s);
    assert!(has("\"bootstrap\" \"POST\" \"/v1/config\" 200 1"), "{lines:#?}");
    assert!(has("\"vera\" \"POST\" \"/v1/config\" 403 null"), "{lines:#?}");
    assert!(has("\"otto\" \"PUT\" \"/v1/drains/r2\" 200 1"), "{lines:#?}");
    assert!(has("\"bootstrap\" \"POST\" \"/v1/tokens\" 201 null"), "{lines:#?}");
    assert!(audit["entries"][0]["seq"].as_u64() > audit["entries"][1]["seq"].as_u64());

    // Tokens: listed without secrets, names unique, revocable.
    let list = ctl.get("/v1/tokens").await;
    let names: Vec<&str> =
        list["tokens"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bootstrap", "otto", "vera"]);
    assert!(!list.to_string().contains(&viewer));
    let dup = json!({"name": "vera", "role": "admin"}).to_string();
    assert_eq!(ctl.call(ADMIN, "POST", "/v1/tokens", &[], Some(dup)).await.0, 409);
    assert_eq!(ctl.call(&viewer, "GET", "/v1/tokens", &[], None).await.0, 403);
    assert_eq!(ctl.call(ADMIN, "DELETE", "/v1/tokens/vera", &[], None).await.0, 200);
    assert_eq!(ctl.call(&viewer, "GET", "/v1/status", &[], None).await.0, 401);
    assert_eq!(ctl.call(ADMIN, "DELETE", "/v1/tokens/vera", &[], None).await.0, 404);
}

#[tokio::test]
async fn every_documented_path_exists_and_errors_are_json() {
    let ctl = Ctl::start("").await;
    let doc = ctl.get("/v1/openapi.json").await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if path == "/v1/openapi.json" {
            continue;
        }
        let path = path.replace("{version}", "1").replace("{target}", "r1").replace("{name}", "x");
        for method in ops.as_object().unwrap().keys() {
            let (s, v) = ctl.call("nope", &method.to_uppercase(), &path, &[], None).await;
            assert_eq!((s, v["code"].as_str()), (401, Some("NotAuthorized")), "{method} {path}: {v}");
        }
    }
    let (s, v) = ctl.call(ADMIN, "GET", "/v1/nothing", &[], None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("UnknownPath")));
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/tokens", &[], Some("{not json".into())).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("BadRequest")));
}
