//! The directors' health quorum (DESIGN §7 "Health"): checkers in every region report their
//! verdicts of each check; a director combines them.
//!
//! - A vantage point is one checker. Its report replaces its previous one and is fresh for
//!   `staleness` after it arrived (by the director's injected clock, so checkers' clocks do not
//!   matter).
//! - A region's observations of its own checks do not count.
//! - With `n` other fresh vantage points of which `h` say healthy and share `q` (default 0.5
//!   with fewer than five, 0.18 from five): healthy when `h > q·n`, unhealthy when
//!   `n − h > (1 − q)·n`; exactly on the line, or `n = 0`, the last verdict stays. So with two
//!   other vantage points one "down" alone does not flip a check.
//! - Partition: when fewer than half of the vantage points ever heard from are fresh, the
//!   director keeps every last verdict rather than trusting the few it still hears (a director
//!   cut off with its own region must not pull the world into it).
//! - Warm-up: for the first `staleness` after the director starts, verdicts stay healthy, so
//!   the first checker to report does not decide alone before the others have reported.
//! - Calculated checks: at least `min_healthy` children healthy.
//!
//! Verdicts are computed when a report arrives and on [`Quorum::evaluate`] (the director calls
//! it on a timer, so staleness takes effect without reports); queries read a snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use meridian_core::Clock;
use meridian_model::dns::{CheckProtocol, DnsHealth};
use serde::Serialize;

use crate::report::{Observation, Report};

/// The checks and rules, from the config's `dns.health`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuorumConfig {
    /// Fixed share; `None`: 0.5 below five vantage points, 0.18 from five.
    pub share: Option<f64>,
    pub staleness: Duration,
    pub checks: Vec<CheckSpec>,
}

/// One check as the quorum sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    /// The probed region, whose own observations are dropped.
    pub region: Option<String>,
    /// Calculated: children and how many must be healthy.
    pub calculated: Option<(Vec<String>, usize)>,
}

impl QuorumConfig {
    /// From a validated `dns.health` (absent: no checks, everything healthy).
    pub fn from_dns(h: Option<&DnsHealth>) -> Self {
        let Some(h) = h else {
            return QuorumConfig { staleness: Duration::from_secs(30), ..Default::default() };
        };
        let checks = h
            .checks
            .iter()
            .map(|c| CheckSpec {
                name: c.name.clone(),
                region: c.region.clone(),
                calculated: (c.protocol == CheckProtocol::Calculated).then(|| {
                    let min = c.min_healthy.map_or(c.children.len(), |n| n as usize);
                    (c.children.clone(), min)
                }),
            })
            .collect();
        QuorumConfig { share: h.quorum, staleness: h.staleness(), checks }
    }
}

/// The director's health view built from checkers' reports.
pub struct Quorum {
    clock: Arc<dyn Clock>,
    started: Instant,
    inner: Mutex<Inner>,
    /// What queries read: check name → healthy (swapped whole, read without locks).
    verdicts: ArcSwap<HashMap<String, bool>>,
}

struct Vantage {
    region: String,
    received: Instant,
    observations: HashMap<String, Observation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Judgement {
    healthy: bool,
    reason: String,
}

struct Inner {
    config: QuorumConfig,
    vantage: BTreeMap<String, Vantage>,
    judged: HashMap<String, Judgement>,
    partitioned: bool,
}

/// `GET /v1/health`: everything the quorum knows.
#[derive(Debug, Clone, Serialize)]
pub struct QuorumStatus {
    /// Fewer than half of the known vantage points are fresh: verdicts are frozen.
    pub partitioned: bool,
    pub vantage_points_known: usize,
    pub vantage_points_fresh: usize,
    pub staleness_ms: u64,
    pub checks: Vec<CheckStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The verdict DNS answers use.
    pub healthy: bool,
    /// Why, in words.
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    pub vantage_points: Vec<VantageStatus>,
}

/// One vantage point's observation of one check.
#[derive(Debug, Clone, Serialize)]
pub struct VantageStatus {
    pub checker: String,
    pub region: String,
    pub healthy: bool,
    pub fresh: bool,
    /// False for stale observations and a region's observations of itself.
    pub counted: bool,
    /// Since the report arrived.
    pub age_ms: u64,
    pub consecutive_passes: u32,
    pub consecutive_failures: u32,
    pub observed_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("a report needs a checker id and a region")]
    Anonymous,
}

impl Quorum {
    pub fn new(config: QuorumConfig, clock: Arc<dyn Clock>) -> Quorum {
        let q = Quorum {
            started: clock.now(),
            clock,
            inner: Mutex::new(Inner {
                config,
                vantage: BTreeMap::new(),
                judged: HashMap::new(),
                partitioned: false,
            }),
            verdicts: ArcSwap::default(),
        };
        q.evaluate();
        q
    }

    /// A new config version: verdicts of checks that remain are kept.
    pub fn configure(&self, config: QuorumConfig) {
        {
            let mut g = self.lock();
            if g.config == config {
                return;
            }
            g.config = config;
        }
        self.evaluate();
    }

    pub fn staleness(&self) -> Duration {
        self.lock().config.staleness
    }

    /// Takes a checker's report (replacing its previous one) and re-evaluates.
    pub fn ingest(&self, report: Report) -> Result<(), ReportError> {
        if report.checker.is_empty() || report.region.is_empty() {
            return Err(ReportError::Anonymous);
        }
        let now = self.clock.now();
        {
            let mut g = self.lock();
            let observations = report.observations.into_iter().map(|o| (o.check.clone(), o)).collect();
            g.vantage.insert(report.checker, Vantage { region: report.region, received: now, observations });
        }
        self.evaluate();
        Ok(())
    }

