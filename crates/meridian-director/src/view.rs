//! The config compiled for answering: built once per config version, read per query.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::Query;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use ipnet::IpNet;
use meridian_model::ValidConfig;
use meridian_model::dns::{self, RateLimit, RoutingPolicy};
use meridian_model::{Location, Region};
use rustc_hash::FxBuildHasher;

use crate::geo::{GeoDatabase, GeoTable};
use crate::policy::{Member, Policy};

/// A config that validation accepted but the director cannot compile; a bug in validation
/// if it ever happens, so the version is rejected rather than half-served.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("the config has no dns section")]
    NoDns,
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

pub(crate) struct ZoneView {
    pub name: LowerName,
    pub ttl: u32,
    pub soa: Rr,
    /// The SOA for negative answers, with the negative-caching TTL of RFC 2308 §3: the smaller
    /// of the SOA's TTL and its MINIMUM field.
    pub negative_soa: Record,
    pub ns: Vec<Rr>,
    /// A/AAAA of name servers inside the zone.
    pub glue: Vec<Rr>,
}

/// A record and hickory-proto's encoding of it as an answer to a question for its own name,
/// made once per config version. In that encoding the owner name is a compression pointer to
/// the question (offset 12) and other names are compressed against the question's labels only,
/// so the bytes hold in any response whose question is that name, in any letter case, at any
/// place in the answer section: the transport copies them instead of encoding the record per
/// query (`crate::transport`). Empty when the encoder refused the record (never seen; the
/// transport then encodes the response as usual).
#[derive(Debug)]
pub(crate) struct Rr {
    pub record: Record,
    pub wire: Box<[u8]>,
}

impl Rr {
    pub(crate) fn new(record: Record) -> Rr {
        let mut buf = Vec::new();
        let mut encoder = BinEncoder::new(&mut buf);
        let question = Query::query(record.name.clone(), record.record_type());
        // The header's 12 bytes, then the question, whose labels the record's names point to.
        let start = (|| {
            encoder.emit_vec(&[0; 12])?;
            question.emit(&mut encoder)?;
            let start = encoder.offset();
            record.emit(&mut encoder)?;
            Ok::<_, hickory_proto::ProtoError>(start)
        })();
        let wire = match start {
            Ok(start) => buf[start..].into(),
            Err(_) => Box::default(),
        };
        Rr { record, wire }
    }
}

