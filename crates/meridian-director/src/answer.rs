//! The answer to one question: a pure function of the view, the question, the client and
//! health, so every case is unit-testable without sockets.

use std::fmt;
use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use crate::health::HealthView;
use crate::policy::{self, Ctx};
use crate::view::{View, ZoneView};

/// Who asks: the resolver's address, the EDNS Client Subnet it sent (RFC 7871; the network
/// with its source prefix length), and a uniform random number for weighted and multivalue
/// choices (injected so tests are deterministic).
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: IpAddr,
    pub ecs: Option<IpNet>,
    pub roll: u64,
}

impl ClientInfo {
    /// The address policies decide on: the ECS network when present (a source prefix of 0
    /// means the resolver withholds it, and then no client network is known), else the
    /// resolver's own address.
    pub fn deciding_addr(&self) -> Option<IpAddr> {
        match self.ecs {
            Some(n) if n.prefix_len() == 0 => None,
            Some(n) => Some(n.network()),
            None => Some(self.addr),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    Refused,
}

/// Why the answer is what it is (for `meridian director explain` and tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Why {
    pub zone: Option<String>,
    pub record_set: Option<String>,
    pub policy: Option<&'static str>,
    pub member: Option<String>,
    /// The latency or geo table row that matched the client.
    pub row: Option<IpNet>,
    pub client: Option<IpAddr>,
    /// No member was healthy, so the policy answered as if all were (Route 53's rule).
    pub fail_open: bool,
    /// The routing controls (off) that left members out of the answer.
    pub switched_off: Vec<String>,
    /// Every member was switched off, so the controls were ignored (never an empty answer).
    pub controls_ignored: bool,
    pub note: String,
}

/// A complete answer; the server turns it into a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rcode: Rcode,
    /// The AA flag: set for every name inside our zones.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    /// The ECS scope prefix length to return; `Some` exactly when the query carried ECS.
    pub ecs_scope: Option<u8>,
    pub why: Why,
}

/// Answers `qname`/`qtype` for `client`.
pub fn answer(
    view: &View,
    qname: &Name,
    qtype: RecordType,
    client: &ClientInfo,
    health: &dyn HealthView,
) -> Answer {
    let lower = LowerName::from(qname);
    let mut why = Why { client: client.deciding_addr(), ..Why::default() };
    let Some(zone) = view.zones.iter().find(|z| z.name.zone_of(&lower)) else {
        why.note = "outside every zone".into();
        return Answer { rcode: Rcode::Refused, authoritative: false, ..empty(client, why) };
    };
    why.zone = Some(zone.name.to_string());
    let apex = zone.name == lower;
    let mut a = Answer { rcode: Rcode::NoError, authoritative: true, ..empty(client, why) };
    if apex && qtype == RecordType::SOA {
        a.answers.push(zone.soa.clone());
        a.why.note = "zone apex SOA".into();
        return a;
    }
    if apex && qtype == RecordType::NS {
        a.answers.extend(zone.ns.iter().cloned());
        a.additional.extend(zone.glue.iter().cloned());
        a.why.note = "zone apex NS".into();
        return a;
    }
    let set = view.sets.get(&(lower.clone(), qtype)).map(|s| (s, qtype)).or_else(|| {
        // A CNAME answers every type at its name (validation keeps other types off it).
        view.sets.get(&(lower.clone(), RecordType::CNAME)).map(|s| (s, RecordType::CNAME))
    });
    if let Some((set, found)) = set {
        let cx =
            Ctx { view, record_set: &set.label, client: client.deciding_addr(), health, roll: client.roll };
        let (choice, fail_open) = policy::choose(&set.policy, &cx);
        a.why.record_set = Some(set.label.clone());
        a.why.policy = Some(choice.policy);
        a.why.member = Some(choice.member.clone());
        a.why.row = choice.row;
        a.why.fail_open = fail_open;
        a.why.switched_off = choice.switched_off.clone();
        a.why.controls_ignored = choice.controls_ignored;
        if let Some(ecs) = client.ecs {
            a.ecs_scope = Some(scope(&choice, ecs));
        }
        a.answers =
            choice.rdata.into_iter().map(|d| Record::from_rdata(set.name.clone(), set.ttl, d)).collect();
        if found == RecordType::CNAME && qtype != RecordType::CNAME {
            chase(view, &mut a, qtype, client, health);
        }
        if a.answers.is_empty() {
            a.authority.push(negative_soa(zone));
        }
        return a;
    }
    let glue: Vec<Record> =
        zone.glue.iter().filter(|r| r.name == *qname && r.record_type() == qtype).cloned().collect();
    if !glue.is_empty() {
        a.answers = glue;
        a.why.note = "name server address".into();
        return a;
    }
    a.authority.push(negative_soa(zone));
    if apex || view.names.contains(&lower) {
        a.why.note = "no data of this type (NODATA)".into();
    } else {
        a.rcode = Rcode::NxDomain;
        a.why.note = "no such name (NXDOMAIN)".into();
    }
    a
}

