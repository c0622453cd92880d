//! Staged rollout: a target config version per region (pins), on the embedded store and shared
//! through etcd.

use std::sync::Arc;

use meridian_control::store::{RedbStore, RolloutRecord, Store, StoreError};
use meridian_sync::protocol::{Kind, Push};
use meridian_testkit::etcd::Etcd;
use serde_json::{Value, json};

use crate::harness::{ADMIN, Ctl, Node, config, etcd_store};

fn regions(r: &str) -> String {
    format!("?regions={r}")
}

/// Plans and applies `yaml` to `regions` only.
async fn apply_to(ctl: &Ctl, yaml: &str, regions_: &str) -> (u16, Value) {
    let cur = ctl.call(ADMIN, "GET", "/v1/config", &[], None).await.1["version"].as_u64().unwrap_or(0);
    let h = [("x-meridian-expected-version", cur.to_string())];
    ctl.call(ADMIN, "POST", &format!("/v1/config{}", regions(regions_)), &h, Some(yaml.to_string())).await
}

async fn pin(ctl: &Ctl, region: &str, version: u64) -> (u16, Value) {
    let body = Some(json!({"version": version}).to_string());
    ctl.call(ADMIN, "PUT", &format!("/v1/rollout/pins/{region}"), &[], body).await
}

/// A node connected to `on` with a token made through `via`.
async fn node_on(via: &Ctl, on: &Ctl, id: &str, region: &str) -> Node {
    let token = via.token(json!({"name": id, "node": id, "region": region})).await;
    Node::connect(&on.url, &token, id, region).await.unwrap()
}

/// Takes and acks the next config snapshot; returns its version.
async fn take(node: &mut Node) -> u64 {
    let s = node.snapshot(Kind::Config).await;
    assert_eq!(node.ack(&s, None).await, 200);
    s.version
}

/// The first config version a node that connects now gets.
async fn first_config(ctl: &Ctl, id: &str, region: &str) -> u64 {
    let mut n = node_on(ctl, ctl, id, region).await;
    n.snapshot(Kind::Config).await.version
}

fn region<'a>(st: &'a Value, name: &str) -> &'a Value {
    st["regions"].as_array().unwrap().iter().find(|r| r["region"] == name).unwrap()
}

/// Reads a node's pushes until a drains snapshot (acked), returning the config versions seen
/// first.
async fn configs_before_drains(node: &mut Node) -> Vec<u64> {
    let mut seen = vec![];
    loop {
        match node.next(std::time::Duration::from_secs(10)).await {
            Some(Push::Snapshot(s)) if s.kind == Kind::Drains => {
                assert_eq!(node.ack(&s, None).await, 200);
                return seen;
            }
            Some(Push::Snapshot(s)) => seen.push(s.version),
            Some(_) => {}
            None => panic!("no drains snapshot within 10s"),
        }
    }
}

