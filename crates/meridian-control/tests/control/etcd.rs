//! The etcd backend against a real etcd (Debian `etcd-server`; a missing binary fails, never
//! skips): the store contract, two control instances sharing one etcd, and an etcd outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meridian_control::Server;
use meridian_control::store::{EtcdOptions, EtcdStore, Store, StoreError, VersionRecord};
use meridian_sync::protocol::{Kind, Push};
use meridian_testkit::etcd::Etcd;
use serde_json::Value;

use crate::contract::check_all;
use crate::harness::{ADMIN, Ctl, Node, config, control_yaml_with, etcd_store};

/// Generous: a deadline for polls, not a timing threshold.
const DEADLINE: Duration = Duration::from_secs(30);

async fn etcd() -> Etcd {
    Etcd::start().await.unwrap_or_else(|e| panic!("{e:#}"))
}

fn opts(etcd: &Etcd, prefix: &str) -> EtcdOptions {
    EtcdOptions { endpoints: vec![etcd.endpoint()], prefix: prefix.into(), timeout: Duration::from_secs(2) }
}

/// Two instances of deployment `test` on one etcd, under one prefix.
async fn pair(etcd: &Etcd) -> (Ctl, Ctl) {
    let store = etcd_store(&etcd.endpoint(), "/meridian/test/");
    (Ctl::start_on(&store, "").await, Ctl::start_on(&store, "").await)
}