impl Deref for Rr {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

pub(crate) struct SetView {
    /// The record set's name as configured, lowercase (explanations, routing controls).
    pub label: String,
    pub policy: Policy,
}

/// The compiled view of one config version.
pub struct View {
    /// The SOA serial of this version.
    pub serial: u32,
    /// The config's content hash.
    pub hash: String,
    pub max_udp_payload: u16,
    pub rate_limit: RateLimit,
    pub(crate) zones: Vec<ZoneView>,
    /// Keyed by config data, read per query: the unkeyed Fx hash (rustc-hash), since keyed
    /// SipHash's flooding defence buys nothing for maps clients cannot fill, and it cost about
    /// 2,000 instructions per query.
    pub(crate) sets: HashMap<(LowerName, RecordType), SetView, FxBuildHasher>,
    /// Every name with data, and every ancestor of one inside its zone (empty non-terminals).
    pub(crate) names: HashSet<LowerName, FxBuildHasher>,
    pub(crate) latency: Vec<(IpNet, HashMap<String, u32, FxBuildHasher>)>,
    pub(crate) geo: GeoTable,
    pub(crate) locations: HashMap<String, Location>,
}

fn err(path: impl Into<String>, message: impl ToString) -> ViewError {
    ViewError::Invalid { path: path.into(), message: message.to_string() }
}

fn name(path: &str, s: &str) -> Result<Name, ViewError> {
    Name::from_str(s).map_err(|e| err(path, e))
}

fn secs(d: meridian_model::Dur) -> u32 {
    d.get().as_secs().min(i32::MAX as u64) as u32
}

impl View {
    /// Compiles a validated config; `serial` is the SOA serial this version is served with.
    pub fn build(config: &ValidConfig, serial: u32) -> Result<View, ViewError> {
        let c = config.config();
        let d = c.dns.as_ref().ok_or(ViewError::NoDns)?;
        let regions: HashMap<&str, &Region> = c.regions.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut names = HashSet::default();
        let mut zones = Vec::new();
        for (i, z) in d.zones.iter().enumerate() {
            let p = format!("dns.zones[{i}]");
            let zname = name(&p, &z.name)?;
            let ttl = secs(z.ttl);
            let mname = match &z.soa.mname {
                Some(m) => name(&p, m)?,
                None => name(&p, &z.ns.first().map(|n| n.name.clone()).unwrap_or_default())?,
            };
            let rname = match &z.soa.rname {
                Some(r) => name(&p, r)?,
                None => name(&p, &format!("hostmaster.{}", z.name))?,
            };
            let soa = SOA::new(
                mname,
                rname,
                serial,
                secs(z.soa.refresh) as i32,
                secs(z.soa.retry) as i32,
                secs(z.soa.expire) as i32,
                secs(z.soa.minimum),
            );
            let negative_ttl = ttl.min(soa.minimum);
            let soa = Record::from_rdata(zname.clone(), ttl, RData::SOA(soa));
            let mut negative_soa = soa.clone();
            negative_soa.ttl = negative_ttl;
            let soa = Rr::new(soa);
            let mut ns = Vec::new();
            let mut glue = Vec::new();
            for n in &z.ns {
                let nsname = name(&p, &n.name)?;
                ns.push(Rr::new(Record::from_rdata(zname.clone(), ttl, RData::NS(NS(nsname.clone())))));
                if let Some(a) = &n.address
                    && zname.zone_of(&nsname)
                {
                    let ip: IpAddr = a.parse().map_err(|e| err(&p, e))?;
                    glue.push(Rr::new(Record::from_rdata(nsname.clone(), ttl, ip_rdata(ip))));
                    add_name(&mut names, &nsname, &zname);
                }
            }
            names.insert(LowerName::from(&zname));
            zones.push(ZoneView { name: LowerName::from(&zname), ttl, soa, negative_soa, ns, glue });
        }
        // Most specific zone first, so a delegated-in child zone wins over its parent.
        zones.sort_by_key(|z| std::cmp::Reverse(z.name.num_labels()));
        let mut sets = HashMap::default();
        for (i, rs) in d.record_sets.iter().enumerate() {
            let p = format!("dns.record_sets[{i}]");
            let n = name(&p, &rs.name)?;
            let zone = zones
                .iter()
                .find(|z| z.name.zone_of(&LowerName::from(&n)))
                .ok_or_else(|| err(&p, "not inside any zone"))?;
            let ttl = rs.ttl.map(secs).unwrap_or(zone.ttl);
            let zone_name = Name::from(&zone.name);
            add_name(&mut names, &n, &zone_name);
            let rtype = record_type(rs.record_type);
            let policy = compile(&p, rs, (&n, rtype, ttl), &regions)?;
            let label = rs.name.to_ascii_lowercase();
            sets.insert((LowerName::from(&n), rtype), SetView { label, policy });
        }
        let mut latency: Vec<(IpNet, HashMap<String, u32, FxBuildHasher>)> = Vec::new();
        for (i, row) in d.latency.iter().enumerate() {
            let net: IpNet = row.cidr.parse().map_err(|e| err(format!("dns.latency[{i}]"), e))?;
            latency.push((net.trunc(), row.region_ms.iter().map(|(k, v)| (k.clone(), *v)).collect()));
        }
        latency.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let mut geo = Vec::new();
        for (i, row) in d.geo.iter().enumerate() {
            let net: IpNet = row.cidr.parse().map_err(|e| err(format!("dns.geo[{i}]"), e))?;
            geo.push((net, row));
        }
        let geo = GeoTable::from_rows(geo);
        let locations = c.regions.iter().filter_map(|r| Some((r.name.clone(), r.location?))).collect();
        Ok(View {
            serial,
            hash: config.hash().to_string(),
            max_udp_payload: d.max_udp_payload,
            rate_limit: d.rate_limit.clone(),
            zones,
            sets,
            names,
            latency,
            geo,
            locations,
        })
    }
}

impl View {
    /// Adds a MaxMind-format database behind the config's `dns.geo` rows (see [`GeoDatabase`]).
    pub fn with_geo_database(mut self, db: Option<Arc<GeoDatabase>>) -> View {
        self.geo.set_database(db);
        self
    }
}

/// Inserts `n` and its ancestors up to (not including) the zone apex.
fn add_name(names: &mut HashSet<LowerName, FxBuildHasher>, n: &Name, zone: &Name) {
    let mut cur = n.clone();
    while cur.num_labels() > zone.num_labels() {
        names.insert(LowerName::from(&cur));
        cur = cur.base_name();
    }
}

pub(crate) fn record_type(t: dns::RecordType) -> RecordType {
    match t {
        dns::RecordType::A => RecordType::A,
        dns::RecordType::AAAA => RecordType::AAAA,
        dns::RecordType::CNAME => RecordType::CNAME,
        dns::RecordType::TXT => RecordType::TXT,
    }
}

pub(crate) fn ip_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// A record set's owner name, type and TTL.
type Owner<'a> = (&'a Name, RecordType, u32);

