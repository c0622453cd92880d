//! The etcd backend: several control instances share one etcd (v3 API), so any of them takes
//! writes and shows the whole fleet.
//!
//! Keys, under a prefix (default `/meridian/<deployment>/`):
//!
//! | key | value |
//! |---|---|
//! | `meta/deployment` | the deployment id (created once, never overwritten) |
//! | `current/<kind>` | the current version number, decimal: the compare-and-swap pointer |
//! | `versions/<kind>/<version, 20 digits>` | a [`VersionRecord`] (JSON), never rewritten |
//! | `current/rollout`, `versions/rollout/<version, 20 digits>` | the rollout pointer and the [`RolloutRecord`]s (under `versions/`, so one watch sees pins and versions in commit order) |
//! | `tokens/<sha-256 hex>` | a [`TokenRecord`] |
//! | `audit_seq` | the last audit sequence number (compare-and-swap pointer) |
//! | `audit/<seq, 20 digits>` | an [`AuditEntry`] |
//! | `nodes/<id>` | a [`NodeRecord`], updated read-modify-write with a compare on its revision |
//! | `expected` | region → node ids (JSON) |
//!
//! Zero-padded numbers make etcd's key order the numeric order. Every call has a deadline
//! (`timeout`), so an unreachable etcd answers the admin API quickly with an error naming it.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, KeyValue, SortOrder, SortTarget,
    Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use meridian_sync::protocol::{Ack, Kind};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod watch;

use super::{
    AuditEntry, NodeRecord, RolloutRecord, Store, StoreError, StoreFuture, TokenRecord, VersionFeed,
    VersionRecord, apply_ack,
};

/// etcd's default limit is 128 operations per transaction and 1.5 MiB per request; an append of
/// many versions (an import) is written in chunks below both, each chunk compare-and-swapped on
/// the one before.
const CHUNK_RECORDS: usize = 64;
const CHUNK_BYTES: usize = 1024 * 1024;

/// The name the rollout records go by under `versions/` and `current/`.
const ROLLOUT: &str = "rollout";

/// The largest answer a prefix read takes.
const LIST_BYTES: usize = 64 * 1024 * 1024;

/// Read-modify-write retries (node records, audit sequence) before giving up.
const CAS_RETRIES: usize = 32;

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdOptions {
    /// Client URLs of the cluster's members (`http://host:port`).
    pub endpoints: Vec<String>,
    /// Every key starts with it; ends with `/`.
    pub prefix: String,
    /// Deadline of connecting and of every request.
    pub timeout: Duration,
}

/// The shared store (see the module documentation for the key layout).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    /// The endpoints, for error messages.
    named: String,
    timeout: Duration,
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn dec<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, StoreError> {
    serde_json::from_slice(kv.value())
        .map_err(|e| StoreError::Backend(format!("etcd key {}: {e}", String::from_utf8_lossy(kv.key()))))
}

fn prefix_opts() -> GetOptions {
    GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Ascend)
}

/// The newest key under a prefix.
fn last_opts() -> GetOptions {
    GetOptions::new().with_prefix().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(1)
}

/// Compares a pointer key with the value it had when read (`None`: it did not exist).
fn unchanged(key: Vec<u8>, kv: Option<&KeyValue>) -> Compare {
    match kv {
        Some(kv) => Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
        None => Compare::version(key, CompareOp::Equal, 0),
    }
}

fn number(kv: Option<&KeyValue>) -> Result<u64, StoreError> {
    let Some(kv) = kv else { return Ok(0) };
    let text = String::from_utf8_lossy(kv.value());
    text.trim().parse().map_err(|_| {
        StoreError::Backend(format!("etcd key {}: not a number: {text:?}", String::from_utf8_lossy(kv.key())))
    })
}