#[tokio::test]
async fn apply_to_one_region_reaches_only_its_nodes_and_promote_reaches_all() {
    let ctl = Ctl::start("expected_nodes:\n  r1: [a]\n  r2: [b]\n").await;
    let mut a = ctl.node("a", "r1").await;
    let mut b = ctl.node("b", "r2").await;
    assert_eq!(ctl.apply(ADMIN, &config(1)).await.0, 200);
    assert_eq!((take(&mut a).await, take(&mut b).await), (1, 1));

    let (s, v) = apply_to(&ctl, &config(2), "r1").await;
    assert_eq!((s, v["version"].as_u64(), &v["regions"]), (200, Some(2), &json!(["r1"])), "{v}");
    assert_eq!(take(&mut a).await, 2);
    // b gets nothing: the next push it sees is an unrelated drains change, and a node of r2
    // connecting now starts on version 1 while one of r1 starts on 2.
    assert_eq!(ctl.call(ADMIN, "PUT", "/v1/drains/r2", &[], None).await.0, 200);
    assert_eq!(configs_before_drains(&mut b).await, Vec::<u64>::new());

    // Status: b is on its region's target, so not lagging; the pin shows.
    let st = ctl.get("/v1/status").await;
    assert_eq!(st["pins"], json!({"r2": 1}), "{st}");
    let bs = ctl.node_status("b").await;
    let k = &bs["kinds"]["config"];
    assert_eq!((k["applied"].as_u64(), k["target"].as_u64(), k["lag"].as_u64()), (Some(1), Some(1), Some(0)));
    assert_eq!(bs["stale"], false, "{bs}");
    assert_eq!(ctl.node_status("a").await["kinds"]["config"]["target"], 2);
    let ro = ctl.get("/v1/rollout").await;
    assert_eq!(ro["latest"], 2, "{ro}");
    let (r1, r2) = (region(&ro, "r1"), region(&ro, "r2"));
    assert_eq!((r1["target"].as_u64(), r1.get("pinned")), (Some(2), None), "{ro}");
    assert_eq!((r2["target"].as_u64(), r2["pinned"].as_u64()), (Some(1), Some(1)), "{ro}");
    assert_eq!(
        (r2["nodes"].as_u64(), r2["on_target"].as_u64(), r2["lag"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(first_config(&ctl, "b2", "r2").await, 1);
    assert_eq!(first_config(&ctl, "a2", "r1").await, 2);

    // A plain apply leaves the pin: r2 stays held.
    assert_eq!(ctl.apply(ADMIN, &config(3)).await.1["version"], 3);
    assert_eq!(take(&mut a).await, 3);
    assert_eq!(first_config(&ctl, "b3", "r2").await, 1);

    // Promote: every region follows the newest.
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/rollout/promote", &[], None).await;
    assert_eq!((s, v["changed"].as_bool(), &v["pins"]), (200, Some(true), &json!({})), "{v}");
    assert_eq!(take(&mut b).await, 3);
    assert_eq!(region(&ctl.get("/v1/rollout").await, "r2")["target"], 3);
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/rollout/promote", &[], None).await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(false)));

    // Every change is audited, staged applies with their regions.
    let audit = ctl.get("/v1/audit").await.to_string();
    assert!(audit.contains("config regions r1") && audit.contains("rollout promote all"), "{audit}");
    let viewer = ctl.token(json!({"name": "v", "role": "viewer"})).await;
    assert_eq!(ctl.call(&viewer, "POST", "/v1/rollout/promote", &[], None).await.0, 403);
    assert_eq!(ctl.call(&viewer, "GET", "/v1/rollout", &[], None).await.0, 200);
}

#[tokio::test]
async fn pins_only_move_forward_and_rollback_takes_one_region_back() {
    let ctl = Ctl::start("").await;
    ctl.apply(ADMIN, &config(1)).await;
    ctl.apply(ADMIN, &config(2)).await;
    // Hold r2 on 2; version 3 goes to r1 only.
    assert_eq!(pin(&ctl, "r2", 2).await.0, 200);
    ctl.apply(ADMIN, &config(3)).await;
    assert_eq!(first_config(&ctl, "b1", "r2").await, 2);
    // Below what the region is on: refused, pointing at rollback.
    let (s, v) = pin(&ctl, "r2", 1).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("VersionRegression")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("meridian rollback 1 --regions r2"), "{v}");
    let (s, v) = pin(&ctl, "r9", 3).await;
    assert_eq!((s, v["code"].as_str()), (400, Some("BadRequest")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("r9") && v["message"].as_str().unwrap().contains("r1, r2")
    );
    assert_eq!(pin(&ctl, "r2", 7).await.0, 404);
    let (s, v) = ctl.call(ADMIN, "PUT", "/v1/rollout/pins/r2", &[], Some("{}".into())).await;
    assert_eq!(s, 400, "{v}");
    // Forward to 3: r2's nodes get 3.
    assert_eq!(pin(&ctl, "r2", 3).await.0, 200);
    assert_eq!(first_config(&ctl, "b2", "r2").await, 3);

    // r1 back to version 1's content, alone: a new version 4 for r1; r2 stays on 3.
    let (s, v) = ctl.call(ADMIN, "POST", &format!("/v1/config/rollback/1{}", regions("r1")), &[], None).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(4)), "{v}");
    let ro = ctl.get("/v1/rollout").await;
    assert_eq!(
        (region(&ro, "r1")["target"].as_u64(), region(&ro, "r2")["target"].as_u64()),
        (Some(4), Some(3))
    );
    let mut a = node_on(&ctl, &ctl, "a1", "r1").await;
    let s4 = a.snapshot(Kind::Config).await;
    assert_eq!((s4.version, s4.hash.as_str()), (4, meridian_model::parse_global(&config(1)).unwrap().hash()));

    // Unknown regions in a staged apply: refused with the config's regions, nothing stored.
    let (s, v) = apply_to(&ctl, &config(5), "r1,nowhere").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("BadRequest")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("nowhere"), "{v}");
    assert_eq!(ctl.get("/v1/config").await["version"], 4);
    let (s, _) = ctl.call(ADMIN, "POST", "/v1/rollout/promote?regions=nowhere", &[], None).await;
    assert_eq!(s, 400);
    // Promote one region only.
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/rollout/promote?regions=r2", &[], None).await;
    assert_eq!((s, &v["pins"]), (200, &json!({})), "{v}");
    assert_eq!(first_config(&ctl, "b3", "r2").await, 4);
}

