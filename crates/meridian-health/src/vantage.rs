//! The checker role (`meridian checker`): a stateless prober in one region. It probes each
//! probed check of the global config on that check's interval (`crate::schedule`; HTTP, HTTPS
//! or TCP, from its source address, each bounded by the check's timeout), applies the check's
//! failure threshold (Route 53's FailureThreshold: that many results in a row change its
//! verdict, which starts healthy), and POSTs a [`Report`] of the checks probed that round to
//! every director, with `Authorization: Bearer` and the report token when it has one (a
//! director that refuses it answers 401, logged; the other directors still get their reports).
//! A push still running is not repeated: its director gets what it missed with the next
//! round's report, so a slow director never holds back the others or the probes.
//!
//! The global config comes as versions on a [`ConfigFeed`]: from a file ([`run_checker`]) or
//! from the control plane (the binary's `meridian checker --control`); a new version changes
//! the probe plan at once, without a restart.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meridian_model::ValidConfig;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::probe;
use crate::report::{Observation, Report};
use crate::schedule::{Schedule, targets};

/// The config versions a checker probes by: `None` until the first valid one.
pub type ConfigFeed = watch::Receiver<Option<ValidConfig>>;

/// `checker.yaml`: who the checker is and where it reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckerConfig {
    pub node: CheckerNode,
    /// The global config file (its `dns.health` section); relative paths are from the
    /// checker file's directory. Re-read every round when it changed.
    pub config: PathBuf,
    /// The directors' HTTP addresses (`--http` of `meridian director`), as `ip:port` or
    /// `http://ip:port`.
    pub directors: Vec<String>,
    /// The file of the token sent with every report (its first token; see `meridian director
    /// --report-token-file`); relative paths are from the checker file's directory. Default:
    /// none, reports go without a token.
    #[serde(default)]
    pub report_token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckerNode {
    /// Unique id: one vantage point.
    pub id: String,
    /// The region it probes from.
    pub region: String,
    /// Local address probes and reports are sent from. Default: the system's choice.
    #[serde(default)]
    pub source_address: Option<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
}

