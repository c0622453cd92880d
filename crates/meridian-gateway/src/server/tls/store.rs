//! [`CertStore`]: the listener's certificates indexed by server name, swapped whole on reload.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{anyhow, bail};
use arc_swap::ArcSwap;
use meridian_model::ListenerTls;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error as TlsError, InconsistentKeys};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Certificates by SNI, swappable at runtime.
///
/// Lookup order for a handshake: exact server name, then a wildcard one label up
/// (`a.example.com` → `*.example.com`), then the first configured certificate, which is also
/// served when the client sends no SNI.
pub struct CertStore {
    sources: Vec<Source>,
    current: ArcSwap<CertSet>,
    /// Stat of every file (cert, key per source) when the last load or reload was attempted.
    /// Recorded even when the reload fails, so a poll loop retries only after the next change
    /// instead of re-reading a broken file on every tick.
    stamps: Mutex<Vec<FileStamp>>,
}

/// One configured certificate: where to read it, and the names it was configured for.
struct Source {
    cert: PathBuf,
    key: PathBuf,
    /// Normalised `server_names`; empty means "the DNS names in the certificate".
    server_names: Vec<String>,
}

/// `None` fields mean the file could not be stat'ed (missing): disappearing counts as a change.
#[derive(Debug, Clone, PartialEq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: Option<u64>,
}

/// One immutable generation of certificates.
struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`: `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertStore {
    /// Reads every certificate and key. Errors name the config entry, the file and the problem.
    pub fn load(tls: &ListenerTls) -> anyhow::Result<Arc<CertStore>> {
        if tls.certificates.is_empty() {
            bail!("tls.certificates: at least one certificate is required");
        }
        let sources = tls
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let server_names = c
                    .server_names
                    .iter()
                    .map(|n| {
                        normalise_name(n).map_err(|e| anyhow!("tls.certificates[{i}].server_names: {e}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Source { cert: c.cert.clone(), key: c.key.clone(), server_names })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stamps = stamp_all(&sources);
        let set = build_set(&sources)?;
        Ok(Arc::new(CertStore { sources, current: ArcSwap::from_pointee(set), stamps: Mutex::new(stamps) }))
    }

    /// Re-reads every certificate file; on any error keeps the current set and returns the error.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamps = stamp_all(&self.sources);
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        let set = build_set(&self.sources)?;
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// True when any cert/key file's mtime or size changed since the last (re)load attempt.
    /// Only `stat`s the files, so it is cheap enough for a poll loop.
    pub fn files_changed(&self) -> bool {
        let now = stamp_all(&self.sources);
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now
    }

    /// The certificate chosen for `server_name` (`None`: the client sent no SNI).
    pub(super) fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let set = self.current.load();
        let Some(name) = server_name else { return set.default.clone() };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = set.exact.get(&name) {
            return key.clone();
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = set.wildcard.get(parent)
        {
            return key.clone();
        }
        set.default.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<_> = self.sources.iter().map(|s| (&s.cert, &s.key)).collect();
        f.debug_struct("CertStore").field("files", &files).finish_non_exhaustive()
    }
}

fn stamp_all(sources: &[Source]) -> Vec<FileStamp> {
    sources.iter().flat_map(|s| [stamp(&s.cert), stamp(&s.key)]).collect()
}

fn stamp(path: &Path) -> FileStamp {
    match std::fs::metadata(path) {
        Ok(meta) => FileStamp { modified: meta.modified().ok(), len: Some(meta.len()) },
        Err(_) => FileStamp { modified: None, len: None },
    }
}

fn build_set(sources: &[Source]) -> anyhow::Result<CertSet> {
    let provider = super::provider();
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for (i, source) in sources.iter().enumerate() {
        let (key, cert_names) = load_source(i, source, &provider)?;
        let names = if source.server_names.is_empty() { cert_names } else { source.server_names.clone() };
        if names.is_empty() && i > 0 {
            bail!(
                "tls.certificates[{i}].cert {}: the certificate has no DNS names and server_names is empty, \
                 so no client could select it",
                source.cert.display()
            );
        }
        // Earlier entries win on duplicate names: config order is the precedence order.
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard.entry(parent.to_string()).or_insert_with(|| key.clone()),
                None => exact.entry(name).or_insert_with(|| key.clone()),
            };
        }
        default.get_or_insert(key);
    }
    let default = default.ok_or_else(|| anyhow!("tls.certificates: at least one certificate is required"))?;
    Ok(CertSet { exact, wildcard, default })
}

/// Loads one chain and key, checks they belong together, and returns the DNS names in the leaf.
fn load_source(
    i: usize,
    source: &Source,
    provider: &rustls::crypto::CryptoProvider,
) -> anyhow::Result<(Arc<CertifiedKey>, Vec<String>)> {
    let cert_path = source.cert.display();
    let key_path = source.key.display();
    let chain = CertificateDer::pem_file_iter(&source.cert)
        .map_err(|e| anyhow!("tls.certificates[{i}].cert {cert_path}: {}", describe_pem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("tls.certificates[{i}].cert {cert_path}: {}", describe_pem(e)))?;
    if chain.is_empty() {
        bail!("tls.certificates[{i}].cert {cert_path}: no CERTIFICATE block found");
    }
    let key = PrivateKeyDer::from_pem_file(&source.key).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow!(
            "tls.certificates[{i}].key {key_path}: no private key found (expected a PKCS#8, PKCS#1 or SEC1 PEM block)"
        ),
        e => anyhow!("tls.certificates[{i}].key {key_path}: {}", describe_pem(e)),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow!("tls.certificates[{i}].key {key_path}: unusable private key: {e}"))?;
    let names = {
        let leaf = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| anyhow!("tls.certificates[{i}].cert {cert_path}: invalid leaf certificate: {e}"))?;
        leaf.valid_dns_names().map(|n| n.trim_end_matches('.').to_ascii_lowercase()).collect()
    };
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(TlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(TlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => bail!(
            "tls.certificates[{i}].key {key_path}: private key does not match the certificate in {cert_path}"
        ),
        Err(e) => bail!("tls.certificates[{i}].cert {cert_path}: invalid certificate: {e}"),
    }
    Ok((Arc::new(certified), names))
}

fn describe_pem(e: pem::Error) -> String {
    match e {
        pem::Error::Io(io) => format!("cannot read file: {io}"),
        pem::Error::NoItemsFound => "no PEM item of the expected type found".to_string(),
        e => format!("invalid PEM: {e}"),
    }
}

/// Lower-cases a configured server name and checks its shape: `host.example` or `*.example`.
fn normalise_name(name: &str) -> Result<String, String> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let host = n.strip_prefix("*.").unwrap_or(&n);
    let valid = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid { Ok(n) } else { Err(format!("invalid server name {name:?}")) }
}