impl EtcdStore {
    /// Connects and checks the deployment: the first instance writes it (create-if-absent), every
    /// later one compares ([`StoreError::ForeignDeployment`] when it differs). Fails with
    /// [`StoreError::Backend`] naming the endpoints when etcd does not answer within `timeout`.
    pub async fn connect(opts: &EtcdOptions, deployment: &str) -> Result<EtcdStore, StoreError> {
        let named = opts.endpoints.join(", ");
        // The per-request deadline is ours (`call`), so that its error says what happened.
        let connect = ConnectOptions::new()
            .with_connect_timeout(opts.timeout)
            // A hung etcd (not just a closed socket) must end the watch stream too. etcd refuses
            // pings more often than every 5 s by default.
            .with_keep_alive(Duration::from_secs(10), opts.timeout);
        let client =
            match tokio::time::timeout(opts.timeout, Client::connect(&opts.endpoints, Some(connect))).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    return Err(StoreError::Backend(failed(&named, &e)));
                }
                Err(_) => {
                    return Err(StoreError::Backend(format!(
                        "etcd at {named} did not answer within {:?}",
                        opts.timeout
                    )));
                }
            };
        let store = EtcdStore { client, prefix: opts.prefix.clone(), named, timeout: opts.timeout };
        let key = store.key("meta/deployment");
        let create = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), deployment, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = store.txn(create).await?;
        if !resp.succeeded() {
            let stored = first_of(&resp)
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                .unwrap_or_default();
            if stored != deployment {
                return Err(StoreError::ForeignDeployment { stored, wanted: deployment.to_string() });
            }
        }
        Ok(store)
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.prefix).into_bytes()
    }

    fn versions_prefix(&self, kind: Kind) -> Vec<u8> {
        self.key(&format!("versions/{}/", kind.as_str()))
    }

    fn version_key(&self, kind: Kind, version: u64) -> Vec<u8> {
        self.key(&format!("versions/{}/{version:020}", kind.as_str()))
    }

    /// The rollout records share `versions/` with the kinds' versions (see the module docs).
    fn rollout_prefix(&self) -> Vec<u8> {
        self.key(&format!("versions/{ROLLOUT}/"))
    }

    /// Runs one request with the deadline; every failure names etcd and its endpoints.
    async fn call<T>(&self, f: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Backend(failed(&self.named, &e))),
            Err(_) => Err(StoreError::Backend(format!(
                "etcd at {} did not answer within {:?}",
                self.named, self.timeout
            ))),
        }
    }

    async fn get(&self, key: Vec<u8>, opts: Option<GetOptions>) -> Result<GetResponse, StoreError> {
        let mut kv = self.client.kv_client();
        self.call(kv.get(key, opts)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        let mut kv = self.client.kv_client();
        self.call(kv.txn(txn)).await
    }

    /// Every value under a prefix, in key order, in one read (a long history is larger than
    /// gRPC's default 4 MiB answer, hence the higher limit; the admin API takes 64 MiB backups).
    async fn list<T: DeserializeOwned>(&self, prefix: Vec<u8>) -> Result<Vec<T>, StoreError> {
        let mut kv = self.client.kv_client().max_decoding_message_size(LIST_BYTES);
        self.call(kv.get(prefix, Some(prefix_opts()))).await?.kvs().iter().map(dec).collect()
    }

    async fn current_number(&self, kind: Kind) -> Result<u64, StoreError> {
        let r = self.get(self.key(&format!("current/{}", kind.as_str())), None).await?;
        number(r.kvs().first())
    }

    /// Read-modify-write of one node record, compared on the revision it was read at.
    async fn update_node(&self, id: &str, f: impl Fn(&mut NodeRecord)) -> Result<(), StoreError> {
        let key = self.key(&format!("nodes/{id}"));
        for _ in 0..CAS_RETRIES {
            let got = self.get(key.clone(), None).await?;
            let kv = got.kvs().first();
            let mut node = match kv {
                Some(kv) => dec(kv)?,
                None => NodeRecord { id: id.to_string(), ..Default::default() },
            };
            f(&mut node);
            let txn = Txn::new().when([unchanged(key.clone(), kv)]).and_then([TxnOp::put(
                key.clone(),
                enc(&node)?,
                None,
            )]);
            if self.txn(txn).await?.succeeded() {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!("node {id}: too many concurrent updates in etcd")))
    }

    /// One compare-and-swap chunk of an append; `at` is the version it expects to be current.
    async fn append_chunk(&self, kind: Kind, at: u64, chunk: &[VersionRecord]) -> Result<(), StoreError> {
        let pointer = self.key(&format!("current/{}", kind.as_str()));
        let cmp = if at == 0 {
            Compare::version(pointer.clone(), CompareOp::Equal, 0)
        } else {
            Compare::value(pointer.clone(), CompareOp::Equal, at.to_string())
        };
        let mut ops = Vec::with_capacity(chunk.len() + 1);
        for r in chunk {
            ops.push(TxnOp::put(self.version_key(kind, r.version), enc(r)?, None));
        }
        let last = chunk.last().map_or(at, |r| r.version);
        ops.push(TxnOp::put(pointer.clone(), last.to_string(), None));
        let txn = Txn::new().when([cmp]).and_then(ops).or_else([TxnOp::get(pointer, None)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict { current: number(first_of(&resp).as_ref())? })
        }
    }
}