/// A node on `on` holding a node token created through `via`.
async fn node_on(via: &Ctl, on: &Ctl, id: &str) -> Node {
    let token = via.token(serde_json::json!({"name": id, "node": id, "region": "r1"})).await;
    Node::connect(&on.url, &token, id, "r1").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_keeps_the_store_contract() {
    let etcd = etcd().await;
    let n = AtomicUsize::new(0);
    check_all(|| {
        let o = opts(&etcd, &format!("/contract/{}/", n.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(EtcdStore::connect(&o, "d").await.unwrap()) as Arc<dyn Store> }
    })
    .await;
    // The deployment id is written once; another deployment under the same prefix is refused.
    let e = EtcdStore::connect(&opts(&etcd, "/contract/0/"), "other").await.err().unwrap();
    assert_eq!(e, StoreError::ForeignDeployment { stored: "d".into(), wanted: "other".into() });
    // A version over etcd's request limit (1.5 MiB) is refused by etcd, and said so.
    let s = EtcdStore::connect(&opts(&etcd, "/big/"), "d").await.unwrap();
    let big = VersionRecord {
        version: 1,
        hash: "h".into(),
        content: "x".repeat(1_800_000),
        created_at_ms: 1,
        author: "t".into(),
        comment: String::new(),
    };
    let e = s.append(Kind::Config, 0, vec![big]).await.unwrap_err();
    eprintln!("a 1.8 MB version: {e}");
    assert!(
        matches!(&e, StoreError::Backend(m) if m.contains("refused the request") && m.contains("large")),
        "{e}"
    );
    assert_eq!(s.current(Kind::Config).await.unwrap(), None);
    // Nothing listening: a clear error naming the endpoint, within the deadline.
    let gone = format!("http://{}", meridian_testkit::proc::free_addr());
    let o = EtcdOptions { endpoints: vec![gone.clone()], ..opts(&etcd, "/x/") };
    let t = Instant::now();
    let e = EtcdStore::connect(&o, "d").await.err().unwrap();
    eprintln!("unreachable etcd reported after {:?}: {e}", t.elapsed());
    assert!(matches!(&e, StoreError::Backend(m) if m.contains(&gone) && m.contains("etcd")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_versions_acks_tokens_and_conflicts() {
    let etcd = etcd().await;
    let (a, b) = pair(&etcd).await;
    let mut on_a = node_on(&b, &a, "gw-a").await;
    let mut on_b = node_on(&a, &b, "gw-b").await;

    // Applied through A, pushed by B to its node through B's etcd watch.
    let t = Instant::now();
    let (s, v) = a.apply(ADMIN, &config(1)).await;
    assert_eq!(s, 200, "{v}");
    let applied = t.elapsed();
    let snap = on_b.snapshot(Kind::Config).await;
    eprintln!("apply on A answered after {applied:?}; B's node had version 1 after {:?}", t.elapsed());
    assert_eq!((snap.version, snap.hash.as_str()), (1, v["hash"].as_str().unwrap()));
    assert_eq!(on_a.snapshot(Kind::Config).await.version, 1);

    // An ack made through A shows in B's status (and the other way round).
    assert_eq!(on_a.ack(&snap, None).await, 200);
    assert_eq!(on_b.ack(&snap, None).await, 200);
    for (ctl, id) in [(&b, "gw-a"), (&a, "gw-b")] {
        let st = ctl.node_status(id).await;
        assert_eq!(st["kinds"]["config"]["applied"], 1, "{st}");
        assert_eq!(st["live"], true, "{st}");
    }
    assert_eq!(b.get("/v1/config").await["version"], 1);

    // A drain through B reaches A's node.
    let (s, v) = b.call(ADMIN, "PUT", "/v1/drains/orders@r1", &[], None).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(on_a.snapshot(Kind::Drains).await.version, 1);

    // Two applies planned on version 1, one through each instance: exactly one conflict.
    let (c2, c3) = (config(2), config(3));
    let (ra, rb) = tokio::join!(a.apply_at(ADMIN, &c2, 1), b.apply_at(ADMIN, &c3, 1));
    let mut statuses = [ra.0, rb.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
    let conflict = if ra.0 == 409 { &ra.1 } else { &rb.1 };
    assert_eq!(conflict["current_version"], 2, "{conflict}");
    let winner = if ra.0 == 200 { &ra.1 } else { &rb.1 };
    for node in [&mut on_a, &mut on_b] {
        let s = node.snapshot(Kind::Config).await;
        assert_eq!((s.version, s.hash.as_str()), (2, winner["hash"].as_str().unwrap()));
    }

    // Propagation, measured (printed, not asserted): from sending an apply to A until the
    // version is on a node streaming from B, over 20 applies planned against the last version.
    let (mut answered, mut took) = (Vec::new(), Vec::new());
    for i in 0..20u16 {
        let t = Instant::now();
        let (s, v) = a.apply_at(ADMIN, &config(100 + i), 2 + u64::from(i)).await;
        assert_eq!(s, 200, "{v}");
        answered.push(t.elapsed());
        assert_eq!(on_b.snapshot(Kind::Config).await.version, 3 + u64::from(i));
        took.push(t.elapsed());
        assert_eq!(on_a.snapshot(Kind::Config).await.version, 3 + u64::from(i));
    }
    answered.sort();
    took.sort();
    eprintln!(
        "20 applies on A: answered in median {:?} (max {:?}); on a node of B {:?} (max {:?}) after sending",
        answered[10], answered[19], took[10], took[19]
    );

    // History and audit are shared.
    assert_eq!(a.get("/v1/config/history").await["versions"].as_array().unwrap().len(), 22);
    let audit = a.get("/v1/audit").await;
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| e["path"] == "/v1/drains/orders@r1"),
        "{audit}"
    );
}

/// Applies through `ctl` until it answers 200 (etcd coming back), within [`DEADLINE`].
async fn apply_until_ok(ctl: &Ctl, yaml: &str) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let (s, v) = ctl.apply(ADMIN, yaml).await;
        if s == 200 {
            return v;
        }
        assert!(Instant::now() < until, "apply still refused: {s} {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_refuses_writes_keeps_streams_and_recovers() {
    let mut etcd = etcd().await;
    let (a, b) = pair(&etcd).await;
    let mut on_a = node_on(&a, &a, "gw-a").await;
    let mut on_b = node_on(&a, &b, "gw-b").await;
    assert_eq!(a.apply(ADMIN, &config(1)).await.0, 200);
    assert_eq!(on_a.snapshot(Kind::Config).await.version, 1);
    assert_eq!(on_b.snapshot(Kind::Config).await.version, 1);

    etcd.stop();
    let t = Instant::now();
    let (s, v) = a.apply_at(ADMIN, &config(2), 1).await;
    eprintln!("apply with etcd down refused after {:?}: {s} {v}", t.elapsed());
    assert_eq!((s, v["code"].as_str()), (503, Some("ServiceUnavailable")), "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("etcd") && msg.contains(&etcd.endpoint()), "{msg}");
    let (s, v) = b.call(ADMIN, "PUT", "/v1/drains/r1", &[], None).await;
    assert_eq!((s, v["code"].as_str()), (503, Some("ServiceUnavailable")), "{v}");
    // A third instance does not start, and says why.
    let dir = tempfile::tempdir().unwrap();
    let cfg = control_yaml_with(dir.path(), &etcd_store(&etcd.endpoint(), "/meridian/test/"), "");
    let e = Server::start(&cfg, dir.path()).await.err().expect("started without etcd").to_string();
    assert!(e.contains("etcd") && e.contains(&etcd.endpoint()), "{e}");

    // Open streams stay open on their last snapshot: the next line is a ping, not the end.
    for node in [&mut on_a, &mut on_b] {
        let until = Instant::now() + DEADLINE;
        loop {
            match node.next(until - Instant::now()).await {
                Some(Push::Ping) => break,
                Some(Push::Snapshot(s)) => assert_eq!(s.version, 1, "{s:?}"),
                None => panic!("{}'s stream ended (or was silent) while etcd was down", node.id),
            }
        }
    }

    etcd.resume().await.unwrap();
    let t = Instant::now();
    let v = apply_until_ok(&a, &config(2)).await;
    eprintln!("apply accepted {:?} after etcd answered again", t.elapsed());
    assert_eq!(v["version"], 2, "{v}");
    let t = Instant::now();
    assert_eq!(on_a.snapshot(Kind::Config).await.version, 2);
    assert_eq!(on_b.snapshot(Kind::Config).await.version, 2);
    eprintln!("both nodes had version 2 {:?} after the apply answered", t.elapsed());
    // And the other way round: B writes, A's node follows.
    let (s, v) = b.apply(ADMIN, &config(3)).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(3)), "{v}");
    assert_eq!(on_a.snapshot(Kind::Config).await.version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_etcd_is_answered_within_the_deadline_and_the_watch_recovers() {
    let etcd = etcd().await;
    let (a, b) = pair(&etcd).await;
    let mut on_b = node_on(&a, &b, "gw-b").await;
    assert_eq!(a.apply(ADMIN, &config(1)).await.0, 200);
    assert_eq!(on_b.snapshot(Kind::Config).await.version, 1);

    // Frozen, not gone: connections stay open and nothing answers.
    etcd.pause().unwrap();
    let t = Instant::now();
    let (s, v) = a.apply_at(ADMIN, &config(2), 1).await;
    eprintln!("apply with etcd hung refused after {:?}: {s} {v}", t.elapsed());
    assert_eq!((s, v["code"].as_str()), (503, Some("ServiceUnavailable")), "{v}");
    assert!(v["message"].as_str().unwrap().contains(&etcd.endpoint()), "{v}");
    etcd.unpause().unwrap();

    let v = apply_until_ok(&a, &config(2)).await;
    let t = Instant::now();
    assert_eq!(on_b.snapshot(Kind::Config).await.version, v["version"].as_u64().unwrap());
    eprintln!("B's node had version {} {:?} after the apply answered", v["version"], t.elapsed());
}
