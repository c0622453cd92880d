//! The checker role (`meridian checker`): a stateless prober in one region. Every
//! `dns.health.interval` it probes every probed check of the global config at once (HTTP,
//! HTTPS or TCP, from its source address, each bounded by `timeout`), applies the failure
//! threshold per check (Route 53's FailureThreshold: that many results in a row change its
//! verdict, which starts healthy), and POSTs a [`Report`] to every director. A director that
//! does not answer gets the next round's report; a push still running is not repeated, so a
//! slow director never holds back the others or the probes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_model::ValidConfig;
use meridian_model::dns::{CheckProtocol, DnsHealth};
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::probe::{self, ProbeKind};
use crate::report::{Observation, Report};

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
        if c.config.is_relative() {
            c.config = path.parent().unwrap_or(Path::new(".")).join(&c.config);
        }
        Ok(c)
    }
}

/// `ip:port` or `http://ip:port[/]`.
pub fn director_addr(s: &str) -> Result<SocketAddr, String> {
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    hostport.parse().map_err(|_| format!("invalid director address {s:?}: expected ip:port"))
}

/// One probed check, resolved against the config.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    addr: SocketAddr,
    kind: ProbeKind,
}

/// What one config version asks the checker to do.
#[derive(Debug, Clone)]
struct Plan {
    interval: Duration,
    timeout: Duration,
    threshold: u32,
    targets: Vec<Target>,
}

impl Plan {
    fn of(config: &ValidConfig) -> Plan {
        let c = config.config();
        let Some(h) = c.dns.as_ref().and_then(|d| d.health.as_ref()) else {
            return Plan {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                threshold: 3,
                targets: vec![],
            };
        };
        Plan {
            interval: h.interval.get().max(Duration::from_millis(100)),
            timeout: h.timeout.get(),
            threshold: h.failure_threshold.max(1),
            targets: targets(config, h),
        }
    }
}

fn targets(config: &ValidConfig, h: &DnsHealth) -> Vec<Target> {
    let regions = &config.config().regions;
    h.checks
        .iter()
        .filter_map(|c| {
            let addr = match (&c.address, &c.region, c.port) {
                (Some(a), _, _) => a.parse().ok()?,
                (None, Some(r), Some(port)) => {
                    let region = regions.iter().find(|x| &x.name == r)?;
                    let ip: IpAddr = region.public_addresses.iter().find_map(|a| a.parse().ok())?;
                    SocketAddr::new(ip, port)
                }
                _ => return None,
            };
            let host = c.host.clone().unwrap_or_else(|| addr.to_string());
            let kind = match c.protocol {
                CheckProtocol::Calculated => return None,
                CheckProtocol::Tcp => ProbeKind::Tcp,
                CheckProtocol::Http => ProbeKind::Http { path: c.path.clone(), host, tls: false },
                CheckProtocol::Https => ProbeKind::Http { path: c.path.clone(), host, tls: true },
            };
            Some(Target { name: c.name.clone(), addr, kind })
        })
        .collect()
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

/// A director the checker reports to, with its push in flight (if any).
struct Director {
    addr: SocketAddr,
    busy: Arc<AtomicBool>,
}

/// Runs the checker until the future is dropped. An invalid or unreadable global config file
/// is logged and the last good one kept; at start, the checker waits for a valid one.
pub async fn run_checker(c: CheckerConfig) {
    let directors: Vec<Director> = c
        .directors
        .iter()
        .filter_map(|d| director_addr(d).ok())
        .map(|addr| Director { addr, busy: Arc::default() })
        .collect();
    let source = c.node.source_address;
    let mut last_text = String::new();
    let mut plan: Option<Plan> = None;
    let mut streaks: HashMap<String, Streak> = HashMap::new();
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::time::sleep_until(next).await;
        reload(&c.config, &mut last_text, &mut plan);
        let Some(p) = plan.clone() else {
            next += Duration::from_secs(1);
            continue;
        };
        next += p.interval;
        streaks.retain(|name, _| p.targets.iter().any(|t| &t.name == name));
        let mut probes = JoinSet::new();
        for t in p.targets.iter().cloned() {
            let timeout = p.timeout;
            probes.spawn(async move {
                let r = tokio::time::timeout(timeout, probe::probe(t.addr, source, &t.kind))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                (t.name, r, now_ms())
            });
        }
        let mut observations = Vec::new();
        while let Some(done) = probes.join_next().await {
            // A probe task cannot panic short of a bug; the others' results still count.
            let Ok((name, result, at)) = done else { continue };
            let s = streaks.entry(name.clone()).or_default();
            let was = s.healthy;
            s.observe(result.is_ok(), p.threshold);
            if was != s.healthy {
                tracing::info!(check = %name, healthy = s.healthy, error = ?result.as_ref().err(), "checker verdict changed");
            }
            observations.push(Observation {
                check: name,
                healthy: s.healthy,
                consecutive_passes: s.passes,
                consecutive_failures: s.failures,
                observed_at_ms: at,
                error: result.err(),
            });
        }
        observations.sort_by(|a, b| a.check.cmp(&b.check));
        let report = Report { checker: c.node.id.clone(), region: c.node.region.clone(), observations };
        let body = bytes::Bytes::from(serde_json::to_vec(&report).unwrap_or_default());
        for d in &directors {
            if d.busy.swap(true, Ordering::AcqRel) {
                continue; // the previous push is still out; this director gets the next round
            }
            let (addr, busy, body) = (d.addr, d.busy.clone(), body.clone());
            let limit = p.interval.max(Duration::from_secs(1));
            tokio::spawn(async move {
                let r = tokio::time::timeout(limit, probe::post_json(addr, source, "/v1/observations", body))
                    .await;
                match r {
                    Ok(Ok(s)) if (200..300).contains(&s) => {}
                    Ok(Ok(s)) => tracing::warn!(director = %addr, status = s, "director refused the report"),
                    Ok(Err(e)) => {
                        tracing::debug!(director = %addr, error = %e, "report not delivered; next round")
                    }
                    Err(_) => tracing::debug!(director = %addr, "report timed out; next round"),
                }
                busy.store(false, Ordering::Release);
            });
        }
    }
}

fn reload(path: &Path, last_text: &mut String, plan: &mut Option<Plan>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            if plan.is_none() {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the global config; waiting");
            }
            return;
        }
    };
    if text == *last_text {
        return;
    }
    *last_text = text;
    match meridian_model::parse_global(last_text) {
        Ok(c) => {
            let p = Plan::of(&c);
            tracing::info!(checks = p.targets.len(), interval = ?p.interval, hash = %c.hash(), "checker config applied");
            *plan = Some(p);
        }
        Err(errors) => {
            tracing::warn!(path = %path.display(), %errors, "invalid global config; keeping the last good one")
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
