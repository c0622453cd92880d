//! `meridian director explain` and `GET /v1/explain`: the answer to one question and why —
//! policy, member, table row, fail-open, and the health behind it per vantage point.

use std::fmt::{self, Write};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use ipnet::IpNet;
use meridian_health::{CheckStatus, Quorum};
use meridian_model::ValidConfig;
use serde::Serialize;

use crate::{AllHealthy, ClientInfo, GeoDatabase, HealthView, Rcode, View, ViewError, answer};

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("invalid name {0:?}")]
    Name(String),
    #[error("unknown record type {0:?}")]
    Type(String),
    #[error("invalid client subnet {0:?}: expected a CIDR such as 198.51.100.0/24")]
    Subnet(String),
    #[error(transparent)]
    View(#[from] ViewError),
}

/// The answer and why; `Display` is the text `meridian director explain` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub rcode: &'static str,
    pub authoritative: bool,
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub ecs_scope: Option<u8>,
    /// The address policies decided on; none when ECS /0 withholds it.
    pub client: Option<String>,
    pub zone: Option<String>,
    pub record_set: Option<String>,
    pub policy: Option<&'static str>,
    pub member: Option<String>,
    pub table_row: Option<String>,
    /// No member was healthy, so the policy answered as if all were.
    pub fail_open: bool,
    /// The routing controls (off) that left members out of the answer.
    pub routing_controls_off: Vec<String>,
    /// Every member was switched off, so the controls were ignored.
    pub controls_ignored: bool,
    pub note: String,
    pub health: HealthExplanation,
}

/// The health behind the answer.
#[derive(Debug, Clone, Serialize)]
pub struct HealthExplanation {
    /// `quorum` (a running director's checkers) or `all healthy` (from a file).
    pub source: &'static str,
    /// Most vantage points are silent: the verdicts are the last ones, frozen.
    pub partitioned: bool,
    /// The checks that decide the record set's members (and their children).
    pub checks: Vec<CheckStatus>,
}

/// Explains the answer for `name`/`rtype` asked by a resolver at `resolver`, with an optional
/// EDNS Client Subnet, from a config file: every target healthy; weighted and multivalue
/// choices use the first draw (roll 0). `geo_database` backs the config's `dns.geo` rows.
pub fn explain(
    config: &ValidConfig,
    name: &str,
    rtype: &str,
    resolver: IpAddr,
    subnet: Option<&str>,
    geo_database: Option<Arc<GeoDatabase>>,
) -> Result<String, ExplainError> {
    let view = View::build(config, 0)?.with_geo_database(geo_database);
    Ok(explain_view(&view, name, rtype, resolver, subnet, &AllHealthy, None)?.to_string())
}