    /// The verdict of check `name`; `None` when no such check is configured.
    pub fn healthy(&self, name: &str) -> Option<bool> {
        self.verdicts.load().get(name).copied()
    }

    /// Whether the verdicts are frozen because most vantage points went silent.
    pub fn partitioned(&self) -> bool {
        self.lock().partitioned
    }

    /// Recomputes every verdict at the clock's current time.
    pub fn evaluate(&self) {
        let now = self.clock.now();
        let mut g = self.lock();
        let inner = &mut *g;
        let staleness = inner.config.staleness;
        let known = inner.vantage.len();
        let fresh =
            inner.vantage.values().filter(|v| now.saturating_duration_since(v.received) <= staleness).count();
        let partitioned = fresh * 2 < known;
        let warming = now.saturating_duration_since(self.started) < staleness;
        if partitioned != inner.partitioned {
            if partitioned {
                tracing::warn!(fresh, known, "health: lost most vantage points; keeping the last verdicts");
            } else {
                tracing::info!(fresh, known, "health: vantage points back; verdicts follow the quorum again");
            }
            inner.partitioned = partitioned;
        }
        let mut judged = HashMap::new();
        for c in inner.config.checks.iter().filter(|c| c.calculated.is_none()) {
            let last = inner.judged.get(&c.name).is_none_or(|j| j.healthy);
            let j = if warming {
                Judgement { healthy: last, reason: "kept: warming up (the first staleness period)".into() }
            } else if partitioned {
                Judgement {
                    healthy: last,
                    reason: format!("kept: partitioned ({fresh} of {known} vantage points fresh)"),
                }
            } else {
                let votes: Vec<bool> = inner
                    .vantage
                    .values()
                    .filter(|v| now.saturating_duration_since(v.received) <= staleness)
                    .filter(|v| c.region.as_deref() != Some(v.region.as_str()))
                    .filter_map(|v| v.observations.get(&c.name).map(|o| o.healthy))
                    .collect();
                vote(&votes, inner.config.share, last)
            };
            judged.insert(c.name.clone(), j);
        }
        for c in &inner.config.checks {
            let Some((children, min)) = &c.calculated else { continue };
            let ok = children.iter().filter(|ch| judged.get(*ch).is_none_or(|j| j.healthy)).count();
            let healthy = ok >= *min;
            let reason = format!("{ok} of {} children healthy, {min} needed", children.len());
            judged.insert(c.name.clone(), Judgement { healthy, reason });
        }
        for (name, j) in &judged {
            if inner.judged.get(name).is_some_and(|old| old.healthy != j.healthy) {
                tracing::info!(check = %name, healthy = j.healthy, reason = %j.reason, "health verdict changed");
            }
        }
        let verdicts: HashMap<String, bool> = judged.iter().map(|(k, j)| (k.clone(), j.healthy)).collect();
        inner.judged = judged;
        // Stored under the lock, so a slower concurrent evaluation cannot overwrite a newer one.
        self.verdicts.store(Arc::new(verdicts));
    }

    /// Per check, per vantage point, the verdict and why.
    pub fn status(&self) -> QuorumStatus {
        let now = self.clock.now();
        let g = self.lock();
        let staleness = g.config.staleness;
        let age = |v: &Vantage| now.saturating_duration_since(v.received);
        let checks = g
            .config
            .checks
            .iter()
            .map(|c| {
                let j = g.judged.get(&c.name);
                let vantage_points = g
                    .vantage
                    .iter()
                    .filter_map(|(id, v)| {
                        let o = v.observations.get(&c.name)?;
                        let fresh = age(v) <= staleness;
                        Some(VantageStatus {
                            checker: id.clone(),
                            region: v.region.clone(),
                            healthy: o.healthy,
                            fresh,
                            counted: fresh && c.region.as_deref() != Some(v.region.as_str()),
                            age_ms: u64::try_from(age(v).as_millis()).unwrap_or(u64::MAX),
                            consecutive_passes: o.consecutive_passes,
                            consecutive_failures: o.consecutive_failures,
                            observed_at_ms: o.observed_at_ms,
                            error: o.error.clone(),
                        })
                    })
                    .collect();
                CheckStatus {
                    name: c.name.clone(),
                    region: c.region.clone(),
                    healthy: j.is_none_or(|j| j.healthy),
                    reason: j.map_or_else(String::new, |j| j.reason.clone()),
                    children: c.calculated.as_ref().map(|(ch, _)| ch.clone()).unwrap_or_default(),
                    vantage_points,
                }
            })
            .collect();
        QuorumStatus {
            partitioned: g.partitioned,
            vantage_points_known: g.vantage.len(),
            vantage_points_fresh: g.vantage.values().filter(|v| age(v) <= staleness).count(),
            staleness_ms: u64::try_from(staleness.as_millis()).unwrap_or(u64::MAX),
            checks,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The quorum rule over the other fresh vantage points' verdicts.
fn vote(votes: &[bool], share: Option<f64>, last: bool) -> Judgement {
    let n = votes.len();
    let h = votes.iter().filter(|v| **v).count();
    if n == 0 {
        return Judgement { healthy: last, reason: "kept: no fresh observation from another region".into() };
    }
    let q = share.unwrap_or(if n < 5 { 0.5 } else { 0.18 });
    let nf = n as f64;
    let (healthy, how) = if h as f64 > q * nf {
        (true, "")
    } else if (n - h) as f64 > (1.0 - q) * nf {
        (false, "")
    } else {
        (last, "kept on the line: ")
    };
    Judgement {
        healthy,
        reason: format!("{how}{h} of {n} other fresh vantage points say healthy (share {q})"),
    }
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
mod tests;
