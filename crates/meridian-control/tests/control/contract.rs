//! The store contract, on the redb backend.

use meridian_sync::protocol::{Ack, Kind};

use super::*;

fn rec(version: u64) -> VersionRecord {
    VersionRecord {
        version,
        hash: format!("h{version}"),
        content: "{}".into(),
        created_at_ms: 1,
        author: "t".into(),
        comment: String::new(),
    }
}

#[tokio::test]
async fn versions_are_compare_and_swap_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(&dir.path().join("c.redb"), "d").unwrap();
    assert_eq!(s.current(Kind::Config).await.unwrap(), None);
    s.append(Kind::Config, 0, vec![rec(1), rec(2)]).await.unwrap();
    assert_eq!(s.append(Kind::Config, 1, vec![rec(2)]).await, Err(StoreError::Conflict { current: 2 }));
    assert!(matches!(s.append(Kind::Config, 2, vec![rec(4)]).await, Err(StoreError::Invalid(_))));
    assert_eq!(s.current(Kind::Config).await.unwrap().map(|r| r.version), Some(2));
    // Kinds have their own sequences.
    s.append(Kind::Drains, 0, vec![rec(1)]).await.unwrap();
    assert_eq!(s.history(Kind::Config).await.unwrap().len(), 2);
    assert_eq!(s.version(Kind::Config, 1).await.unwrap().unwrap().hash, "h1");
    assert_eq!(s.deployment().await.unwrap(), "d");
}

#[tokio::test]
async fn acks_nacks_and_signs_of_life() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(&dir.path().join("c.redb"), "d").unwrap();
    let seen = NodeRecord {
        id: "n".into(),
        region: "r".into(),
        role: "gateway".into(),
        last_seen_ms: 10,
        ..Default::default()
    };
    s.node_seen(seen.clone()).await.unwrap();
    let ack = |version, ok| Ack {
        node: "n".into(),
        region: "r".into(),
        kind: Kind::Config,
        version,
        hash: format!("h{version}"),
        ok,
        error: (!ok).then(|| "bad".to_string()),
    };
    s.node_ack(ack(1, true), 20).await.unwrap();
    s.node_ack(ack(2, false), 30).await.unwrap();
    let n = &s.nodes().await.unwrap()[0];
    let k = &n.kinds[&Kind::Config];
    assert_eq!((k.applied, k.hash.as_str(), n.last_seen_ms), (1, "h1", 30));
    assert_eq!(k.nack, Some(Nack { version: 2, error: "bad".into() }));
    // A later sign of life keeps the kinds; an ok ack of the refused version clears the nack.
    s.node_seen(NodeRecord { last_seen_ms: 40, ..seen }).await.unwrap();
    s.node_ack(ack(2, true), 50).await.unwrap();
    let n = &s.nodes().await.unwrap()[0];
    assert_eq!(
        (n.kinds[&Kind::Config].applied, n.kinds[&Kind::Config].nack.is_none(), n.last_seen_ms),
        (2, true, 50)
    );
}