/// As [`explain`], against a running director's view and health.
pub fn explain_view(
    view: &View,
    name: &str,
    rtype: &str,
    resolver: IpAddr,
    subnet: Option<&str>,
    health: &dyn HealthView,
    quorum: Option<&Quorum>,
) -> Result<Explanation, ExplainError> {
    let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    let qname = Name::from_str(&fqdn).map_err(|_| ExplainError::Name(name.into()))?;
    let qtype =
        RecordType::from_str(&rtype.to_ascii_uppercase()).map_err(|_| ExplainError::Type(rtype.into()))?;
    let ecs = subnet
        .map(|s| s.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| ExplainError::Subnet(s.into())))
        .transpose()?;
    let a = answer(view, &qname, qtype, &ClientInfo { addr: resolver, ecs, roll: 0 }, health);
    let rcode = match a.rcode {
        Rcode::NoError if a.answers.is_empty() => "NOERROR (no data)",
        Rcode::NoError => "NOERROR",
        Rcode::NxDomain => "NXDOMAIN",
        Rcode::Refused => "REFUSED",
    };
    let rr = |r: &Record| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data);
    let regions: Vec<String> = a
        .why
        .record_set
        .as_ref()
        .and_then(|label| {
            let n = LowerName::from(Name::from_str(label).ok()?);
            let set =
                view.sets.get(&(n.clone(), qtype)).or_else(|| view.sets.get(&(n, RecordType::CNAME)))?;
            Some(set.policy.checks().into_iter().map(str::to_string).collect())
        })
        .unwrap_or_default();
    let health = match quorum {
        None => HealthExplanation { source: "all healthy", partitioned: false, checks: vec![] },
        Some(q) => {
            let st = q.status();
            let mut wanted: Vec<String> = regions.clone();
            for c in st.checks.iter().filter(|c| regions.contains(&c.name)) {
                wanted.extend(c.children.iter().cloned());
            }
            let checks = st.checks.into_iter().filter(|c| wanted.contains(&c.name)).collect();
            HealthExplanation { source: "quorum", partitioned: st.partitioned, checks }
        }
    };
    Ok(Explanation {
        name: fqdn,
        record_type: qtype.to_string(),
        rcode,
        authoritative: a.authoritative,
        answers: a.answers.iter().map(rr).collect(),
        authority: a.authority.iter().map(rr).collect(),
        ecs_scope: a.ecs_scope,
        client: a.why.client.map(|c| c.to_string()),
        zone: a.why.zone.clone(),
        record_set: a.why.record_set.clone(),
        policy: a.why.policy,
        member: a.why.member.clone(),
        table_row: a.why.row.map(|r| r.to_string()),
        fail_open: a.why.fail_open,
        routing_controls_off: a.why.switched_off.clone(),
        controls_ignored: a.why.controls_ignored,
        note: a.why.note.clone(),
        health,
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aa = if self.authoritative { ", authoritative" } else { "" };
        writeln!(f, "{} {}: {}{aa}", self.name, self.record_type, self.rcode)?;
        for r in &self.answers {
            writeln!(f, "  {r}")?;
        }
        for r in &self.authority {
            writeln!(f, "  authority: {r}")?;
        }
        if let Some(scope) = self.ecs_scope {
            writeln!(f, "  ECS scope: /{scope}")?;
        }
        writeln!(f, "client:     {}", self.client.as_deref().unwrap_or("unknown (ECS /0)"))?;
        writeln!(f, "zone:       {}", self.zone.as_deref().unwrap_or("none"))?;
        if let Some(rs) = &self.record_set {
            writeln!(f, "record set: {rs}")?;
        }
        if let Some(p) = self.policy {
            writeln!(f, "policy:     {p}")?;
        }
        if let Some(m) = &self.member {
            writeln!(f, "member:     {m}")?;
        }
        if self.policy.is_some() {
            writeln!(f, "table row:  {}", self.table_row.as_deref().unwrap_or("none matched"))?;
            let h = if self.fail_open { "no member healthy: fail open (all members)" } else { "ok" };
            writeln!(f, "health:     {h}")?;
            if !self.routing_controls_off.is_empty() {
                let what = if self.controls_ignored {
                    "every member off: controls ignored (never an empty answer)"
                } else {
                    "members left out whatever their health"
                };
                writeln!(f, "controls:   {} off: {what}", self.routing_controls_off.join(", "))?;
            }
        }
        if !self.note.is_empty() {
            writeln!(f, "note:       {}", self.note)?;
        }
        let mut s = String::new();
        match self.health.source {
            "quorum" if self.health.partitioned => {
                s.push_str("health view: checkers' quorum, PARTITIONED: most vantage points are silent, keeping the last verdicts\n")
            }
            "quorum" => s.push_str("health view: checkers' quorum\n"),
            _ => s.push_str("health view: all healthy (from the file; ask a running director with --director for live health)\n"),
        }
        for c in &self.health.checks {
            let verdict = if c.healthy { "healthy" } else { "UNHEALTHY" };
            let _ = writeln!(s, "  check {}: {verdict} — {}", c.name, c.reason);
            for v in &c.vantage_points {
                let _ = writeln!(
                    s,
                    "    {} ({}): {}, {} ms ago{}{}",
                    v.checker,
                    v.region,
                    if v.healthy { "healthy" } else { "down" },
                    v.age_ms,
                    if !v.fresh {
                        ", stale"
                    } else if !v.counted {
                        ", own region: not counted"
                    } else {
                        ""
                    },
                    v.error.as_deref().map(|e| format!(", {e}")).unwrap_or_default(),
                );
            }
        }
        f.write_str(&s)
    }
}
