//! Last-known-good snapshots: the last applied snapshot of each kind, on local disk, so a node
//! can boot when no control instance is reachable.
//!
//! Layout: `snapshot_path` is a file prefix; kind `config` lives in `{snapshot_path}.config`,
//! kind `drains` in `{snapshot_path}.drains`. Each file is one JSON header line followed by the
//! content bytes:
//!
//! ```text
//! {"format":1,"kind":"config","deployment":"prod","version":7,"hash":"…","sha256":"…","saved_at_ms":…}
//! {…the snapshot content as JSON…}
//! ```
//!
//! `sha256` is the SHA-256 of the content bytes exactly as written (a torn or edited file is
//! refused); `hash` is the snapshot's own content hash as the control plane sent it. Files are
//! written to a temporary name, fsynced and renamed, so a crash never leaves a torn file.
//!
//! Secrets: config content has none today — certificate keys are file paths in the bootstrap,
//! never in pushed config — so the files are plain. They are created with mode 0600 anyway.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::{Kind, Snapshot};

const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LkgError {
    #[error("cannot {op} the last-known-good snapshot {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the last-known-good snapshot {path} is corrupt ({why}); refusing it")]
    Corrupt { path: PathBuf, why: String },
}

/// A snapshot read back from disk, with when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub snapshot: Snapshot,
    pub saved_at: SystemTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: u32,
    kind: Kind,
    deployment: String,
    version: u64,
    hash: String,
    sha256: String,
    saved_at_ms: u64,
}

/// The last-known-good files of one node.
#[derive(Debug, Clone)]
pub struct Lkg {
    prefix: PathBuf,
}

impl Lkg {
    /// `prefix` is the bootstrap's `snapshot_path`.
    pub fn new(prefix: impl Into<PathBuf>) -> Lkg {
        Lkg { prefix: prefix.into() }
    }

    /// The file of one kind.
    pub fn path(&self, kind: Kind) -> PathBuf {
        let mut p = self.prefix.clone().into_os_string();
        p.push(".");
        p.push(kind.as_str());
        PathBuf::from(p)
    }

    /// Writes `snap` atomically (temporary file, fsync, rename, fsync of the directory).
    pub fn save(&self, snap: &Snapshot) -> Result<(), LkgError> {
        let path = self.path(snap.kind);
        let io = |op, source| LkgError::Io { op, path: path.clone(), source };
        let content = serde_json::to_vec(&snap.content).map_err(|e| io("encode", e.into()))?;
        let saved_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let header = Header {
            format: FORMAT,
            kind: snap.kind,
            deployment: snap.deployment.clone(),
            version: snap.version,
            hash: snap.hash.clone(),
            sha256: hex::encode(Sha256::digest(&content)),
            saved_at_ms,
        };
        let mut bytes = serde_json::to_vec(&header).map_err(|e| io("encode", e.into()))?;
        bytes.push(b'\n');
        bytes.extend_from_slice(&content);

        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(|e| io("create", e))?;
        f.write_all(&bytes).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
        // The rename itself is durable only once the directory is synced.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads the snapshot of `kind`: `Ok(None)` when there is none, an error when the file is
    /// unreadable or corrupt (never a silently wrong config).
    pub fn load(&self, kind: Kind) -> Result<Option<Saved>, LkgError> {
        let path = self.path(kind);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LkgError::Io { op: "read", path, source: e }),
        };
        decode(&path, kind, &bytes).map(Some)
    }
}

fn decode(path: &Path, kind: Kind, bytes: &[u8]) -> Result<Saved, LkgError> {
    let corrupt = |why: String| LkgError::Corrupt { path: path.to_path_buf(), why };
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("no header line".into()))?;
    let header: Header =
        serde_json::from_slice(&bytes[..nl]).map_err(|e| corrupt(format!("unreadable header: {e}")))?;
    if header.format != FORMAT {
        return Err(corrupt(format!("unknown format {}", header.format)));
    }
    if header.kind != kind {
        return Err(corrupt(format!("holds kind {} instead of {}", header.kind.as_str(), kind.as_str())));
    }
    let content = &bytes[nl + 1..];
    let actual = hex::encode(Sha256::digest(content));
    if actual != header.sha256 {
        return Err(corrupt(format!(
            "checksum mismatch: header says {}, content is {actual}",
            header.sha256
        )));
    }
    let content = serde_json::from_slice(content).map_err(|e| corrupt(format!("unreadable content: {e}")))?;
    Ok(Saved {
        snapshot: Snapshot {
            kind,
            deployment: header.deployment,
            version: header.version,
            hash: header.hash,
            content,
        },
        saved_at: UNIX_EPOCH + Duration::from_millis(header.saved_at_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let lkg = Lkg::new(dir.path().join("gw"));
        assert_eq!(lkg.load(Kind::Config).unwrap(), None);
        let snap = Snapshot {
            kind: Kind::Config,
            deployment: "d".into(),
            version: 3,
            hash: "h".into(),
            content: serde_json::json!({"routes": []}),
        };
        lkg.save(&snap).unwrap();
        assert_eq!(lkg.path(Kind::Config), dir.path().join("gw.config"));
        assert_eq!(lkg.load(Kind::Config).unwrap().unwrap().snapshot, snap);
        let mut bytes = std::fs::read(lkg.path(Kind::Config)).unwrap();
        *bytes.last_mut().unwrap() = b' ';
        std::fs::write(lkg.path(Kind::Config), &bytes).unwrap();
        let e = lkg.load(Kind::Config).unwrap_err().to_string();
        assert!(e.contains("corrupt (checksum mismatch"), "{e}");
    }
}
