//! The directors' health quorum (DESIGN §7 "Health"): checkers in every region report their
//! verdicts of each check; a director combines them.
//!
//! - A vantage point is one checker. Each report carries its latest observation of the checks
//!   it probed that round (a check probed every minute is not in the reports between); an
//!   observation replaces the vantage point's previous one of that check and is fresh for that
//!   check's staleness after it arrived (`dns.health.staleness`, default 3 × the check's
//!   interval; by the director's injected clock, so checkers' clocks do not matter).
//! - A region's observations of its own checks do not count.
//! - With `n` other fresh vantage points of which `h` say healthy and share `q` (default 0.5
//!   with fewer than five, 0.18 from five): healthy when `h > q·n`, unhealthy when
//!   `n − h > (1 − q)·n`; exactly on the line, or `n = 0`, the last verdict stays. So with two
//!   other vantage points one "down" alone does not flip a check.
//! - Partition: when, for any check, fewer than half of the vantage points known to observe it
//!   are fresh, the director keeps every last verdict rather than trusting the few it still
//!   hears (a director cut off with its own region must not pull the world into it).
//! - Forgetting: an observation not renewed for `forget_after` (default 10 × the largest
//!   staleness, at least 5m) is dropped, and a vantage point with none left and silent as long is
//!   forgotten: a retired checker stops counting toward the partition rule. A partitioned
//!   director forgets nothing, so it keeps its verdicts for as long as the partition lasts;
//!   only vantage points lost one by one, each long enough to be forgotten, look retired.
//! - Warm-up: for the first staleness of each check after the director starts, its verdict
//!   stays healthy, so the first checker to report does not decide alone before the others
//!   have reported.
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
    /// The staleness of a check probed at the default interval (and of reports when no check
    /// is probed).
    pub staleness: Duration,
    /// Silence after which an observation, then a vantage point, is forgotten.
    pub forget_after: Duration,
    pub checks: Vec<CheckSpec>,
}

/// One check as the quorum sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    /// The probed region, whose own observations are dropped.
    pub region: Option<String>,
    /// How long an observation of this check counts after it arrived.
    pub staleness: Duration,
    /// Calculated: children and how many must be healthy.
    pub calculated: Option<(Vec<String>, usize)>,
}

impl QuorumConfig {
    /// From a validated `dns.health` (absent: no checks, everything healthy).
    pub fn from_dns(h: Option<&DnsHealth>) -> Self {
        let Some(h) = h else {
            let staleness = Duration::from_secs(30);
            return QuorumConfig { staleness, forget_after: staleness * 10, ..Default::default() };
        };
        let checks = h
            .checks
            .iter()
            .map(|c| CheckSpec {
                name: c.name.clone(),
                region: c.region.clone(),
                staleness: h.staleness_of(c),
                calculated: (c.protocol == CheckProtocol::Calculated).then(|| {
                    let min = c.min_healthy.map_or(c.children.len(), |n| n as usize);
                    (c.children.clone(), min)
                }),
            })
            .collect();
        QuorumConfig { share: h.quorum, staleness: h.staleness(), forget_after: h.forget_after(), checks }
    }

    fn probed(&self) -> impl Iterator<Item = &CheckSpec> {
        self.checks.iter().filter(|c| c.calculated.is_none())
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
    /// When its last report arrived.
    received: Instant,
    /// Check name → the latest observation and when it arrived.
    observations: HashMap<String, (Observation, Instant)>,
}

impl Vantage {
    /// Its observation of `c` that still counts, if any.
    fn fresh(&self, c: &CheckSpec, now: Instant) -> Option<&Observation> {
        let (o, at) = self.observations.get(&c.name)?;
        (now.saturating_duration_since(*at) <= c.staleness).then_some(o)
    }
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

impl Inner {
    /// Of the vantage points that observe `c` (one known observation), how many are fresh.
    fn freshness(&self, c: &CheckSpec, now: Instant) -> (usize, usize) {
        let known = self.vantage.values().filter(|v| v.observations.contains_key(&c.name)).count();
        let fresh = self.vantage.values().filter(|v| v.fresh(c, now).is_some()).count();
        (fresh, known)
    }

    /// Vantage points with a fresh observation of some check (with no probed check: a report
    /// within the default staleness).
    fn fresh_vantage_points(&self, now: Instant) -> usize {
        let cfg = &self.config;
        self.vantage
            .values()
            .filter(|v| match cfg.probed().next() {
                None => now.saturating_duration_since(v.received) <= cfg.staleness,
                Some(_) => cfg.probed().any(|c| v.fresh(c, now).is_some()),
            })
            .count()
    }