fn member(
    p: &str,
    region: Option<&str>,
    values: &[String],
    check: Option<String>,
    (owner, rtype, ttl): Owner<'_>,
    regions: &HashMap<&str, &Region>,
) -> Result<Member, ViewError> {
    let mut rdata = Vec::new();
    if let Some(r) = region {
        let reg = regions.get(r).ok_or_else(|| err(p, format!("unknown region {r:?}")))?;
        for a in &reg.public_addresses {
            let ip: IpAddr = a.parse().map_err(|e| err(p, e))?;
            if ip.is_ipv4() == (rtype == RecordType::A) {
                rdata.push(ip_rdata(ip));
            }
        }
    }
    for v in values {
        rdata.push(match rtype {
            RecordType::CNAME => RData::CNAME(CNAME(name(p, v)?)),
            RecordType::TXT => RData::TXT(TXT::new(vec![v.clone()])),
            _ => ip_rdata(v.parse().map_err(|e| err(p, e))?),
        });
    }
    let records = rdata.into_iter().map(|d| Rr::new(Record::from_rdata(owner.clone(), ttl, d))).collect();
    Ok(Member { region: region.map(str::to_string), records, check })
}

/// Compiles a record set's policy. Each member's health check is resolved here, once: the
/// member's `health_check`, else the record set's `health_checks` entry for its region, else
/// none (the region's own check, or healthy for values).
fn compile(
    p: &str,
    rs: &dns::RecordSet,
    t: Owner<'_>,
    regions: &HashMap<&str, &Region>,
) -> Result<Policy, ViewError> {
    let m = |region: Option<&str>, values: &[String], own: &Option<String>| {
        let check = own.clone().or_else(|| region.and_then(|r| rs.health_checks.get(r).cloned()));
        member(p, region, values, check, t, regions)
    };
    let none = None;
    Ok(match &rs.policy {
        RoutingPolicy::Simple { region, values } => Policy::Simple(m(region.as_deref(), values, &none)?),
        RoutingPolicy::Failover { primary, secondary } => {
            Policy::Failover(m(Some(primary), &[], &none)?, m(Some(secondary), &[], &none)?)
        }
        RoutingPolicy::Weighted { members } => Policy::Weighted(
            members
                .iter()
                .map(|w| Ok((m(w.region.as_deref(), &w.values, &w.health_check)?, w.weight)))
                .collect::<Result<_, _>>()?,
        ),
        RoutingPolicy::Latency { regions: list } => {
            Policy::Latency(list.iter().map(|r| m(Some(r), &[], &none)).collect::<Result<_, _>>()?)
        }
        RoutingPolicy::Geolocation { rules } => Policy::Geolocation(
            rules
                .iter()
                .map(|r| {
                    let member = m(r.region.as_deref(), &r.values, &r.health_check)?;
                    Ok((r.country.clone(), r.continent.clone(), member))
                })
                .collect::<Result<_, _>>()?,
        ),
        RoutingPolicy::Geoproximity { members } => Policy::Geoproximity(
            members
                .iter()
                .map(|g| Ok((m(Some(&g.region), &[], &none)?, g.bias)))
                .collect::<Result<_, _>>()?,
        ),
        RoutingPolicy::Multivalue { members } => Policy::Multivalue(
            members
                .iter()
                .map(|t| m(t.region.as_deref(), &t.values, &t.health_check))
                .collect::<Result<_, _>>()?,
        ),
    })
}
