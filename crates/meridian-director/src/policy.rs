//! Routing policies: which member answers, from health and the client's network.
//!
//! Fail-open (Route 53's rule): when no member a policy could answer with is healthy, the
//! policy is evaluated again as if every member were healthy, so health never causes an empty
//! answer or SERVFAIL. For failover that answers the primary; for multivalue, up to 8 values of
//! all members.
//!
//! Routing controls come first: a member whose control is off is left out whatever its health,
//! and fail-open applies among the members still on. When every member is off, controls are
//! ignored for the record set (see `crate::controls`).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::health::{HealthTarget, HealthView};
use crate::table;
use crate::view::{Rr, View};

/// Most values a multivalue answer carries (as Route 53).
pub const MULTIVALUE_MAX: usize = 8;

/// A compiled member: a region's addresses of the record's family, or literal values, as
/// records of its record set (name and TTL), built once per config version.
#[derive(Debug)]
pub(crate) struct Member {
    pub region: Option<String>,
    pub records: Vec<Rr>,
    /// The health check that decides it, when configured (else its region's, or healthy).
    pub check: Option<String>,
}

pub(crate) enum Policy {
    Simple(Member),
    Failover(Member, Member),
    Weighted(Vec<(Member, u8)>),
    Latency(Vec<Member>),
    /// (country, continent, member); neither: the default rule.
    Geolocation(Vec<(Option<String>, Option<String>, Member)>),
    Geoproximity(Vec<(Member, i8)>),
    Multivalue(Vec<Member>),
}

/// What decided the answer.
pub(crate) struct Choice<'v> {
    /// The answer's records, borrowed from the view.
    pub records: Vec<&'v Rr>,
    pub policy: &'static str,
    /// Which member(s), in words: `primary us-east-1`, `members[2]`; written only when the
    /// answer is explained ([`Ctx::explain`]), empty otherwise.
    pub member: String,
    /// The table row that matched the client, if the policy reads one.
    pub row: Option<IpNet>,
    /// Whether the answer depends on the client's network (ECS scope is then meaningful).
    pub by_client: bool,
    /// The routing controls (off) that left members out of this answer (explained answers).
    pub switched_off: Vec<String>,
    /// Every member was switched off, so the controls were ignored.
    pub controls_ignored: bool,
}

pub(crate) struct Ctx<'a> {
    pub view: &'a View,
    pub record_set: &'a str,
    pub client: Option<IpAddr>,
    pub health: &'a dyn HealthView,
    pub roll: u64,
    /// Whether to write the choice out in words (`meridian director explain`). Answers on the
    /// wire leave it off: the decision is the same, only the text is not built.
    pub explain: bool,
}

impl Ctx<'_> {
    fn healthy(&self, i: usize, m: &Member) -> bool {
        match (&m.check, &m.region) {
            (Some(c), _) => self.health.healthy(HealthTarget::Check(c)),
            (None, Some(r)) => self.health.healthy(HealthTarget::Region(r)),
            (None, None) => {
                self.health.healthy(HealthTarget::Member { record_set: self.record_set, member: i })
            }
        }
    }
}

/// Evaluates `policy`; the flag says whether fail-open was applied.
pub(crate) fn choose<'v>(policy: &'v Policy, cx: &Ctx<'_>) -> (Choice<'v>, bool) {
    if cx.health.controls_active() {
        return choose_controlled(policy, cx);
    }
    let real = |i: usize, m: &Member| cx.healthy(i, m);
    if let Some(c) = eval(policy, cx, &real) {
        return (c, false);
    }
    let all = |_: usize, _: &Member| true;
    // Even with every member counted healthy a policy may have nothing to give (e.g. members
    // whose regions have no address of the asked family): an empty answer, never a panic.
    let c = eval(policy, cx, &all).unwrap_or_else(|| nothing(policy, cx));
    (c, true)
}

fn nothing<'v>(policy: &Policy, cx: &Ctx<'_>) -> Choice<'v> {
    choice(cx, policy_name(policy), || "no member has an address to answer with".into(), vec![])
}

/// As [`choose`] while some routing control is off: members switched off are left out, then
/// health with fail-open among the others; every member off: controls ignored.
fn choose_controlled<'v>(policy: &'v Policy, cx: &Ctx<'_>) -> (Choice<'v>, bool) {
    let off: Vec<Option<String>> = policy
        .members()
        .iter()
        .map(|m| m.region.as_deref().and_then(|r| cx.health.switched_off(cx.record_set, r)))
        .collect();
    let mut names: Vec<String> = if cx.explain { off.iter().flatten().cloned().collect() } else { vec![] };
    names.dedup();
    let any_off = off.iter().any(Option::is_some);
    let all_off = off.iter().all(Option::is_some);
    let on = |i: usize| !all_off && off.get(i).is_none_or(Option::is_none);
    let with = |mut c: Choice<'v>, ignored: bool| {
        c.switched_off = names.clone();
        c.controls_ignored = ignored;
        c
    };
    if !all_off {
        let real = |i: usize, m: &Member| on(i) && cx.healthy(i, m);
        if let Some(c) = eval(policy, cx, &real) {
            return (with(c, false), false);
        }
        let still_on = |i: usize, _: &Member| on(i);
        if let Some(c) = eval(policy, cx, &still_on) {
            return (with(c, false), true);
        }
    }
    let (c, fail_open) = {
        let all = |_: usize, _: &Member| true;
        (eval(policy, cx, &all).unwrap_or_else(|| nothing(policy, cx)), true)
    };
    (with(c, any_off), fail_open)
}