/// What went wrong, for the admin API: etcd out of reach, or etcd refusing this request (e.g. a
/// version larger than its request limit), which trying again does not fix.
fn failed(named: &str, e: &etcd_client::Error) -> String {
    use etcd_client::Error::GRpcStatus;
    use tonic::Code;
    match e {
        GRpcStatus(s) if !matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown) => {
            format!("etcd at {named} refused the request: {}", why(e))
        }
        _ => format!("etcd at {named} is unavailable: {}", why(e)),
    }
}

/// A short reason: the gRPC message and the root cause (e.g. `tcp connect error: Connection
/// refused (os error 111)`), not the nested debug output of the transport's errors.
fn why(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else { return e.to_string() };
    let mut root: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(next) = root.and_then(|r| r.source()) {
        root = Some(next);
    }
    match root {
        Some(r) if status.message().is_empty() || status.message().eq_ignore_ascii_case(&r.to_string()) => {
            r.to_string()
        }
        Some(r) => format!("{}: {r}", status.message()),
        None if status.message().is_empty() => format!("{:?}", status.code()),
        None => status.message().to_string(),
    }
}

fn first_of(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// Splits records into chunks under etcd's per-transaction limits.
fn chunks(records: &[VersionRecord]) -> Vec<&[VersionRecord]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let size = r.content.len() + r.comment.len() + r.author.len() + 256;
        if i > start && (i - start >= CHUNK_RECORDS || bytes + size > CHUNK_BYTES) {
            out.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

impl Store for EtcdStore {
    fn deployment(&self) -> StoreFuture<'_, String> {
        Box::pin(async move {
            let r = self.get(self.key("meta/deployment"), None).await?;
            r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                .ok_or_else(|| StoreError::Backend("etcd: no deployment id".into()))
        })
    }

    fn current(&self, kind: Kind) -> StoreFuture<'_, Option<VersionRecord>> {
        Box::pin(async move {
            let r = self.get(self.versions_prefix(kind), Some(last_opts())).await?;
            r.kvs().first().map(dec).transpose()
        })
    }

    fn version(&self, kind: Kind, version: u64) -> StoreFuture<'_, Option<VersionRecord>> {
        Box::pin(async move {
            let r = self.get(self.version_key(kind, version), None).await?;
            r.kvs().first().map(dec).transpose()
        })
    }

    fn history(&self, kind: Kind) -> StoreFuture<'_, Vec<VersionRecord>> {
        Box::pin(self.list(self.versions_prefix(kind)))
    }

    fn append(&self, kind: Kind, expected: u64, records: Vec<VersionRecord>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let bad = records.iter().enumerate().find(|(i, r)| r.version != expected + 1 + *i as u64);
            if let Some((i, r)) = bad {
                // A conflict wins over a numbering error, as in the embedded backend.
                let current = self.current_number(kind).await?;
                if current != expected {
                    return Err(StoreError::Conflict { current });
                }
                return Err(StoreError::Invalid(format!(
                    "version {} does not follow {}",
                    r.version,
                    expected + i as u64
                )));
            }
            if records.is_empty() {
                let current = self.current_number(kind).await?;
                return if current == expected { Ok(()) } else { Err(StoreError::Conflict { current }) };
            }
            let mut at = expected;
            for chunk in chunks(&records) {
                self.append_chunk(kind, at, chunk).await?;
                at = chunk.last().map_or(at, |r| r.version);
            }
            Ok(())
        })
    }

    fn rollout(&self) -> StoreFuture<'_, Option<RolloutRecord>> {
        Box::pin(async move {
            let r = self.get(self.rollout_prefix(), Some(last_opts())).await?;
            r.kvs().first().map(dec).transpose()
        })
    }

    fn set_rollout(&self, expected: u64, record: RolloutRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let pointer = self.key(&format!("current/{ROLLOUT}"));
            let cmp = if expected == 0 {
                Compare::version(pointer.clone(), CompareOp::Equal, 0)
            } else {
                Compare::value(pointer.clone(), CompareOp::Equal, expected.to_string())
            };
            if record.version != expected + 1 {
                return Err(StoreError::Invalid(format!(
                    "rollout {} does not follow {expected}",
                    record.version
                )));
            }
            let key = self.key(&format!("versions/{ROLLOUT}/{:020}", record.version));
            let txn = Txn::new()
                .when([cmp])
                .and_then([
                    TxnOp::put(key, enc(&record)?, None),
                    TxnOp::put(pointer.clone(), record.version.to_string(), None),
                ])
                .or_else([TxnOp::get(pointer, None)]);
            let resp = self.txn(txn).await?;
            if resp.succeeded() {
                Ok(())
            } else {
                Err(StoreError::Conflict { current: number(first_of(&resp).as_ref())? })
            }
        })
    }

    fn put_token(&self, hash: String, token: TokenRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            self.call(kv.put(self.key(&format!("tokens/{hash}")), enc(&token)?, None)).await?;
            Ok(())
        })
    }

    fn token(&self, hash: String) -> StoreFuture<'_, Option<TokenRecord>> {
        Box::pin(async move {
            let r = self.get(self.key(&format!("tokens/{hash}")), None).await?;
            r.kvs().first().map(dec).transpose()
        })
    }

    fn tokens(&self) -> StoreFuture<'_, Vec<TokenRecord>> {
        Box::pin(async move {
            let mut out: Vec<TokenRecord> = self.list(self.key("tokens/")).await?;
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn delete_tokens(&self, name: String) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let r = self.get(self.key("tokens/"), Some(prefix_opts())).await?;
            let mut keys = Vec::new();
            for kv in r.kvs() {
                if dec::<TokenRecord>(kv).is_ok_and(|t| t.name == name) {
                    keys.push(kv.key().to_vec());
                }
            }
            for chunk in keys.chunks(CHUNK_RECORDS) {
                let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::delete(k.clone(), None)).collect();
                self.txn(Txn::new().and_then(ops)).await?;
            }
            Ok(keys.len())
        })
    }

    fn audit(&self, mut entry: AuditEntry) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let pointer = self.key("audit_seq");
            for _ in 0..CAS_RETRIES {
                let got = self.get(pointer.clone(), None).await?;
                let kv = got.kvs().first();
                let seq = number(kv)? + 1;
                entry.seq = seq;
                let txn = Txn::new().when([unchanged(pointer.clone(), kv)]).and_then([
                    TxnOp::put(pointer.clone(), seq.to_string(), None),
                    TxnOp::put(self.key(&format!("audit/{seq:020}")), enc(&entry)?, None),
                ]);
                if self.txn(txn).await?.succeeded() {
                    return Ok(seq);
                }
            }
            Err(StoreError::Backend("audit log: too many concurrent writers in etcd".into()))
        })
    }

    fn audit_log(&self, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let opts = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(limit as i64);
            self.get(self.key("audit/"), Some(opts)).await?.kvs().iter().map(dec).collect()
        })
    }

    fn node_seen(&self, seen: NodeRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.update_node(&seen.id, |n| {
                let kinds = std::mem::take(&mut n.kinds);
                let last = n.last_seen_ms;
                *n = seen.clone();
                n.kinds = kinds;
                n.last_seen_ms = n.last_seen_ms.max(last);
            })
            .await
        })
    }

    fn node_ack(&self, ack: Ack, at_ms: u64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.update_node(&ack.node, |n| {
                if n.region.is_empty() {
                    n.region = ack.region.clone();
                }
                apply_ack(n, &ack, at_ms)
            })
            .await
        })
    }

    fn nodes(&self) -> StoreFuture<'_, Vec<NodeRecord>> {
        Box::pin(self.list(self.key("nodes/")))
    }

    fn set_expected(&self, expected: BTreeMap<String, Vec<String>>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut kv = self.client.kv_client();
            self.call(kv.put(self.key("expected"), enc(&expected)?, None)).await?;
            Ok(())
        })
    }

    fn expected(&self) -> StoreFuture<'_, BTreeMap<String, Vec<String>>> {
        Box::pin(async move {
            let r = self.get(self.key("expected"), None).await?;
            Ok(r.kvs().first().map(dec).transpose()?.unwrap_or_default())
        })
    }

    fn watch_versions(&self) -> Option<VersionFeed> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(self.clone().feed(tx));
        Some(rx)
    }
}
