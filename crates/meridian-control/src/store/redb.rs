//! The embedded backend: one redb file (crash-safe: copy-on-write B-trees, a commit is durable
//! once `commit` returns). redb allows one writer at a time, which is what makes the
//! compare-and-swap on versions a plain read-then-write inside one write transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use meridian_sync::protocol::{Ack, Kind};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AuditEntry, NodeRecord, RolloutRecord, Store, StoreError, StoreFuture, TokenRecord, VersionRecord,
    apply_ack,
};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const CONFIG: TableDefinition<u64, &[u8]> = TableDefinition::new("versions_config");
const DRAINS: TableDefinition<u64, &[u8]> = TableDefinition::new("versions_drains");
const CONTROLS: TableDefinition<u64, &[u8]> = TableDefinition::new("versions_controls");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const EXPECTED: TableDefinition<&str, &[u8]> = TableDefinition::new("expected");
const ROLLOUT: TableDefinition<u64, &[u8]> = TableDefinition::new("rollout");

fn versions(kind: Kind) -> TableDefinition<'static, u64, &'static [u8]> {
    match kind {
        Kind::Config => CONFIG,
        Kind::Drains => DRAINS,
        Kind::Controls => CONTROLS,
    }
}

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(be)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(be)
}

/// The embedded store (default file: `control.redb`).
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

impl RedbStore {
    /// Opens (or creates) the file. The first open records `deployment`; a later open with
    /// another id fails with [`StoreError::ForeignDeployment`].
    pub fn open(path: &Path, deployment: &str) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(|e| be(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(be)?;
        {
            // Create every table, so readers never meet a missing one.
            for t in [CONFIG, DRAINS, CONTROLS, AUDIT, ROLLOUT] {
                tx.open_table(t).map_err(be)?;
            }
            for t in [TOKENS, NODES, EXPECTED] {
                tx.open_table(t).map_err(be)?;
            }
            let mut meta = tx.open_table(META).map_err(be)?;
            let stored = meta.get("deployment").map_err(be)?.map(|v| v.value().to_string());
            match stored {
                Some(s) if s != deployment => {
                    return Err(StoreError::ForeignDeployment { stored: s, wanted: deployment.to_string() });
                }
                Some(_) => {}
                None => {
                    meta.insert("deployment", deployment).map_err(be)?;
                }
            }
        }
        tx.commit().map_err(be)?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    /// Runs a blocking closure against the database off the async threads.
    fn run<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move { tokio::task::spawn_blocking(move || f(&db)).await.map_err(be)? })
    }
}

fn read_all<T: DeserializeOwned>(
    db: &Database,
    def: TableDefinition<u64, &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let tx = db.begin_read().map_err(be)?;
    let t = tx.open_table(def).map_err(be)?;
    let mut out = Vec::new();
    for item in t.iter().map_err(be)? {
        let (_, v) = item.map_err(be)?;
        out.push(dec(v.value())?);
    }
    Ok(out)
}

fn update_node(db: &Database, id: &str, f: impl FnOnce(&mut NodeRecord)) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(be)?;
    {
        let mut t = tx.open_table(NODES).map_err(be)?;
        let mut node: NodeRecord = match t.get(id).map_err(be)? {
            Some(v) => dec(v.value())?,
            None => NodeRecord { id: id.to_string(), ..Default::default() },
        };
        f(&mut node);
        t.insert(id, enc(&node)?.as_slice()).map_err(be)?;
    }
    tx.commit().map_err(be)
}