/// The ECS scope an answer holds for: the matched row's network, or, without one, what the
/// resolver told us; an answer that ignores the client holds for everyone (0).
fn scope(choice: &policy::Choice, ecs: IpNet) -> u8 {
    match (choice.by_client, choice.row) {
        (false, _) => 0,
        (true, Some(row)) => row.prefix_len(),
        (true, None) => ecs.prefix_len(),
    }
}

/// RFC 1034 §4.3.2: a CNAME whose target is in one of our zones is followed, adding the
/// target's records (up to 8 links, which also ends loops). The ECS scope is the most
/// specific along the chain.
fn chase(view: &View, a: &mut Answer, qtype: RecordType, client: &ClientInfo, health: &dyn HealthView) {
    for _ in 0..8 {
        let Some(RData::CNAME(target)) = a.answers.last().map(|r| &r.data) else { return };
        let t = LowerName::from(&target.0);
        if !view.zones.iter().any(|z| z.name.zone_of(&t)) {
            return;
        }
        let Some(set) = view.sets.get(&(t.clone(), qtype)).or_else(|| view.sets.get(&(t, RecordType::CNAME)))
        else {
            return;
        };
        let cx =
            Ctx { view, record_set: &set.label, client: client.deciding_addr(), health, roll: client.roll };
        let (choice, _) = policy::choose(&set.policy, &cx);
        if let (Some(s), Some(ecs)) = (a.ecs_scope, client.ecs) {
            a.ecs_scope = Some(s.max(scope(&choice, ecs)));
        }
        a.why.note = format!("followed the CNAME to {}", set.label);
        a.answers.extend(choice.rdata.into_iter().map(|d| Record::from_rdata(set.name.clone(), set.ttl, d)));
    }
}

fn empty(client: &ClientInfo, why: Why) -> Answer {
    Answer {
        rcode: Rcode::NoError,
        authoritative: false,
        answers: vec![],
        authority: vec![],
        additional: vec![],
        ecs_scope: client.ecs.map(|_| 0),
        why,
    }
}

/// The SOA for negative answers, with the negative-caching TTL of RFC 2308 §3: the smaller of
/// the SOA's TTL and its MINIMUM field.
fn negative_soa(zone: &ZoneView) -> Record {
    let mut soa = zone.soa.clone();
    if let RData::SOA(s) = &soa.data {
        soa.ttl = zone.ttl.min(s.minimum);
    }
    soa
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = self.client.map_or("unknown (ECS /0)".to_string(), |c| c.to_string());
        writeln!(f, "client:     {client}")?;
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
            let row = self.row.map_or("none matched".to_string(), |r| r.to_string());
            writeln!(f, "table row:  {row}")?;
            writeln!(
                f,
                "health:     {}",
                if self.fail_open { "no member healthy: fail open (all members)" } else { "ok" }
            )?;
            if !self.switched_off.is_empty() {
                let what = if self.controls_ignored {
                    "every member off: controls ignored (never an empty answer)"
                } else {
                    "members left out"
                };
                writeln!(f, "controls:   {} off: {what}", self.switched_off.join(", "))?;
            }
        }
        if !self.note.is_empty() {
            writeln!(f, "note:       {}", self.note)?;
        }
        Ok(())
    }
}