#[tokio::test]
async fn concurrent_rollout_changes_conflict_cleanly() {
    let ctl = Ctl::start("").await;
    ctl.apply(ADMIN, &config(1)).await;
    ctl.apply(ADMIN, &config(2)).await;
    let rv = ctl.get("/v1/rollout").await["rollout_version"].as_u64().unwrap();
    let h = [("x-meridian-expected-version", rv.to_string())];
    let body = |v: u64| Some(json!({"version": v}).to_string());
    let (a, b) = tokio::join!(
        ctl.call(ADMIN, "PUT", "/v1/rollout/pins/r1", &h, body(2)),
        ctl.call(ADMIN, "PUT", "/v1/rollout/pins/r2", &h, body(2)),
    );
    let mut st = [a.0, b.0];
    st.sort();
    assert_eq!(st, [200, 409], "{a:?} {b:?}");
    let lost = if a.0 == 409 { a.1 } else { b.1 };
    assert_eq!(
        (lost["code"].as_str(), lost["current_rollout_version"].as_u64()),
        (Some("Conflict"), Some(rv + 1))
    );
    assert_eq!(ctl.get("/v1/rollout").await["rollout_version"], rv + 1);
    ctl.call(ADMIN, "POST", "/v1/rollout/promote", &[], None).await;

    // Two staged applies planned on the same version: one lands; the pins are the winner's.
    let (c3, c4) = (config(3), config(4));
    let h = [("x-meridian-expected-version", "2".to_string())];
    let path = format!("/v1/config{}", regions("r1"));
    let (a, b) = tokio::join!(
        ctl.call(ADMIN, "POST", &path, &h, Some(c3)),
        ctl.call(ADMIN, "POST", &path, &h, Some(c4))
    );
    let mut st = [a.0, b.0];
    st.sort();
    assert_eq!(st, [200, 409], "{a:?} {b:?}");
    let ro = ctl.get("/v1/rollout").await;
    assert_eq!(ro["latest"], 3, "{ro}");
    assert_eq!(
        (region(&ro, "r1")["target"].as_u64(), region(&ro, "r2")["target"].as_u64()),
        (Some(3), Some(2)),
        "{ro}"
    );
}

