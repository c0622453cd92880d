//! Node state, leases, restarts, backups.

use std::time::Duration;

use meridian_sync::protocol::Kind;
use serde_json::json;

use crate::harness::{ADMIN, Ctl, Node, config};

#[tokio::test]
async fn a_nack_is_recorded_and_shown_in_status() {
    let ctl = Ctl::start("").await;
    let mut node = ctl.node("gw-1", "r1").await;
    ctl.apply(ADMIN, &config(1)).await;
    let s1 = node.snapshot(Kind::Config).await;
    node.ack(&s1, None).await;
    ctl.apply(ADMIN, &config(2)).await;
    let s2 = node.snapshot(Kind::Config).await;
    assert_eq!(node.ack(&s2, Some("listeners[0].tls.certificates[0].cert: no such file")).await, 200);
    let st = ctl.node_status("gw-1").await;
    let k = &st["kinds"]["config"];
    assert_eq!((k["applied"].as_u64(), k["lag"].as_u64()), (Some(1), Some(1)), "{st}");
    assert_eq!(k["hash"], s1.hash.as_str());
    assert_eq!(k["nack"]["version"], 2);
    assert!(k["nack"]["error"].as_str().unwrap().contains("no such file"));
    // A token is bound to its node: no acks or streams as someone else.
    let mut other = Node::connect(&ctl.url, &node.token, "gw-1", "r1").await.unwrap();
    other.id = "gw-9".into();
    assert_eq!(other.ack(&s2, None).await, 403);
    assert_eq!(Node::connect(&ctl.url, &node.token, "gw-9", "r1").await.err(), Some(403));
    assert_eq!(Node::connect(&ctl.url, ADMIN, "gw-1", "r1").await.err(), Some(403));
    assert_eq!(Node::connect(&ctl.url, "nope", "gw-1", "r1").await.err(), Some(401));
}

#[tokio::test]
async fn a_node_that_goes_away_loses_its_lease_and_an_expected_node_never_seen_is_missing() {
    let ctl = Ctl::start("lease: 1s\nexpected_nodes:\n  r1: [gw-1, gw-3]\n").await;
    let node = ctl.node("gw-1", "r1").await;
    let st = ctl.node_status("gw-1").await;
    assert_eq!(
        (st["live"].as_bool(), st["missing"].as_bool(), st["expected"].as_bool()),
        (Some(true), Some(false), Some(true))
    );
    let never = ctl.node_status("gw-3").await;
    assert_eq!((never["live"].as_bool(), never["missing"].as_bool()), (Some(false), Some(true)), "{never}");
    assert!(never.get("last_seen_ms").is_none());
    drop(node);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = ctl.node_status("gw-1").await;
        if st["live"] == false {
            assert_eq!(st["missing"], true);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still live: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_restart_keeps_versions_tokens_nodes_and_audit() {
    let mut ctl = Ctl::start("").await;
    let viewer = ctl.token(json!({"name": "vera", "role": "viewer"})).await;
    let mut node = ctl.node("gw-1", "r1").await;
    ctl.apply(ADMIN, &config(1)).await;
    let s = node.snapshot(Kind::Config).await;
    ctl.apply(ADMIN, &config(2)).await;
    let s2 = node.snapshot(Kind::Config).await;
    node.ack(&s2, None).await;
    drop(node);
    let hash = ctl.get("/v1/config").await["hash"].clone();
    ctl.stop().await;
    let tmp = ctl.dir.clone();
    let ctl2 = Ctl::start_in(tmp, "").await;
    let cur = ctl2.get("/v1/config").await;
    assert_eq!((cur["version"].as_u64(), &cur["hash"]), (Some(2), &hash));
    assert_eq!(ctl2.call(&viewer, "GET", "/v1/status", &[], None).await.0, 200);
    assert_eq!(ctl2.node_status("gw-1").await["kinds"]["config"]["applied"], 2);
    assert!(ctl2.get("/v1/audit").await["entries"].as_array().unwrap().len() >= 3);
    // Versions keep growing after the restart; the stream starts with the stored current one.
    let mut node = Node::connect(
        &ctl2.url,
        &ctl2.token(json!({"name": "n", "node": "gw-1", "region": "r1"})).await,
        "gw-1",
        "r1",
    )
    .await
    .unwrap();
    assert_eq!(node.snapshot(Kind::Config).await.version, 2);
    assert_eq!(s.version, 1);
    assert_eq!(ctl2.apply(ADMIN, &config(3)).await.1["version"], 3);
    // Another deployment's id cannot open the file.
    let other = meridian_control::store::RedbStore::open(&ctl2.dir.join("other.redb"), "a");
    assert!(other.is_ok());
    drop(other);
    assert!(meridian_control::store::RedbStore::open(&ctl2.dir.join("other.redb"), "b").is_err());
}

#[tokio::test]
async fn export_import_round_trip_and_an_older_backup_is_refused() {
    let ctl = Ctl::start("").await;
    ctl.apply(ADMIN, &config(1)).await;
    ctl.apply(ADMIN, &config(2)).await;
    ctl.call(ADMIN, "PUT", "/v1/drains/r2", &[], None).await;
    let backup = ctl.get("/v1/export").await;
    assert_eq!(backup["history"]["config"].as_array().unwrap().len(), 2);
    // The config part is the YAML apply takes: same hash.
    let yaml = backup["config_yaml"].as_str().unwrap();
    assert_eq!(
        meridian_model::parse_global(yaml).unwrap().hash(),
        ctl.get("/v1/config").await["hash"].as_str().unwrap()
    );

    let fresh = Ctl::start("").await;
    let (s, v) = fresh.call(ADMIN, "POST", "/v1/import", &[], Some(backup.to_string())).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["versions"], json!({"config": 2, "controls": 0, "drains": 1}));
    assert_eq!(fresh.get("/v1/config").await["hash"], ctl.get("/v1/config").await["hash"]);
    assert_eq!(
        fresh.get("/v1/config/history").await["versions"],
        ctl.get("/v1/config/history").await["versions"]
    );
    assert_eq!(fresh.get("/v1/drains").await["drains"]["regions"], json!(["r2"]));
    // Importing the same backup again changes nothing.
    assert_eq!(fresh.call(ADMIN, "POST", "/v1/import", &[], Some(backup.to_string())).await.0, 200);

    // The source moves on; its old backup cannot take it back to a lower version.
    ctl.apply(ADMIN, &config(3)).await;
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/import", &[], Some(backup.to_string())).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("VersionRegression")), "{v}");
    assert_eq!(ctl.get("/v1/config").await["version"], 3);
    // As a new version, it is a rollback: version 4 with the backup's content.
    let (s, v) = ctl.call(ADMIN, "POST", "/v1/import?mode=new_version", &[], Some(backup.to_string())).await;
    assert_eq!((s, v["versions"]["config"].as_u64()), (200, Some(4)), "{v}");
    assert!(ctl.get("/v1/config").await["yaml"].as_str().unwrap().contains("127.0.0.1:2"));
    // A tampered backup is refused.
    let mut bad = backup.clone();
    bad["history"]["config"][1]["hash"] = json!("00");
    assert_eq!(fresh.call(ADMIN, "POST", "/v1/import", &[], Some(bad.to_string())).await.0, 422);
}
