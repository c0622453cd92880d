//! The store contract (`meridian_control::store`), written once and run against every backend:
//! the embedded redb store here, etcd in `etcd.rs`. Each check takes a fresh, empty store of
//! deployment `d`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use meridian_control::store::{
    AuditEntry, Nack, NodeRecord, RedbStore, Role, Store, StoreError, TokenKind, TokenRecord, VersionRecord,
};
use meridian_sync::protocol::{Ack, Kind};

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

/// Runs every check, each on a new store from `open`.
pub async fn check_all<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    versions_are_compare_and_swap_without_gaps(&*open().await).await;
    concurrent_appends_have_one_winner(open().await).await;
    a_long_append_is_kept_whole(&*open().await).await;
    acks_nacks_and_signs_of_life(&*open().await).await;
    tokens_are_kept_by_hash_and_revoked_by_name(&*open().await).await;
    audit_entries_are_numbered_newest_first(open().await).await;
    expected_nodes_are_replaced_whole(&*open().await).await;
}

async fn versions_are_compare_and_swap_without_gaps(s: &dyn Store) {
    assert_eq!(s.current(Kind::Config).await.unwrap(), None);
    s.append(Kind::Config, 0, vec![rec(1), rec(2)]).await.unwrap();
    assert_eq!(s.append(Kind::Config, 1, vec![rec(2)]).await, Err(StoreError::Conflict { current: 2 }));
    assert_eq!(s.append(Kind::Config, 0, vec![rec(1)]).await, Err(StoreError::Conflict { current: 2 }));
    assert!(matches!(s.append(Kind::Config, 2, vec![rec(4)]).await, Err(StoreError::Invalid(_))));
    assert_eq!(s.current(Kind::Config).await.unwrap().map(|r| r.version), Some(2));
    // Kinds have their own sequences.
    s.append(Kind::Drains, 0, vec![rec(1)]).await.unwrap();
    assert_eq!(s.history(Kind::Config).await.unwrap().len(), 2);
    assert_eq!(s.version(Kind::Config, 1).await.unwrap().unwrap().hash, "h1");
    assert_eq!(s.version(Kind::Config, 3).await.unwrap(), None);
    assert_eq!(s.deployment().await.unwrap(), "d");
}

async fn concurrent_appends_have_one_winner(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.append(Kind::Config, 0, vec![rec(1)]).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict { current: 1 }),
        }
    }
    assert_eq!(won, 1);
}

/// More versions than etcd takes in one transaction (an import of a long history).
async fn a_long_append_is_kept_whole(s: &dyn Store) {
    s.append(Kind::Config, 0, (1..=300).map(rec).collect()).await.unwrap();
    let h = s.history(Kind::Config).await.unwrap();
    assert_eq!(h.iter().map(|r| r.version).collect::<Vec<_>>(), (1..=300).collect::<Vec<_>>());
    assert_eq!(s.current(Kind::Config).await.unwrap().unwrap().version, 300);
    s.append(Kind::Config, 300, vec![rec(301)]).await.unwrap();
}

async fn acks_nacks_and_signs_of_life(s: &dyn Store) {
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

async fn tokens_are_kept_by_hash_and_revoked_by_name(s: &dyn Store) {
    let t = |name: &str| TokenRecord {
        name: name.into(),
        kind: TokenKind::Admin { role: Role::Viewer },
        created_at_ms: 1,
    };
    s.put_token("aa".into(), t("vera")).await.unwrap();
    s.put_token("bb".into(), t("otto")).await.unwrap();
    s.put_token("cc".into(), t("vera")).await.unwrap();
    assert_eq!(s.token("aa".into()).await.unwrap(), Some(t("vera")));
    assert_eq!(s.token("zz".into()).await.unwrap(), None);
    let names: Vec<String> = s.tokens().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["otto", "vera", "vera"]);
    assert_eq!(s.delete_tokens("vera".into()).await.unwrap(), 2);
    assert_eq!(s.delete_tokens("vera".into()).await.unwrap(), 0);
    assert_eq!(s.token("aa".into()).await.unwrap(), None);
    assert_eq!(s.tokens().await.unwrap().len(), 1);
}

async fn audit_entries_are_numbered_newest_first(s: Arc<dyn Store>) {
    let entry = |status| AuditEntry {
        seq: 0,
        at_ms: 1,
        who: "w".into(),
        method: "POST".into(),
        path: "/v1/config".into(),
        target: None,
        version: None,
        status,
    };
    // Concurrent writers each get their own number.
    let tasks: Vec<_> = (0..6u16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.audit(entry(200 + i)).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let log = s.audit_log(4).await.unwrap();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 5, 4, 3]);
    assert!(s.audit_log(0).await.unwrap().is_empty());
}

async fn expected_nodes_are_replaced_whole(s: &dyn Store) {
    assert!(s.expected().await.unwrap().is_empty());
    let mut e = BTreeMap::from([("r1".to_string(), vec!["a".to_string(), "b".to_string()])]);
    e.insert("r2".into(), vec!["c".into()]);
    s.set_expected(e.clone()).await.unwrap();
    assert_eq!(s.expected().await.unwrap(), e);
    let only = BTreeMap::from([("r3".to_string(), vec!["d".to_string()])]);
    s.set_expected(only.clone()).await.unwrap();
    assert_eq!(s.expected().await.unwrap(), only);
}

#[tokio::test]
async fn the_embedded_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    check_all(|| {
        let path = dir.path().join(format!("c{}.redb", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        async move { Arc::new(RedbStore::open(&path, "d").unwrap()) as Arc<dyn Store> }
    })
    .await;
    // The deployment id is written once; another deployment's open is refused.
    let path = dir.path().join("c0.redb");
    let e = RedbStore::open(&path, "other").err().unwrap();
    assert_eq!(e, StoreError::ForeignDeployment { stored: "d".into(), wanted: "other".into() });
}
