//! Following the versions other instances commit: a watch on `versions/` that survives etcd
//! restarts and compaction.

use std::time::Duration;

use etcd_client::{EventType, Txn, TxnOp, TxnOpResponse, WatchOptions};
use meridian_sync::protocol::Kind;
use tokio::sync::mpsc;

use super::{EtcdStore, ROLLOUT, dec, last_opts, why};
use crate::store::{Committed, RolloutRecord, StoreError, VersionRecord};

impl EtcdStore {
    /// The watch loop behind [`crate::store::Store::watch_versions`]: first the current rollout
    /// record and the current version of every kind, then every put under `versions/` (rollout
    /// records included) in revision order. After an error it resumes from the
    /// revision after the last event it saw (so nothing written meanwhile is missed); when etcd
    /// compacted past that revision it reads the current versions again.
    pub(super) async fn feed(self, tx: mpsc::Sender<Committed>) {
        let mut next_rev: i64 = 0;
        let mut down = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            let r = tokio::select! {
                _ = tx.closed() => return,
                r = self.feed_once(&tx, &mut next_rev, &mut down) => r,
            };
            let Err(e) = r else { return };
            if !down {
                // Once per outage, not once per retry.
                tracing::warn!(error = %e, resume_from = next_rev, "etcd watch lost; retrying");
                down = true;
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One watch session; `Ok` only when the receiver is gone.
    async fn feed_once(
        &self,
        tx: &mpsc::Sender<Committed>,
        next_rev: &mut i64,
        down: &mut bool,
    ) -> Result<(), StoreError> {
        if *next_rev == 0 {
            // The current rollout and the current version of every kind, read at one revision;
            // the rollout first, so no version reaches a region its pin holds back.
            let mut gets = vec![TxnOp::get(self.rollout_prefix(), Some(last_opts()))];
            gets.extend(
                Kind::ALL.into_iter().map(|k| TxnOp::get(self.versions_prefix(k), Some(last_opts()))),
            );
            let resp = self.txn(Txn::new().and_then(gets)).await?;
            let rev = resp.header().map_or(0, |h| h.revision());
            let mut ops = resp.op_responses().into_iter();
            if let Some(TxnOpResponse::Get(g)) = ops.next()
                && let Some(kv) = g.kvs().first()
                && tx.send(Committed::Rollout(dec(kv)?)).await.is_err()
            {
                return Ok(());
            }
            for (kind, op) in Kind::ALL.into_iter().zip(ops) {
                if let TxnOpResponse::Get(g) = op
                    && let Some(kv) = g.kvs().first()
                    && tx.send(Committed::Version(kind, dec(kv)?)).await.is_err()
                {
                    return Ok(());
                }
            }
            *next_rev = rev + 1;
        }
        let opts = WatchOptions::new().with_prefix().with_start_revision(*next_rev);
        let mut watch = self.client.watch_client();
        let mut stream = self.call(watch.watch(self.key("versions/"), Some(opts))).await?;
        if *down {
            tracing::info!(from_revision = *next_rev, "etcd watch resumed");
            *down = false;
        }
        let versions = self.key("versions/");
        loop {
            let msg = stream
                .message()
                .await
                .map_err(|e| StoreError::Backend(format!("etcd watch: {}", why(&e))))?;
            let Some(msg) = msg else { return Err(StoreError::Backend("etcd watch stream ended".into())) };
            if msg.canceled() {
                if msg.compact_revision() > 0 {
                    *next_rev = 0;
                }
                return Err(StoreError::Backend(format!("etcd watch cancelled: {}", msg.cancel_reason())));
            }
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                *next_rev = (*next_rev).max(kv.mod_revision() + 1);
                if ev.event_type() != EventType::Put {
                    continue;
                }
                let rest =
                    String::from_utf8_lossy(&kv.key()[versions.len().min(kv.key().len())..]).into_owned();
                let name = rest.split('/').next().unwrap_or("");
                let committed = if name == ROLLOUT {
                    dec::<RolloutRecord>(kv).map(Committed::Rollout)
                } else {
                    let Some(kind) = kind_from(name) else { continue };
                    dec::<VersionRecord>(kv).map(|r| Committed::Version(kind, r))
                };
                match committed {
                    Ok(c) => {
                        if tx.send(c).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping an unreadable record in etcd"),
                }
            }
        }
    }
}

fn kind_from(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == name)
}
