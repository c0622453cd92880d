//! When a checker probes what: each check on its own interval (Route 53's RequestInterval per
//! check), from the plan of the running config version.
//!
//! A new config version keeps each check's turn when its probe and interval are unchanged; a
//! new check, or one whose probe changed (address, protocol, path, host), is due at once and
//! its past results no longer count; a check whose interval changed is due by the sooner of its
//! old turn and one new interval from now. A checker that falls behind skips the missed turns
//! instead of probing in a burst.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use meridian_model::ValidConfig;
use meridian_model::dns::{CheckProtocol, DnsHealth};

use crate::probe::ProbeKind;

/// One probed check of a config version, resolved against the config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub name: String,
    pub addr: SocketAddr,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub threshold: u32,
}

impl Target {
    fn same_probe(&self, other: &Target) -> bool {
        self.addr == other.addr && self.kind == other.kind
    }
}

/// The probed checks of a config version (none without `dns.health`).
pub(crate) fn targets(config: &ValidConfig) -> Vec<Target> {
    let c = config.config();
    let Some(h) = c.dns.as_ref().and_then(|d| d.health.as_ref()) else { return vec![] };
    h.checks.iter().filter_map(|check| target(config, h, check)).collect()
}

fn target(config: &ValidConfig, h: &DnsHealth, c: &meridian_model::dns::DnsCheck) -> Option<Target> {
    let addr = match (&c.address, &c.region, c.port) {
        (Some(a), _, _) => a.parse().ok()?,
        (None, Some(r), Some(port)) => {
            let region = config.config().regions.iter().find(|x| &x.name == r)?;
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
    Some(Target {
        name: c.name.clone(),
        addr,
        kind,
        // Validated to at least 100ms; the floor guards a config that skipped validation.
        interval: h.interval_of(c).max(Duration::from_millis(100)),
        timeout: h.timeout_of(c),
        threshold: h.failure_threshold_of(c).max(1),
    })
}

/// Each check's next turn.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    entries: Vec<(Target, Instant)>,
}

impl Schedule {
    /// Takes a new plan at `now`; returns the checks whose past results no longer apply
    /// (removed, or probed differently).
    pub fn replan(&mut self, targets: Vec<Target>, now: Instant) -> Vec<String> {
        let mut forget: Vec<String> = self
            .entries
            .iter()
            .filter(|(old, _)| !targets.iter().any(|t| t.name == old.name && t.same_probe(old)))
            .map(|(old, _)| old.name.clone())
            .collect();
        let entries = targets
            .into_iter()
            .map(|t| {
                let next = match self.entries.iter().find(|(old, _)| old.name == t.name && old.same_probe(&t))
                {
                    Some((old, next)) if old.interval == t.interval => *next,
                    Some((_, next)) => (*next).min(now + t.interval),
                    None => now,
                };
                (t, next)
            })
            .collect();
        self.entries = entries;
        forget.dedup();
        forget
    }

    /// When the next check is due (`None`: nothing to probe).
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.iter().map(|(_, next)| *next).min()
    }

    /// The checks due at `now`, each moved to its next turn.
    pub fn take_due(&mut self, now: Instant) -> Vec<Target> {
        let mut due = Vec::new();
        for (t, next) in &mut self.entries {
            if *next > now {
                continue;
            }
            *next += t.interval;
            if *next <= now {
                *next = now + t.interval;
            }
            due.push(t.clone());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, interval_ms: u64, path: &str) -> Target {
        Target {
            name: name.into(),
            addr: "127.0.0.1:9".parse().unwrap(),
            kind: ProbeKind::Http { path: path.into(), host: "h".into(), tls: false },
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(100),
            threshold: 3,
        }
    }

    fn names(ts: &[Target]) -> Vec<&str> {
        ts.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn each_check_is_probed_on_its_own_interval() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = Schedule::default();
        assert_eq!(s.next_due(), None);
        assert!(s.replan(vec![t("fast", 1000, "/"), t("slow", 3000, "/")], t0).is_empty());
        assert_eq!(names(&s.take_due(t0)), ["fast", "slow"]);
        assert_eq!(s.next_due(), Some(ms(1000)));
        assert!(s.take_due(ms(999)).is_empty());
        assert_eq!(names(&s.take_due(ms(1000))), ["fast"]);
        assert_eq!(names(&s.take_due(ms(2000))), ["fast"]);
        assert_eq!(names(&s.take_due(ms(3000))), ["fast", "slow"]);
        assert_eq!(s.next_due(), Some(ms(4000)));
        // Far behind (a stopped process): the missed turns are skipped, not made up.
        assert_eq!(names(&s.take_due(ms(10_500))), ["fast", "slow"]);
        assert_eq!(s.next_due(), Some(ms(11_500)));
    }

    #[test]
    fn a_new_plan_keeps_turns_of_unchanged_checks() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut s = Schedule::default();
        s.replan(vec![t("a", 1000, "/"), t("b", 5000, "/"), t("c", 5000, "/"), t("gone", 1000, "/")], t0);
        s.take_due(t0);
        // At 400ms: a unchanged, b probed elsewhere, c every 2s now, d new, gone removed.
        let forget = s.replan(
            vec![t("a", 1000, "/"), t("b", 5000, "/down"), t("c", 2000, "/"), t("d", 1000, "/")],
            ms(400),
        );
        assert_eq!(forget, ["b", "gone"]);
        assert_eq!(names(&s.take_due(ms(400))), ["b", "d"]);
        assert_eq!(names(&s.take_due(ms(1000))), ["a"]);
        // c: its old turn was at 5s; one new interval from the change is sooner.
        assert_eq!(names(&s.take_due(ms(2399))), ["a", "d"]);
        assert_eq!(names(&s.take_due(ms(2400))), ["c", "d"]);
    }
}
