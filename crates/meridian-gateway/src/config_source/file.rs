//! The file source: a YAML file, polled for changes and re-read on SIGHUP.

use std::path::PathBuf;
use std::time::Duration;

use fnv::fingerprint;
use meridian_model::{ConfigErrors, ValidConfig};
use tokio::sync::mpsc;

use super::{Candidate, ConfigSource};

/// Fingerprint marker for "the file could not be read".
const UNREADABLE: u64 = 0;

/// A YAML file, polled for changes (content fingerprint, so editors that replace the file by
/// rename are seen too) and re-read on SIGHUP.
pub struct FileSource {
    path: PathBuf,
    interval: Duration,
    last: Option<u64>,
}

impl FileSource {
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        FileSource { path, interval, last: None }
    }

    fn read(&mut self) -> Option<Candidate> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                // Reported once until the file is readable again.
                if self.last == Some(UNREADABLE) {
                    return None;
                }
                self.last = Some(UNREADABLE);
                let err =
                    meridian_model::ConfigError::new("", format!("cannot read {}: {e}", self.path.display()));
                return Some(Candidate { origin: self.describe(), config: Err(err.into()), reply: None });
            }
        };
        let fp = fingerprint(text.as_bytes());
        if self.last == Some(fp) {
            return None;
        }
        self.last = Some(fp);
        Some(Candidate { origin: self.describe(), config: meridian_model::parse_global(&text), reply: None })
    }
}

impl ConfigSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn initial(&mut self) -> Result<ValidConfig, ConfigErrors> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| {
            ConfigErrors::from(meridian_model::ConfigError::new(
                "",
                format!("cannot read {}: {e}", self.path.display()),
            ))
        })?;
        self.last = Some(fingerprint(text.as_bytes()));
        meridian_model::parse_global(&text)
    }

    fn watch(mut self: Box<Self>, tx: mpsc::Sender<Candidate>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                if forced {
                    tracing::info!(path = %self.path.display(), "SIGHUP: re-reading config");
                    self.last = None;
                }
                if let Some(c) = self.read()
                    && tx.send(c).await.is_err()
                {
                    return;
                }
            }
        })
    }
}

/// A small non-cryptographic fingerprint (FNV-1a 64) to notice file changes cheaply.
mod fnv {
    pub fn fingerprint(b: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}