impl Store for RedbStore {
    fn deployment(&self) -> StoreFuture<'_, String> {
        self.run(|db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(META).map_err(be)?;
            let v = t.get("deployment").map_err(be)?.map(|v| v.value().to_string());
            v.ok_or_else(|| be("no deployment id"))
        })
    }

    fn current(&self, kind: Kind) -> StoreFuture<'_, Option<VersionRecord>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(versions(kind)).map_err(be)?;
            let last = t.last().map_err(be)?;
            last.map(|(_, v)| dec(v.value())).transpose()
        })
    }

    fn version(&self, kind: Kind, version: u64) -> StoreFuture<'_, Option<VersionRecord>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(versions(kind)).map_err(be)?;
            let v = t.get(version).map_err(be)?;
            v.map(|v| dec(v.value())).transpose()
        })
    }

    fn history(&self, kind: Kind) -> StoreFuture<'_, Vec<VersionRecord>> {
        self.run(move |db| read_all(db, versions(kind)))
    }

    fn append(&self, kind: Kind, expected: u64, records: Vec<VersionRecord>) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(be)?;
            {
                let mut t = tx.open_table(versions(kind)).map_err(be)?;
                let current = t.last().map_err(be)?.map(|(k, _)| k.value()).unwrap_or(0);
                if current != expected {
                    return Err(StoreError::Conflict { current });
                }
                for (i, r) in records.iter().enumerate() {
                    if r.version != expected + 1 + i as u64 {
                        return Err(StoreError::Invalid(format!(
                            "version {} does not follow {}",
                            r.version,
                            expected + i as u64
                        )));
                    }
                    t.insert(r.version, enc(r)?.as_slice()).map_err(be)?;
                }
            }
            tx.commit().map_err(be)
        })
    }

    fn rollout(&self) -> StoreFuture<'_, Option<RolloutRecord>> {
        self.run(|db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(ROLLOUT).map_err(be)?;
            let last = t.last().map_err(be)?;
            last.map(|(_, v)| dec(v.value())).transpose()
        })
    }

    fn set_rollout(&self, expected: u64, record: RolloutRecord) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(be)?;
            {
                let mut t = tx.open_table(ROLLOUT).map_err(be)?;
                let current = t.last().map_err(be)?.map(|(k, _)| k.value()).unwrap_or(0);
                if current != expected {
                    return Err(StoreError::Conflict { current });
                }
                if record.version != expected + 1 {
                    return Err(StoreError::Invalid(format!(
                        "rollout {} does not follow {expected}",
                        record.version
                    )));
                }
                t.insert(record.version, enc(&record)?.as_slice()).map_err(be)?;
            }
            tx.commit().map_err(be)
        })
    }

    fn put_token(&self, hash: String, token: TokenRecord) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(be)?;
            tx.open_table(TOKENS).map_err(be)?.insert(hash.as_str(), enc(&token)?.as_slice()).map_err(be)?;
            tx.commit().map_err(be)
        })
    }

    fn token(&self, hash: String) -> StoreFuture<'_, Option<TokenRecord>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(TOKENS).map_err(be)?;
            let v = t.get(hash.as_str()).map_err(be)?;
            v.map(|v| dec(v.value())).transpose()
        })
    }

    fn tokens(&self) -> StoreFuture<'_, Vec<TokenRecord>> {
        self.run(|db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(TOKENS).map_err(be)?;
            let mut out: Vec<TokenRecord> = Vec::new();
            for item in t.iter().map_err(be)? {
                out.push(dec(item.map_err(be)?.1.value())?);
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn delete_tokens(&self, name: String) -> StoreFuture<'_, usize> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(be)?;
            let mut n = 0;
            {
                let mut t = tx.open_table(TOKENS).map_err(be)?;
                t.retain(|_, v| {
                    let keep = dec::<TokenRecord>(v).map_or(true, |r| r.name != name);
                    n += usize::from(!keep);
                    keep
                })
                .map_err(be)?;
            }
            tx.commit().map_err(be)?;
            Ok(n)
        })
    }

    fn audit(&self, mut entry: AuditEntry) -> StoreFuture<'_, u64> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(be)?;
            let seq;
            {
                let mut t = tx.open_table(AUDIT).map_err(be)?;
                seq = t.last().map_err(be)?.map(|(k, _)| k.value()).unwrap_or(0) + 1;
                entry.seq = seq;
                t.insert(seq, enc(&entry)?.as_slice()).map_err(be)?;
            }
            tx.commit().map_err(be)?;
            Ok(seq)
        })
    }

    fn audit_log(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        self.run(move |db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(AUDIT).map_err(be)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(be)?.rev().take(limit) {
                let (_, v) = item.map_err(be)?;
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
    }

    fn node_seen(&self, seen: NodeRecord) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            let id = seen.id.clone();
            update_node(db, &id, move |n| {
                let kinds = std::mem::take(&mut n.kinds);
                let last = n.last_seen_ms;
                *n = seen;
                n.kinds = kinds;
                n.last_seen_ms = n.last_seen_ms.max(last);
            })
        })
    }

    fn node_ack(&self, ack: Ack, at_ms: u64) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            update_node(db, &ack.node.clone(), |n| {
                if n.region.is_empty() {
                    n.region = ack.region.clone();
                }
                apply_ack(n, &ack, at_ms)
            })
        })
    }

    fn nodes(&self) -> StoreFuture<'_, Vec<NodeRecord>> {
        self.run(|db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(NODES).map_err(be)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(be)? {
                let (_, v) = item.map_err(be)?;
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
    }

    fn set_expected(&self, expected: BTreeMap<String, Vec<String>>) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            let tx = db.begin_write().map_err(be)?;
            {
                let mut t = tx.open_table(EXPECTED).map_err(be)?;
                t.retain(|_, _| false).map_err(be)?;
                for (region, ids) in &expected {
                    t.insert(region.as_str(), enc(ids)?.as_slice()).map_err(be)?;
                }
            }
            tx.commit().map_err(be)
        })
    }

    fn expected(&self) -> StoreFuture<'_, BTreeMap<String, Vec<String>>> {
        self.run(|db| {
            let tx = db.begin_read().map_err(be)?;
            let t = tx.open_table(EXPECTED).map_err(be)?;
            let mut out = BTreeMap::new();
            for item in t.iter().map_err(be)? {
                let (k, v) = item.map_err(be)?;
                out.insert(k.value().to_string(), dec(v.value())?);
            }
            Ok(out)
        })
    }
}