#[tokio::test]
async fn the_rollout_survives_a_restart() {
    let mut ctl = Ctl::start("").await;
    ctl.apply(ADMIN, &config(1)).await;
    assert_eq!(apply_to(&ctl, &config(2), "r2").await.0, 200);
    ctl.stop().await;
    let ctl2 = Ctl::start_in(ctl.dir.clone(), "").await;
    assert_eq!(ctl2.get("/v1/status").await["pins"], json!({"r1": 1}));
    assert_eq!(first_config(&ctl2, "a", "r1").await, 1);
    assert_eq!(first_config(&ctl2, "b", "r2").await, 2);
}

/// The store side of the rollout, on any backend: compare-and-swap, no gaps.
async fn rollout_contract(s: &dyn Store) {
    assert_eq!(s.rollout().await.unwrap(), None);
    let rec = |version: u64, r: &str| RolloutRecord {
        version,
        pins: [(r.to_string(), version)].into(),
        created_at_ms: 1,
        author: "t".into(),
        comment: String::new(),
    };
    s.set_rollout(0, rec(1, "a")).await.unwrap();
    assert_eq!(s.set_rollout(0, rec(1, "b")).await, Err(StoreError::Conflict { current: 1 }));
    assert!(matches!(s.set_rollout(1, rec(3, "b")).await, Err(StoreError::Invalid(_))));
    s.set_rollout(1, rec(2, "b")).await.unwrap();
    assert_eq!(s.rollout().await.unwrap(), Some(rec(2, "b")));
}

#[tokio::test]
async fn both_stores_keep_the_rollout_contract() {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("c.redb"), "d").unwrap();
    rollout_contract(&redb).await;
    let etcd = Etcd::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    let o = meridian_control::store::EtcdOptions {
        endpoints: vec![etcd.endpoint()],
        prefix: "/rollout/".into(),
        timeout: std::time::Duration::from_secs(2),
    };
    let s: Arc<dyn Store> = Arc::new(meridian_control::store::EtcdStore::connect(&o, "d").await.unwrap());
    rollout_contract(&*s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_etcd_share_the_rollout() {
    let etcd = Etcd::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    let store = etcd_store(&etcd.endpoint(), "/meridian/test/");
    let (a, b) = (Ctl::start_on(&store, "").await, Ctl::start_on(&store, "").await);
    let mut n1 = node_on(&a, &b, "n1", "r1").await;
    let mut n2 = node_on(&a, &b, "n2", "r2").await;
    assert_eq!(a.apply(ADMIN, &config(1)).await.0, 200);
    assert_eq!((take(&mut n1).await, take(&mut n2).await), (1, 1));

    // Staged through A: B's r1 node gets it; by then B has the pin, so its r2 nodes do not.
    assert_eq!(apply_to(&a, &config(2), "r1").await.0, 200);
    assert_eq!(take(&mut n1).await, 2);
    let ro = b.get("/v1/rollout").await;
    assert_eq!(
        (region(&ro, "r2")["pinned"].as_u64(), region(&ro, "r2")["lag"].as_u64()),
        (Some(1), Some(0)),
        "{ro}"
    );
    assert_eq!(first_config(&b, "n3", "r2").await, 1);

    // Promoted through B: A's view and B's nodes follow.
    let (s, v) = b.call(ADMIN, "POST", "/v1/rollout/promote?regions=r2", &[], None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(take(&mut n2).await, 2);
    assert_eq!(a.get("/v1/status").await["pins"], json!({}));

    // Pins through both instances on the same rollout version: one conflict.
    let rv = a.get("/v1/rollout").await["rollout_version"].as_u64().unwrap();
    let h = [("x-meridian-expected-version", rv.to_string())];
    let body = Some(json!({"version": 2}).to_string());
    let (x, y) = tokio::join!(
        a.call(ADMIN, "PUT", "/v1/rollout/pins/r1", &h, body.clone()),
        b.call(ADMIN, "PUT", "/v1/rollout/pins/r2", &h, body.clone()),
    );
    let mut st = [x.0, y.0];
    st.sort();
    assert_eq!(st, [200, 409], "{x:?} {y:?}");
}
