//! `meridian director explain`: the answer to one question and why, computed locally.

use std::fmt::Write;
use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use meridian_model::ValidConfig;

use crate::{AllHealthy, ClientInfo, Rcode, View, ViewError, answer};

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

/// Explains the answer for `name`/`rtype` asked by a resolver at `resolver`, with an optional
/// EDNS Client Subnet. Health is [`AllHealthy`] (no checkers yet); weighted and multivalue
/// choices use the first draw (roll 0).
pub fn explain(
    config: &ValidConfig,
    name: &str,
    rtype: &str,
    resolver: IpAddr,
    subnet: Option<&str>,
) -> Result<String, ExplainError> {
    let fqdn = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    let qname = Name::from_str(&fqdn).map_err(|_| ExplainError::Name(name.into()))?;
    let qtype =
        RecordType::from_str(&rtype.to_ascii_uppercase()).map_err(|_| ExplainError::Type(rtype.into()))?;
    let ecs = subnet
        .map(|s| s.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| ExplainError::Subnet(s.into())))
        .transpose()?;
    let view = View::build(config, 0)?;
    let a = answer(&view, &qname, qtype, &ClientInfo { addr: resolver, ecs, roll: 0 }, &AllHealthy);
    let mut out = String::new();
    let rcode = match a.rcode {
        Rcode::NoError if a.answers.is_empty() => "NOERROR (no data)",
        Rcode::NoError => "NOERROR",
        Rcode::NxDomain => "NXDOMAIN",
        Rcode::Refused => "REFUSED",
    };
    let _ = writeln!(out, "{fqdn} {qtype}: {rcode}{}", if a.authoritative { ", authoritative" } else { "" });
    for r in &a.answers {
        let _ = writeln!(out, "  {} {} {} {}", r.name, r.ttl, r.record_type(), r.data);
    }
    for r in &a.authority {
        let _ = writeln!(out, "  authority: {} {} {} {}", r.name, r.ttl, r.record_type(), r.data);
    }
    if let Some(scope) = a.ecs_scope {
        let _ = writeln!(out, "  ECS scope: /{scope}");
    }
    out.push_str(&a.why.to_string());
    out.push_str("(health view: all healthy until the checkers exist)\n");
    Ok(out)
}