    /// Drops observations not renewed for `forget_after`, then vantage points with none left
    /// that have been silent as long. Only called when not partitioned: what it drops is stale
    /// (`forget_after` is at least every staleness), so it cannot cause a partition either.
    fn forget(&mut self, now: Instant) {
        let limit = self.config.forget_after;
        let silent = |at: Instant| now.saturating_duration_since(at) > limit;
        self.vantage.retain(|id, v| {
            v.observations.retain(|_, (_, at)| !silent(*at));
            let keep = !v.observations.is_empty() || !silent(v.received);
            if !keep {
                tracing::info!(checker = %id, region = %v.region, silent_for = ?limit, "health: vantage point forgotten");
            }
            keep
        });
    }
}

/// `GET /v1/health`: everything the quorum knows.
#[derive(Debug, Clone, Serialize)]
pub struct QuorumStatus {
    /// For some check, fewer than half of the vantage points known to observe it are fresh:
    /// verdicts are frozen and nothing is forgotten.
    pub partitioned: bool,
    pub vantage_points_known: usize,
    /// Vantage points with a fresh observation of some check.
    pub vantage_points_fresh: usize,
    /// The staleness of a check probed at the default interval.
    pub staleness_ms: u64,
    /// Silence after which a vantage point is forgotten.
    pub forget_after_ms: u64,
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
    /// How long an observation of this check counts.
    pub staleness_ms: u64,
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
    /// Since the observation arrived.
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

    /// The shortest staleness of any probed check (the default one without): observations
    /// go stale no faster, so evaluating a few times per this period is enough.
    pub fn staleness(&self) -> Duration {
        let g = self.lock();
        g.config.probed().map(|c| c.staleness).min().unwrap_or(g.config.staleness)
    }

    /// Takes a checker's report (its observations replace its previous ones of the same
    /// checks) and re-evaluates.
    pub fn ingest(&self, report: Report) -> Result<(), ReportError> {
        if report.checker.is_empty() || report.region.is_empty() {
            return Err(ReportError::Anonymous);
        }
        let now = self.clock.now();
        {
            let mut g = self.lock();
            let v = g.vantage.entry(report.checker).or_insert_with(|| Vantage {
                region: String::new(),
                received: now,
                observations: HashMap::new(),
            });
            v.region = report.region;
            v.received = now;
            for o in report.observations {
                v.observations.insert(o.check.clone(), (o, now));
            }
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

    /// Recomputes every verdict at the clock's current time, forgetting what has been silent
    /// for `forget_after` unless partitioned.
    pub fn evaluate(&self) {
        let now = self.clock.now();
        let mut g = self.lock();
        let inner = &mut *g;
        let partition = inner
            .config
            .probed()
            .map(|c| (c, inner.freshness(c, now)))
            .find(|(_, (fresh, known))| fresh * 2 < *known)
            .map(|(c, counts)| (c.name.clone(), counts));
        if partition.is_none() {
            inner.forget(now);
        }
        let partitioned = partition.is_some();
        if partitioned != inner.partitioned {
            match &partition {
                Some((check, (fresh, known))) => tracing::warn!(%check, fresh, known,
                    "health: lost most vantage points; keeping the last verdicts"),
                None => tracing::info!("health: vantage points back; verdicts follow the quorum again"),
            }
            inner.partitioned = partitioned;
        }
        let mut judged = HashMap::new();
        for c in inner.config.probed() {
            let last = inner.judged.get(&c.name).is_none_or(|j| j.healthy);
            let j = if now.saturating_duration_since(self.started) < c.staleness {
                Judgement { healthy: last, reason: "kept: warming up (the first staleness period)".into() }
            } else if let Some((check, (fresh, known))) = &partition {
                Judgement {
                    healthy: last,
                    reason: format!("kept: partitioned ({fresh} of {known} vantage points of {check} fresh)"),
                }
            } else {
                let votes: Vec<bool> = inner
                    .vantage
                    .values()
                    .filter(|v| c.region.as_deref() != Some(v.region.as_str()))
                    .filter_map(|v| v.fresh(c, now).map(|o| o.healthy))
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
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
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
                        let (o, at) = v.observations.get(&c.name)?;
                        let fresh = v.fresh(c, now).is_some();
                        Some(VantageStatus {
                            checker: id.clone(),
                            region: v.region.clone(),
                            healthy: o.healthy,
                            fresh,
                            counted: fresh && c.region.as_deref() != Some(v.region.as_str()),
                            age_ms: ms(now.saturating_duration_since(*at)),
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
                    staleness_ms: ms(c.staleness),
                    children: c.calculated.as_ref().map(|(ch, _)| ch.clone()).unwrap_or_default(),
                    vantage_points,
                }
            })
            .collect();
        QuorumStatus {
            partitioned: g.partitioned,
            vantage_points_known: g.vantage.len(),
            vantage_points_fresh: g.fresh_vantage_points(now),
            staleness_ms: ms(g.config.staleness),
            forget_after_ms: ms(g.config.forget_after),
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