impl CheckerConfig {
    /// Reads and checks a checker file; `config` becomes absolute against its directory.
    pub fn load(path: &Path) -> Result<CheckerConfig, CheckerError> {
        let text = std::fs::read_to_string(path).map_err(|e| CheckerError::Read(path.into(), e))?;
        let mut c: CheckerConfig =
            serde_saphyr::from_str(&text).map_err(|e| CheckerError::Parse(path.into(), e.to_string()))?;
        let bad = |m: String| CheckerError::Parse(path.into(), m);
        if c.node.id.is_empty() || c.node.region.is_empty() {
            return Err(bad("node.id and node.region are required".into()));
        }
        for (i, d) in c.directors.iter().enumerate() {
            director_addr(d).map_err(|m| bad(format!("directors[{i}]: {m}")))?;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        if c.config.is_relative() {
            c.config = dir.join(&c.config);
        }
        if let Some(t) = &mut c.report_token_file
            && t.is_relative()
        {
            *t = dir.join(&*t);
        }
        Ok(c)
    }
}

/// `ip:port` or `http://ip:port[/]`.
pub fn director_addr(s: &str) -> Result<SocketAddr, String> {
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    hostport.parse().map_err(|_| format!("invalid director address {s:?}: expected ip:port"))
}

/// The consecutive results of one check and the verdict they make.
#[derive(Debug, Clone, Copy)]
struct Streak {
    passes: u32,
    failures: u32,
    healthy: bool,
}

impl Default for Streak {
    fn default() -> Self {
        Streak { passes: 0, failures: 0, healthy: true }
    }
}

impl Streak {
    fn observe(&mut self, passed: bool, threshold: u32) {
        if passed {
            (self.passes, self.failures) = (self.passes.saturating_add(1), 0);
            self.healthy |= self.passes >= threshold;
        } else {
            (self.passes, self.failures) = (0, self.failures.saturating_add(1));
            self.healthy &= self.failures < threshold;
        }
    }
}

/// A director the checker reports to, with its push in flight (if any) and the observations
/// that missed a round because of it.
struct Director {
    addr: SocketAddr,
    busy: Arc<AtomicBool>,
    missed: Arc<Mutex<BTreeMap<String, Observation>>>,
    /// While the director refuses the report token: when that was last logged.
    refused: Arc<Mutex<Option<Instant>>>,
}

/// While a director refuses the report token, at most one log line per this long.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(60);

/// Runs the checker of a checker file until the future is dropped, sending `report_token`
/// (read by the caller from `report_token_file` or its own setting) with every report. An
/// invalid or unreadable global config file is logged and the last good one kept; at start,
/// the checker waits for a valid one.
pub async fn run_checker(c: CheckerConfig, report_token: Option<String>) {
    let (tx, rx) = watch::channel(None);
    let directors = c.directors.iter().filter_map(|d| director_addr(d).ok()).collect();
    tokio::join!(poll_file(c.config.clone(), tx), run_probes(c.node, directors, report_token, rx));
}

/// Probes by the config versions of `configs` and reports to `directors` (with
/// `Authorization: Bearer` and `report_token`, if given), until dropped. When the feed closes,
/// the last version goes on being probed.
pub async fn run_probes(
    node: CheckerNode,
    directors: Vec<SocketAddr>,
    report_token: Option<String>,
    mut configs: ConfigFeed,
) {
    let directors: Vec<Director> = directors
        .into_iter()
        .map(|addr| Director { addr, busy: Arc::default(), missed: Arc::default(), refused: Arc::default() })
        .collect();
    let report_token: Option<Arc<str>> = report_token.map(Arc::from);
    let source = node.source_address;
    let mut schedule = Schedule::default();
    let mut streaks: HashMap<String, Streak> = HashMap::new();
    let mut feed_open = true;
    // Take the version already there, if any.
    configs.mark_changed();
    loop {
        let wake = schedule.next_due().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = configs.changed(), if feed_open => {
                if r.is_err() {
                    feed_open = false;
                    continue;
                }
                let Some(config) = configs.borrow_and_update().clone() else { continue };
                let plan = targets(&config);
                tracing::info!(checks = plan.len(), hash = %config.hash(), "checker config applied");
                for name in schedule.replan(plan, std::time::Instant::now()) {
                    streaks.remove(&name);
                }
                continue;
            }
            _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
        }
        let due = schedule.take_due(std::time::Instant::now());
        let mut probes = JoinSet::new();
        for t in due {
            probes.spawn(async move {
                let timeout = t.timeout;
                let r = tokio::time::timeout(timeout, probe::probe(t.addr, source, &t.kind))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (t, r, now_ms())
            });
        }
        let mut observations = Vec::new();
        while let Some(done) = probes.join_next().await {
            // A probe task cannot panic short of a bug; the others' results still count.
            let Ok((t, result, at)) = done else { continue };
            let s = streaks.entry(t.name.clone()).or_default();
            let was = s.healthy;
            s.observe(result.is_ok(), t.threshold);
            if was != s.healthy {
                tracing::info!(check = %t.name, healthy = s.healthy, error = ?result.as_ref().err(), "checker verdict changed");
            }
            observations.push(Observation {
                check: t.name,
                healthy: s.healthy,
                consecutive_passes: s.passes,
                consecutive_failures: s.failures,
                observed_at_ms: at,
                error: result.err(),
            });
        }
        if observations.is_empty() {
            continue;
        }
        for d in &directors {
            push(d, &node, source, report_token.clone(), &observations);
        }
    }
}

/// Sends `observations` (and those that missed earlier rounds) to one director, unless its
/// previous push is still out: then they wait for the next round.
fn push(
    d: &Director,
    node: &CheckerNode,
    source: Option<IpAddr>,
    token: Option<Arc<str>>,
    observations: &[Observation],
) {
    let mut missed = d.missed.lock().unwrap_or_else(|e| e.into_inner());
    for o in observations {
        missed.insert(o.check.clone(), o.clone());
    }
    if d.busy.swap(true, Ordering::AcqRel) {
        return;
    }
    let observations: Vec<Observation> = std::mem::take(&mut *missed).into_values().collect();
    drop(missed);
    let report = Report { checker: node.id.clone(), region: node.region.clone(), observations };
    let body = bytes::Bytes::from(serde_json::to_vec(&report).unwrap_or_default());
    let (addr, busy, refused) = (d.addr, d.busy.clone(), d.refused.clone());
    tokio::spawn(async move {
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            probe::post_json(addr, source, "/v1/observations", token.as_deref(), body),
        )
        .await;
        match r {
            Ok(Ok(401)) => refused_unauthorized(&refused, addr, token.is_some()),
            Ok(Ok(s)) if (200..300).contains(&s) => {
                if refused.lock().unwrap_or_else(|e| e.into_inner()).take().is_some() {
                    tracing::info!(director = %addr, "director accepts the reports again");
                }
            }
            Ok(Ok(s)) => tracing::warn!(director = %addr, status = s, "director refused the report"),
            Ok(Err(e)) => tracing::debug!(director = %addr, error = %e, "report not delivered; next round"),
            Err(_) => tracing::debug!(director = %addr, "report timed out; next round"),
        }
        busy.store(false, Ordering::Release);
    });
}