fn policy_name(p: &Policy) -> &'static str {
    match p {
        Policy::Simple(_) => "simple",
        Policy::Failover(..) => "failover",
        Policy::Weighted(_) => "weighted",
        Policy::Latency(_) => "latency",
        Policy::Geolocation(_) => "geolocation",
        Policy::Geoproximity(_) => "geoproximity",
        Policy::Multivalue(_) => "multivalue",
    }
}

fn name(i: usize, m: &Member) -> String {
    m.region.clone().unwrap_or_else(|| format!("members[{i}]"))
}

/// A choice; `member` (the words for it) is called only when the answer is explained.
fn choice<'v>(
    cx: &Ctx<'_>,
    policy: &'static str,
    member: impl FnOnce() -> String,
    records: Vec<&'v Rr>,
) -> Choice<'v> {
    Choice {
        records,
        policy,
        member: if cx.explain { member() } else { String::new() },
        row: None,
        by_client: false,
        switched_off: vec![],
        controls_ignored: false,
    }
}

/// `None` when no member is healthy.
fn eval<'v>(policy: &'v Policy, cx: &Ctx<'_>, ok: &dyn Fn(usize, &Member) -> bool) -> Option<Choice<'v>> {
    let all = |m: &'v Member| m.records.iter().collect::<Vec<_>>();
    match policy {
        Policy::Simple(m) => Some(choice(cx, "simple", || name(0, m), all(m))),
        Policy::Failover(primary, secondary) => {
            if ok(0, primary) {
                Some(choice(cx, "failover", || format!("primary {}", name(0, primary)), all(primary)))
            } else if ok(1, secondary) {
                Some(choice(cx, "failover", || format!("secondary {}", name(1, secondary)), all(secondary)))
            } else {
                None
            }
        }
        Policy::Weighted(members) => {
            let live = Live::new(members.len(), |i| ok(i, &members[i].0));
            let weighted = || (0..members.len()).filter(|&i| live.has(i) && members[i].1 > 0);
            let total: u64 = weighted().map(|i| u64::from(members[i].1)).sum();
            let i = if total > 0 {
                let mut r = cx.roll % total;
                // `r` is below the total, so some member's range holds it; the last one
                // otherwise (never reached).
                let mut pick = weighted().next_back()?;
                for i in weighted() {
                    let w = u64::from(members[i].1);
                    if r < w {
                        pick = i;
                        break;
                    }
                    r -= w;
                }
                pick
            } else if live.count() > 0 {
                let n = live.count() as u64;
                (0..members.len()).filter(|&i| live.has(i)).nth((cx.roll % n) as usize)?
            } else {
                return None;
            };
            let standby = if members[i].1 == 0 { " (standby)" } else { "" };
            Some(choice(
                cx,
                "weighted",
                || format!("{}{standby}", name(i, &members[i].0)),
                all(&members[i].0),
            ))
        }
        Policy::Latency(members) => {
            let row = cx.client.and_then(|ip| table::lookup(&cx.view.latency, ip));
            let live = (0..members.len()).filter(|&i| ok(i, &members[i]));
            let ms = |i: &usize| {
                let region = members[*i].region.as_deref().unwrap_or_default();
                row.and_then(|(_, r)| r.get(region).copied()).unwrap_or(u32::MAX)
            };
            // min_by_key keeps the first of equals: list order breaks ties and decides
            // without a row.
            let i = live.min_by_key(ms)?;
            let member = || match row {
                Some(_) if ms(&i) < u32::MAX => format!("{} ({} ms)", name(i, &members[i]), ms(&i)),
                _ => format!("{} (first listed; no latency known)", name(i, &members[i])),
            };
            let mut c = choice(cx, "latency", member, all(&members[i]));
            (c.row, c.by_client) = (row.map(|(n, _)| n), true);
            Some(c)
        }
        Policy::Geolocation(rules) => {
            let row = cx.client.and_then(|ip| cx.view.geo.lookup(ip));
            let place = row.map(|(_, p)| p).unwrap_or_default();
            let (country, continent) = (place.country(), place.continent());
            let pick = |want: &dyn Fn(Option<&str>, Option<&str>) -> bool| {
                rules.iter().enumerate().find(|(_, (co, ct, _))| want(co.as_deref(), ct.as_deref()))
            };
            let specific = [
                pick(&|co, _| co.is_some() && co == country),
                pick(&|co, ct| co.is_none() && ct.is_some() && ct == continent),
                pick(&|co, ct| co.is_none() && ct.is_none()),
            ];
            let mut matching = specific.into_iter().flatten().peekable();
            let mut c = if matching.peek().is_none() {
                choice(cx, "geolocation", || "no rule matches and no default rule".into(), vec![])
            } else {
                let (i, (co, ct, m)) = matching.find(|(i, (_, _, m))| ok(*i, m))?;
                let rule = co.as_deref().or(ct.as_deref()).unwrap_or("default");
                choice(cx, "geolocation", || format!("rules[{i}] {rule} → {}", name(i, m)), all(m))
            };
            (c.row, c.by_client) = (row.map(|(n, _)| n), true);
            Some(c)
        }
        Policy::Geoproximity(members) => {
            let row = cx.client.and_then(|ip| cx.view.geo.lookup(ip));
            let from = row.and_then(|(_, p)| p.location);
            let live = (0..members.len()).filter(|&i| ok(i, &members[i].0));
            let biased = |i: &usize| {
                let (m, bias) = &members[*i];
                let to = m.region.as_ref().and_then(|r| cx.view.locations.get(r));
                match (from, to) {
                    (Some(f), Some(t)) => table::km(f, *t) * (1.0 - f64::from(*bias) / 100.0),
                    _ => f64::MAX,
                }
            };
            let i = live.min_by(|a, b| biased(a).total_cmp(&biased(b)))?;
            let member = || {
                if from.is_some() {
                    format!("{} ({:.0} km biased)", name(i, &members[i].0), biased(&i))
                } else {
                    format!("{} (first listed; no client location)", name(i, &members[i].0))
                }
            };
            let mut c = choice(cx, "geoproximity", member, all(&members[i].0));
            (c.row, c.by_client) = (row.map(|(n, _)| n), true);
            Some(c)
        }
        Policy::Multivalue(members) => {
            let live = Live::new(members.len(), |i| ok(i, &members[i]));
            let values = || (0..members.len()).filter(|&i| live.has(i)).flat_map(|i| &members[i].records);
            let n = values().count();
            if n == 0 {
                return None;
            }
            let start = (cx.roll % n as u64) as usize;
            let records: Vec<&Rr> = values().cycle().skip(start).take(n.min(MULTIVALUE_MAX)).collect();
            let member = || {
                let names: Vec<String> =
                    (0..members.len()).filter(|&i| live.has(i)).map(|i| name(i, &members[i])).collect();
                format!("{} of healthy {}", n.min(MULTIVALUE_MAX), names.join(", "))
            };
            Some(choice(cx, "multivalue", member, records))
        }
    }
}

