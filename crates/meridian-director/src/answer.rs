//! The answer to one question: a pure function of the view, the question, the client and
//! health, so every case is unit-testable without sockets.

use std::net::IpAddr;

use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use crate::health::HealthView;
use crate::policy::{self, Ctx};
use crate::view::{Rr, SetView, View};

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

/// Answers `qname`/`qtype` for `client`, with the reasons written out in [`Answer::why`].
pub fn answer(
    view: &View,
    qname: &Name,
    qtype: RecordType,
    client: &ClientInfo,
    health: &dyn HealthView,
) -> Answer {
    let r = reply(view, &LowerName::from(qname), qtype, client, health, true);
    Answer {
        rcode: r.rcode,
        authoritative: r.authoritative,
        answers: r.answers.into_iter().map(|r| r.record.clone()).collect(),
        authority: r.authority.into_iter().cloned().collect(),
        additional: r.additional.iter().map(|r| r.record.clone()).collect(),
        ecs_scope: r.ecs_scope,
        why: r.why,
    }
}

/// An [`Answer`] whose records are borrowed from the view: what the server encodes, with
/// nothing copied per query but the list of answer records.
pub(crate) struct Reply<'v> {
    pub rcode: Rcode,
    pub authoritative: bool,
    pub answers: Vec<&'v Rr>,
    /// The SOA of a negative answer (NXDOMAIN, NODATA).
    pub authority: Option<&'v Record>,
    pub additional: &'v [Rr],
    /// Whether a CNAME was followed: answers then have other owners than the question's name.
    pub chased: bool,
    pub ecs_scope: Option<u8>,
    /// Filled in only when `explain` was asked; the decision does not depend on it.
    pub why: Why,
}

/// The one answer logic, for the wire (`explain` false: no text is built) and for
/// [`answer`]/`explain` (`explain` true: [`Why`] in words).
pub(crate) fn reply<'v>(
    view: &'v View,
    qname: &LowerName,
    qtype: RecordType,
    client: &ClientInfo,
    health: &dyn HealthView,
    explain: bool,
) -> Reply<'v> {
    let mut a = Reply {
        rcode: Rcode::NoError,
        authoritative: false,
        answers: Vec::new(),
        authority: None,
        additional: &[],
        chased: false,
        ecs_scope: client.ecs.map(|_| 0),
        why: Why { client: client.deciding_addr(), ..Why::default() },
    };
    let note = |a: &mut Reply<'_>, text: &str| {
        if explain {
            a.why.note = text.to_string();
        }
    };
    let Some(zone) = view.zones.iter().find(|z| z.name.zone_of(qname)) else {
        note(&mut a, "outside every zone");
        a.rcode = Rcode::Refused;
        return a;
    };
    if explain {
        a.why.zone = Some(zone.name.to_string());
    }
    a.authoritative = true;
    let apex = zone.name == *qname;
    if apex && qtype == RecordType::SOA {
        a.answers.push(&zone.soa);
        note(&mut a, "zone apex SOA");
        return a;
    }
    if apex && qtype == RecordType::NS {
        a.answers.extend(&zone.ns);
        a.additional = &zone.glue;
        note(&mut a, "zone apex NS");
        return a;
    }
    let set = view.sets.get(&(qname.clone(), qtype)).map(|s| (s, qtype)).or_else(|| {
        // A CNAME answers every type at its name (validation keeps other types off it).
        view.sets.get(&(qname.clone(), RecordType::CNAME)).map(|s| (s, RecordType::CNAME))
    });
    if let Some((set, found)) = set {
        let (choice, fail_open) = decide(view, set, client, health, explain);
        if explain {
            a.why.record_set = Some(set.label.clone());
            a.why.member = Some(choice.member.clone());
            a.why.switched_off = choice.switched_off.clone();
        }
        a.why.policy = Some(choice.policy);
        a.why.row = choice.row;
        a.why.fail_open = fail_open;
        a.why.controls_ignored = choice.controls_ignored;
        if let Some(ecs) = client.ecs {
            a.ecs_scope = Some(scope(&choice, ecs));
        }
        a.answers = choice.records;
        if found == RecordType::CNAME && qtype != RecordType::CNAME {
            chase(view, &mut a, qtype, client, health, explain);
        }
        if a.answers.is_empty() {
            a.authority = Some(&zone.negative_soa);
        }
        return a;
    }
    a.answers.extend(zone.glue.iter().filter(|r| r.name == **qname && r.record_type() == qtype));
    if !a.answers.is_empty() {
        note(&mut a, "name server address");
        return a;
    }
    a.authority = Some(&zone.negative_soa);
    if apex || view.names.contains(qname) {
        note(&mut a, "no data of this type (NODATA)");
    } else {
        a.rcode = Rcode::NxDomain;
        note(&mut a, "no such name (NXDOMAIN)");
    }
    a
}

/// The ECS scope an answer holds for: the matched row's network, or, without one, what the
/// resolver told us; an answer that ignores the client holds for everyone (0).
/// The record set's policy evaluated for this client; the flag says whether fail-open applied.
fn decide<'v>(
    view: &'v View,
    set: &'v SetView,
    client: &ClientInfo,
    health: &dyn HealthView,
    explain: bool,
) -> (policy::Choice<'v>, bool) {
    let cx = Ctx {
        view,
        record_set: &set.label,
        client: client.deciding_addr(),
        health,
        roll: client.roll,
        explain,
    };
    policy::choose(&set.policy, &cx)
}

fn scope(choice: &policy::Choice<'_>, ecs: IpNet) -> u8 {
    match (choice.by_client, choice.row) {
        (false, _) => 0,
        (true, Some(row)) => row.prefix_len(),
        (true, None) => ecs.prefix_len(),
    }
}

/// RFC 1034 §4.3.2: a CNAME whose target is in one of our zones is followed, adding the
/// target's records (up to 8 links, which also ends loops). The ECS scope is the most
/// specific along the chain.
fn chase<'v>(
    view: &'v View,
    a: &mut Reply<'v>,
    qtype: RecordType,
    client: &ClientInfo,
    health: &dyn HealthView,
    explain: bool,
) {
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
        let (choice, _) = decide(view, set, client, health, explain);
        if let (Some(s), Some(ecs)) = (a.ecs_scope, client.ecs) {
            a.ecs_scope = Some(s.max(scope(&choice, ecs)));
        }
        if explain {
            a.why.note = format!("followed the CNAME to {}", set.label);
        }
        a.chased = true;
        a.answers.extend(choice.records);
    }
}