/// A director answered 401: logged as an error at once, then at most once per
/// [`REFUSED_LOG_EVERY`] while it goes on; the other directors are not affected.
fn refused_unauthorized(refused: &Mutex<Option<Instant>>, addr: SocketAddr, sent_token: bool) {
    let now = Instant::now();
    let mut last = refused.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|t| now.duration_since(t) < REFUSED_LOG_EVERY) {
        return;
    }
    *last = Some(now);
    let hint = if sent_token {
        "this checker's report token is not in the director's --report-token-file"
    } else {
        "the director wants a report token: give the checker --report-token-file"
    };
    tracing::error!(director = %addr, hint, "report to director {addr} refused: unauthorized");
}

/// Feeds the file's valid versions, checking it every second.
async fn poll_file(path: PathBuf, tx: watch::Sender<Option<ValidConfig>>) {
    let mut last_text = String::new();
    let mut have = false;
    loop {
        if let Some(c) = reload(&path, &mut last_text, have) {
            have = true;
            tx.send_replace(Some(c));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn reload(path: &Path, last_text: &mut String, have: bool) -> Option<ValidConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            if !have {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the global config; waiting");
            }
            return None;
        }
    };
    if text == *last_text {
        return None;
    }
    *last_text = text;
    match meridian_model::parse_global(last_text) {
        Ok(c) => Some(c),
        Err(errors) => {
            tracing::warn!(path = %path.display(), %errors, "invalid global config; keeping the last good one");
            None
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_threshold_changes_the_verdict_both_ways() {
        let mut s = Streak::default();
        s.observe(false, 3);
        s.observe(false, 3);
        assert!(s.healthy);
        s.observe(false, 3);
        assert!(!s.healthy && s.failures == 3);
        s.observe(true, 3);
        s.observe(true, 3);
        assert!(!s.healthy);
        s.observe(true, 3);
        assert!(s.healthy && s.passes == 3 && s.failures == 0);
    }

    #[test]
    fn checker_files_are_strict_and_resolve_the_config_beside_them() {
        let dir = std::env::temp_dir().join(format!("meridian-checker-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("checker.yaml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write(
            "node: { id: c1, region: us, source_address: 127.0.20.1 }\nconfig: g.yaml\ndirectors: [\"127.0.0.1:1\"]\n",
        );
        let c = CheckerConfig::load(&file).unwrap();
        assert_eq!(c.config, dir.join("g.yaml"));
        assert_eq!(c.node.source_address, Some("127.0.20.1".parse().unwrap()));
        assert_eq!(c.report_token_file, None);
        write(
            "node: { id: c1, region: us }\nconfig: g.yaml\ndirectors: []\nreport_token_file: secrets/report.token\n",
        );
        assert_eq!(
            CheckerConfig::load(&file).unwrap().report_token_file,
            Some(dir.join("secrets/report.token"))
        );
        write("node: { id: c1, region: us }\nconfig: g.yaml\ndirectors: [\"director:8053\"]\n");
        let e = CheckerConfig::load(&file).unwrap_err().to_string();
        assert!(
            e.ends_with("directors[0]: invalid director address \"director:8053\": expected ip:port"),
            "{e}"
        );
        write("node: { id: c1, region: us, zone: a }\nconfig: g.yaml\ndirectors: []\n");
        assert!(CheckerConfig::load(&file).unwrap_err().to_string().contains("zone"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn director_addresses_accept_a_scheme() {
        assert_eq!(director_addr("http://127.0.0.1:8053/"), Ok("127.0.0.1:8053".parse().unwrap()));
        assert_eq!(director_addr("127.0.0.1:8053"), Ok("127.0.0.1:8053".parse().unwrap()));
        assert!(director_addr("dir.example:80").is_err());
    }
}