/// The members a policy may answer with, health asked once each: a bit set, with a heap part
/// only past 128 members (per query, so no allocation in the common case).
struct Live {
    bits: u128,
    more: Vec<bool>,
}

impl Live {
    fn new(n: usize, ok: impl Fn(usize) -> bool) -> Live {
        let mut live = Live { bits: 0, more: Vec::new() };
        for i in 0..n {
            match (i < 128, ok(i)) {
                (true, true) => live.bits |= 1 << i,
                (true, false) => {}
                (false, v) => live.more.push(v),
            }
        }
        live
    }

    fn has(&self, i: usize) -> bool {
        if i < 128 { self.bits & (1 << i) != 0 } else { self.more.get(i - 128).copied().unwrap_or(false) }
    }

    fn count(&self) -> usize {
        self.bits.count_ones() as usize + self.more.iter().filter(|&&v| v).count()
    }
}

impl Policy {
    /// The health checks its members are decided by (a region's own check is named like the
    /// region), in order, once each.
    pub(crate) fn checks(&self) -> Vec<&str> {
        let members = self.members();
        let mut out: Vec<&str> = Vec::new();
        for r in members.iter().filter_map(|m| m.check.as_deref().or(m.region.as_deref())) {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }
}

impl Policy {
    /// Its members in the order the policy indexes them (failover: primary, secondary).
    pub(crate) fn members(&self) -> Vec<&Member> {
        match self {
            Policy::Simple(m) => vec![m],
            Policy::Failover(a, b) => vec![a, b],
            Policy::Weighted(v) => v.iter().map(|(m, _)| m).collect(),
            Policy::Latency(v) | Policy::Multivalue(v) => v.iter().collect(),
            Policy::Geolocation(v) => v.iter().map(|(_, _, m)| m).collect(),
            Policy::Geoproximity(v) => v.iter().map(|(m, _)| m).collect(),
        }
    }
}
