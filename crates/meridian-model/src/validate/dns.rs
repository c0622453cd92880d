//! The `dns` section: zones, record sets and their policies, the latency and geo tables.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::Errors;
use crate::dns::{
    CheckProtocol, DnsCheck, DnsConfig, DnsHealth, GeoRule, RecordSet, RecordType, RoutingPolicy, Target,
    WeightedMember,
};
use crate::global::{GlobalConfig, Region};

const CONTINENTS: [&str; 7] = ["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

pub fn check(c: &GlobalConfig, errs: &mut Errors) {
    let Some(dns) = &c.dns else { return };
    let regions: HashMap<&str, &Region> = c.regions.iter().map(|r| (r.name.as_str(), r)).collect();
    if dns.zones.is_empty() {
        errs.push("dns.zones", "at least one zone is required");
    }
    let mut zone_names = HashSet::new();
    for (i, z) in dns.zones.iter().enumerate() {
        let p = format!("dns.zones[{i}]");
        match absolute_name(&z.name) {
            Err(m) => errs.push(format!("{p}.name"), m),
            Ok(()) if !zone_names.insert(z.name.to_ascii_lowercase()) => {
                errs.push(format!("{p}.name"), format!("duplicate zone {:?}", z.name))
            }
            Ok(()) => {}
        }
        for (field, v) in [("mname", &z.soa.mname), ("rname", &z.soa.rname)] {
            if let Some(v) = v {
                errs.check(|| format!("{p}.soa.{field}"), absolute_name(v));
            }
        }
        if z.ns.is_empty() {
            errs.push(format!("{p}.ns"), "at least one name server is required");
        }
        for (j, ns) in z.ns.iter().enumerate() {
            let np = format!("{p}.ns[{j}]");
            errs.check(|| format!("{np}.name"), absolute_name(&ns.name));
            match &ns.address {
                Some(a) if a.parse::<IpAddr>().is_err() => {
                    errs.push(format!("{np}.address"), format!("invalid IP address {a:?}"))
                }
                None if inside(&ns.name, &z.name) => errs.push(
                    format!("{np}.address"),
                    format!("required: {:?} is inside the zone (glue)", ns.name),
                ),
                _ => {}
            }
        }
    }
    if !(512..=4096).contains(&dns.max_udp_payload) {
        errs.push("dns.max_udp_payload", format!("{} is out of range 512 to 4096", dns.max_udp_payload));
    }
    let rl = &dns.rate_limit;
    if rl.responses_per_second == 0 || rl.burst == 0 {
        errs.push("dns.rate_limit", "responses_per_second and burst must be at least 1");
    }
    if rl.ipv4_prefix > 32 || rl.ipv6_prefix > 128 {
        errs.push("dns.rate_limit", "ipv4_prefix must be at most 32 and ipv6_prefix at most 128");
    }
    tables(dns, &regions, errs);
    if let Some(rc) = &dns.routing_controls {
        super::routing_controls::check(rc, dns, &regions, errs);
    }
    if let Some(h) = &dns.health {
        health(h, &regions, errs);
    }
    let checks: HashSet<&str> =
        dns.health.iter().flat_map(|h| h.checks.iter().map(|c| c.name.as_str())).collect();
    let mut seen: HashMap<(String, RecordType), usize> = HashMap::new();
    for (i, rs) in dns.record_sets.iter().enumerate() {
        let p = format!("dns.record_sets[{i}]");
        if let Err(m) = absolute_name(&rs.name) {
            errs.push(format!("{p}.name"), m);
        } else if !dns.zones.iter().any(|z| inside(&rs.name, &z.name)) {
            errs.push(format!("{p}.name"), format!("{:?} is not inside any zone", rs.name));
        } else if rs.record_type == RecordType::CNAME && dns.zones.iter().any(|z| same(&rs.name, &z.name)) {
            errs.push(format!("{p}.type"), "a CNAME cannot be at a zone apex");
        }
        let key = (rs.name.to_ascii_lowercase(), rs.record_type);
        if let Some(first) = seen.get(&key) {
            errs.push(format!("{p}.name"), format!("duplicate record set (also dns.record_sets[{first}])"));
        } else {
            seen.insert(key, i);
        }
        policy(&p, rs, &regions, &checks, errs);
    }
    for (i, rs) in dns.record_sets.iter().enumerate() {
        let clash = |o: &RecordSet| same(&o.name, &rs.name) && o.record_type != rs.record_type;
        if rs.record_type == RecordType::CNAME && dns.record_sets.iter().any(clash) {
            errs.push(
                format!("dns.record_sets[{i}].name"),
                "a CNAME cannot share its name with other records",
            );
        }
    }
}

fn tables(dns: &DnsConfig, regions: &HashMap<&str, &Region>, errs: &mut Errors) {
    for (i, row) in dns.latency.iter().enumerate() {
        errs.check(|| format!("dns.latency[{i}].cidr"), cidr(&row.cidr));
        for region in row.region_ms.keys() {
            if !regions.contains_key(region.as_str()) {
                errs.push(
                    format!("dns.latency[{i}].region_ms.{region}"),
                    format!("unknown region {region:?}"),
                );
            }
        }
    }
    for (i, row) in dns.geo.iter().enumerate() {
        let p = format!("dns.geo[{i}]");
        errs.check(|| format!("{p}.cidr"), cidr(&row.cidr));
        geo_codes(&p, row.country.as_deref(), row.continent.as_deref(), errs);
        if let Some(l) = row.location
            && (!(-90.0..=90.0).contains(&l.lat) || !(-180.0..=180.0).contains(&l.lon))
        {
            errs.push(format!("{p}.location"), "latitude must be -90 to 90 and longitude -180 to 180");
        }
    }
}

fn health(h: &DnsHealth, regions: &HashMap<&str, &Region>, errs: &mut Errors) {
    use std::time::Duration;
    let (interval, timeout) = (h.interval.get(), h.timeout.get());
    if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&interval) {
        errs.push("dns.health.interval", "must be 100ms to 5m");
    }
    if timeout.is_zero() || timeout > interval {
        errs.push("dns.health.timeout", "must be above 0 and at most the interval");
    }
    if !(1..=10).contains(&h.failure_threshold) {
        errs.push("dns.health.failure_threshold", format!("{} is out of range 1 to 10", h.failure_threshold));
    }
    if h.staleness.is_some_and(|s| s.get() < interval) {
        errs.push("dns.health.staleness", "must be at least the interval");
    }
    if h.forget_after.is_some_and(|f| f.get() < h.max_staleness()) {
        errs.push(
            "dns.health.forget_after",
            format!("must be at least the largest staleness of any check ({:?})", h.max_staleness()),
        );
    }
    if h.quorum.is_some_and(|q| !(q > 0.0 && q < 1.0)) {
        errs.push("dns.health.quorum", "must be strictly between 0 and 1");
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, c) in h.checks.iter().enumerate() {
        let p = format!("dns.health.checks[{i}]");
        if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)) {
            errs.push(format!("{p}.name"), format!("invalid name {:?}: letters, digits, - _ . @", c.name));
        }
        if let Some(first) = names.insert(c.name.as_str(), i) {
            errs.push(format!("{p}.name"), format!("duplicate check (also dns.health.checks[{first}])"));
            names.insert(c.name.as_str(), first);
        }
        if let Some(r) = &c.region
            && !regions.contains_key(r.as_str())
        {
            errs.push(format!("{p}.region"), format!("unknown region {r:?}"));
        }
    }
    for (i, c) in h.checks.iter().enumerate() {
        let p = format!("dns.health.checks[{i}]");
        timing(&p, h, c, errs);
        if c.protocol == CheckProtocol::Calculated {
            if c.children.is_empty() {
                errs.push(format!("{p}.children"), "a calculated check needs children");
            }
            for (j, child) in c.children.iter().enumerate() {
                match names.get(child.as_str()).map(|&k| &h.checks[k]) {
                    None => errs.push(format!("{p}.children[{j}]"), format!("unknown check {child:?}")),
                    Some(k) if k.protocol == CheckProtocol::Calculated => {
                        errs.push(format!("{p}.children[{j}]"), "a child cannot be a calculated check")
                    }
                    Some(_) => {}
                }
            }
            if c.min_healthy.is_some_and(|n| n == 0 || n as usize > c.children.len()) {
                errs.push(format!("{p}.min_healthy"), "must be 1 to the number of children");
            }
            if c.address.is_some() || c.port.is_some() {
                errs.push(&p, "a calculated check is not probed: no address or port");
            }
            continue;
        }
        if !c.children.is_empty() || c.min_healthy.is_some() {
            errs.push(&p, "children and min_healthy are for calculated checks");
        }
        match &c.address {
            Some(a) if a.parse::<std::net::SocketAddr>().is_err() => {
                errs.push(format!("{p}.address"), format!("invalid address {a:?}: expected ip:port"))
            }
            Some(_) => {}
            None => match (&c.region, c.port) {
                (Some(r), Some(_)) => {
                    let has = regions
                        .get(r.as_str())
                        .is_some_and(|r| r.public_addresses.iter().any(|a| a.parse::<IpAddr>().is_ok()));
                    if regions.contains_key(r.as_str()) && !has {
                        errs.push(
                            format!("{p}.region"),
                            format!("region {r:?} has no public address to probe"),
                        );
                    }
                }
                _ => errs.push(&p, "give `address`, or `region` and `port`"),
            },
        }
        if c.protocol != CheckProtocol::Tcp && !c.path.starts_with('/') {
            errs.push(format!("{p}.path"), format!("invalid path {:?}: starts with /", c.path));
        }
    }
}

/// A check's own `interval`, `timeout` and `failure_threshold`: the bounds of the defaults.
fn timing(p: &str, h: &DnsHealth, c: &DnsCheck, errs: &mut Errors) {
    use std::time::Duration;
    if c.protocol == CheckProtocol::Calculated {
        if c.interval.is_some() || c.timeout.is_some() || c.failure_threshold.is_some() {
            errs.push(p, "a calculated check is not probed: no interval, timeout or failure_threshold");
        }
        return;
    }
    let interval = h.interval_of(c);
    if c.interval.is_some() && !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&interval) {
        errs.push(format!("{p}.interval"), "must be 100ms to 5m");
    }
    if c.timeout.is_some_and(|t| t.get().is_zero() || t.get() > interval) {
        errs.push(format!("{p}.timeout"), "must be above 0 and at most the check's interval");
    }
    if c.failure_threshold.is_some_and(|n| !(1..=10).contains(&n)) {
        errs.push(
            format!("{p}.failure_threshold"),
            format!("{} is out of range 1 to 10", h.failure_threshold_of(c)),
        );
    }
    if h.staleness.is_some_and(|s| s.get() < interval) {
        errs.push(format!("{p}.interval"), "must be at most dns.health.staleness");
    }
}

fn policy(
    p: &str,
    rs: &RecordSet,
    regions: &HashMap<&str, &Region>,
    checks: &HashSet<&str>,
    errs: &mut Errors,
) {
    let p = format!("{p}.policy");
    let t = rs.record_type;
    let region = |path: String, name: &str, errs: &mut Errors| region_member(&path, name, t, regions, errs);
    match &rs.policy {
        RoutingPolicy::Simple { region: r, values } => target(&p, r.as_deref(), values, t, regions, errs),
        RoutingPolicy::Failover { primary, secondary } => {
            region(format!("{p}.primary"), primary, errs);
            region(format!("{p}.secondary"), secondary, errs);
            if primary == secondary {
                errs.push(format!("{p}.secondary"), "must differ from primary");
            }
        }
        RoutingPolicy::Weighted { members } => {
            non_empty(&p, "members", members.len(), errs);
            for (i, WeightedMember { region, values, health_check, .. }) in members.iter().enumerate() {
                target(&format!("{p}.members[{i}]"), region.as_deref(), values, t, regions, errs);
                check_ref(&format!("{p}.members[{i}].health_check"), health_check.as_deref(), checks, errs);
            }
            if !members.is_empty() && members.iter().all(|m| m.weight == 0) {
                errs.push(format!("{p}.members"), "at least one member needs a weight above 0");
            }
        }
        RoutingPolicy::Latency { regions: list } => {
            non_empty(&p, "regions", list.len(), errs);
            for (i, r) in list.iter().enumerate() {
                region(format!("{p}.regions[{i}]"), r, errs);
            }
        }
        RoutingPolicy::Geolocation { rules } => {
            non_empty(&p, "rules", rules.len(), errs);
            let mut keys = HashSet::new();
            for (i, GeoRule { country, continent, region, values, health_check }) in rules.iter().enumerate()
            {
                let rp = format!("{p}.rules[{i}]");
                geo_codes(&rp, country.as_deref(), continent.as_deref(), errs);
                if country.is_some() && continent.is_some() {
                    errs.push(&rp, "give a country or a continent, not both");
                }
                if !keys.insert((country.clone(), continent.clone())) {
                    errs.push(&rp, "duplicate rule (same country, continent or default)");
                }
                target(&rp, region.as_deref(), values, t, regions, errs);
                check_ref(&format!("{rp}.health_check"), health_check.as_deref(), checks, errs);
            }
        }
        RoutingPolicy::Geoproximity { members } => {
            non_empty(&p, "members", members.len(), errs);
            for (i, m) in members.iter().enumerate() {
                let mp = format!("{p}.members[{i}]");
                region(format!("{mp}.region"), &m.region, errs);
                if regions.get(m.region.as_str()).is_some_and(|r| r.location.is_none()) {
                    errs.push(format!("{mp}.region"), format!("region {:?} has no location", m.region));
                }
                if !(-99..=99).contains(&m.bias) {
                    errs.push(format!("{mp}.bias"), format!("bias {} is out of range -99 to 99", m.bias));
                }
            }
        }
        RoutingPolicy::Multivalue { members } => {
            non_empty(&p, "members", members.len(), errs);
            for (i, Target { region, values, health_check }) in members.iter().enumerate() {
                target(&format!("{p}.members[{i}]"), region.as_deref(), values, t, regions, errs);
                check_ref(&format!("{p}.members[{i}].health_check"), health_check.as_deref(), checks, errs);
            }
        }
    }
    for (region, check) in &rs.health_checks {
        let hp = format!("{}.health_checks.{region}", p.trim_end_matches(".policy"));
        if !regions.contains_key(region.as_str()) {
            errs.push(&hp, format!("unknown region {region:?}"));
        }
        check_ref(&hp, Some(check), checks, errs);
    }
}

/// A member's or record set's `health_check`: a check of `dns.health`.
fn check_ref(p: &str, name: Option<&str>, checks: &HashSet<&str>, errs: &mut Errors) {
    if let Some(n) = name
        && !checks.contains(n)
    {
        errs.push(p, format!("unknown health check {n:?} (dns.health.checks)"));
    }
}

fn non_empty(p: &str, field: &str, n: usize, errs: &mut Errors) {
    if n == 0 {
        errs.push(format!("{p}.{field}"), "must not be empty");
    }
}

/// A member's target: exactly one of a region and values, each fit for the record type.
fn target(
    p: &str,
    region: Option<&str>,
    values: &[String],
    t: RecordType,
    regions: &HashMap<&str, &Region>,
    errs: &mut Errors,
) {
    match (region, values.is_empty()) {
        (Some(_), false) | (None, true) => errs.push(p, "give either `region` or `values`"),
        (Some(r), true) => region_member(&format!("{p}.region"), r, t, regions, errs),
        (None, false) => {
            if t == RecordType::CNAME && values.len() != 1 {
                errs.push(format!("{p}.values"), "a CNAME has exactly one value");
            }
            for (i, v) in values.iter().enumerate() {
                errs.check(|| format!("{p}.values[{i}]"), value(t, v));
            }
        }
    }
}

fn region_member(p: &str, name: &str, t: RecordType, regions: &HashMap<&str, &Region>, errs: &mut Errors) {
    let Some(r) = regions.get(name) else {
        return errs.push(p, format!("unknown region {name:?}"));
    };
    let want_v4 = match t {
        RecordType::A => true,
        RecordType::AAAA => false,
        _ => return errs.push(p, format!("a region can only answer A or AAAA, not {t:?}")),
    };
    let has =
        r.public_addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()).any(|a| a.is_ipv4() == want_v4);
    if !has {
        errs.push(
            p,
            format!("region {name:?} has no {} public address", if want_v4 { "IPv4" } else { "IPv6" }),
        );
    }
}

fn value(t: RecordType, v: &str) -> Result<(), String> {
    match t {
        RecordType::A => {
            v.parse::<std::net::Ipv4Addr>().map(drop).map_err(|_| format!("invalid IPv4 address {v:?}"))
        }
        RecordType::AAAA => {
            v.parse::<std::net::Ipv6Addr>().map(drop).map_err(|_| format!("invalid IPv6 address {v:?}"))
        }
        RecordType::CNAME => absolute_name(v),
        RecordType::TXT if v.len() > 255 => {
            Err(format!("a TXT value has at most 255 bytes, not {}", v.len()))
        }
        RecordType::TXT => Ok(()),
    }
}

fn geo_codes(p: &str, country: Option<&str>, continent: Option<&str>, errs: &mut Errors) {
    if let Some(c) = country
        && !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        errs.push(
            format!("{p}.country"),
            format!("invalid country {c:?}: two upper-case letters (ISO 3166-1)"),
        );
    }
    if let Some(c) = continent
        && !CONTINENTS.contains(&c)
    {
        errs.push(
            format!("{p}.continent"),
            format!("invalid continent {c:?}: one of {}", CONTINENTS.join(", ")),
        );
    }
}

fn cidr(s: &str) -> Result<(), String> {
    s.parse::<ipnet::IpNet>().map(drop).map_err(|_| format!("invalid CIDR {s:?}"))
}

/// An absolute DNS name: labels of letters, digits, `-` and `_`, ending with a dot.
pub fn absolute_name(s: &str) -> Result<(), String> {
    let Some(rest) = s.strip_suffix('.') else {
        return Err(format!("invalid name {s:?}: names are absolute, end it with \".\""));
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if rest.is_empty() || s.len() > 254 || !rest.split('.').all(label_ok) {
        return Err(format!("invalid name {s:?}"));
    }
    Ok(())
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `name` is `zone` or below it.
fn inside(name: &str, zone: &str) -> bool {
    let (n, z) = (name.to_ascii_lowercase(), zone.to_ascii_lowercase());
    n == z || n.ends_with(&format!(".{z}"))
}

#[cfg(test)]
mod tests {
    fn parse(dns: &str) -> Result<crate::ValidConfig, crate::ConfigErrors> {
        crate::parse_global(&format!(
            "regions:\n  - {{ name: us, public_addresses: [192.0.2.1], location: {{ lat: 1, lon: 2 }} }}\n  \
             - {{ name: eu, public_addresses: [\"2001:db8::1\"] }}\ndns:\n{dns}"
        ))
    }

    fn errors(dns: &str) -> Vec<String> {
        match parse(dns) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const ZONE: &str =
        "  zones: [{ name: a.example., ns: [{ name: ns.a.example., address: 192.0.2.53 }] }]\n";

    #[test]
    fn errors_name_their_paths() {
        let e = errors(&format!(
            "{ZONE}  record_sets:\n    \
             - {{ name: x.a.example., type: A, policy: {{ kind: simple, values: [192.0.2.9] }} }}\n    \
             - {{ name: b.example., type: A, policy: {{ kind: simple, region: us }} }}\n    \
             - {{ name: f.a.example., type: A, policy: {{ kind: failover, primary: x, secondary: eu }} }}\n    \
             - {{ name: w.a.example., type: A, policy: {{ kind: weighted, members: [{{ region: us, weight: 0 }}] }} }}\n    \
             - {{ name: c.a.example., type: CNAME, policy: {{ kind: simple, region: us }} }}\n    \
             - {{ name: g.a.example., type: A, policy: {{ kind: geoproximity, members: [{{ region: us, bias: 100 }}] }} }}\n  \
             latency: [{{ cidr: 10.0.0.0/33, region_ms: {{ mars: 1 }} }}]\n"
        ));
        assert_eq!(
            e,
            [
                "dns.latency[0].cidr: invalid CIDR \"10.0.0.0/33\"",
                "dns.latency[0].region_ms.mars: unknown region \"mars\"",
                "dns.record_sets[1].name: \"b.example.\" is not inside any zone",
                "dns.record_sets[2].policy.primary: unknown region \"x\"",
                "dns.record_sets[2].policy.secondary: region \"eu\" has no IPv4 public address",
                "dns.record_sets[3].policy.members: at least one member needs a weight above 0",
                "dns.record_sets[4].policy.region: a region can only answer A or AAAA, not CNAME",
                "dns.record_sets[5].policy.members[0].bias: bias 100 is out of range -99 to 99",
            ]
        );
    }

    #[test]
    fn health_checks_are_validated_with_paths() {
        let e = errors(&format!(
            "{ZONE}  health:\n    interval: 50ms\n    timeout: 1s\n    failure_threshold: 0\n    \
             quorum: 1.5\n    checks:\n      \
             - {{ name: us, region: us, port: 9901 }}\n      \
             - {{ name: us, address: nowhere }}\n      \
             - {{ name: eu, region: mars }}\n      \
             - {{ name: both, protocol: calculated, children: [us, nope], min_healthy: 3 }}\n      \
             - {{ name: nested, protocol: calculated, children: [both] }}\n"
        ));
        assert_eq!(
            e,
            [
                "dns.health.interval: must be 100ms to 5m",
                "dns.health.timeout: must be above 0 and at most the interval",
                "dns.health.failure_threshold: 0 is out of range 1 to 10",
                "dns.health.quorum: must be strictly between 0 and 1",
                "dns.health.checks[1].name: duplicate check (also dns.health.checks[0])",
                "dns.health.checks[2].region: unknown region \"mars\"",
                "dns.health.checks[1].address: invalid address \"nowhere\": expected ip:port",
                "dns.health.checks[2]: give `address`, or `region` and `port`",
                "dns.health.checks[3].children[1]: unknown check \"nope\"",
                "dns.health.checks[3].min_healthy: must be 1 to the number of children",
                "dns.health.checks[4].children[0]: a child cannot be a calculated check",
            ]
        );
        let e = errors(&format!(
            "{ZONE}  record_sets:\n    \
             - {{ name: o.a.example., type: A, health_checks: {{ us: us-orders, mars: x }}, \
             policy: {{ kind: simple, region: us }} }}\n    \
             - {{ name: w.a.example., type: A, policy: {{ kind: weighted, members: \
             [{{ values: [192.0.2.7], weight: 1, health_check: dc }}] }} }}\n  \
             health:\n    checks: [{{ name: us-orders, region: us, port: 9901 }}]\n"
        ));
        assert_eq!(
            e,
            [
                "dns.record_sets[0].health_checks.mars: unknown region \"mars\"",
                "dns.record_sets[0].health_checks.mars: unknown health check \"x\" (dns.health.checks)",
                "dns.record_sets[1].policy.members[0].health_check: unknown health check \"dc\" (dns.health.checks)",
            ]
        );
        let ok = errors(&format!(
            "{ZONE}  health:\n    interval: 500ms\n    timeout: 200ms\n    checks:\n      \
             - {{ name: us-gw, region: us, port: 9901 }}\n      \
             - {{ name: us-orders, region: us, port: 9901, path: /-/health/services/orders }}\n      \
             - {{ name: us, protocol: calculated, children: [us-gw, us-orders], min_healthy: 1 }}\n      \
             - {{ name: db, protocol: tcp, address: \"127.0.0.1:5432\" }}\n"
        ));
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn per_check_timing_is_validated_with_paths() {
        let e = errors(&format!(
            "{ZONE}  health:\n    staleness: 30s\n    forget_after: 20s\n    checks:\n      \
             - {{ name: a, address: 127.0.0.1:1, interval: 50ms, failure_threshold: 11 }}\n      \
             - {{ name: b, address: 127.0.0.1:1, interval: 1m, timeout: 2m }}\n      \
             - {{ name: c, address: 127.0.0.1:1, interval: 1s, timeout: 0s }}\n      \
             - {{ name: d, protocol: calculated, children: [a], interval: 1s }}\n"
        ));
        assert_eq!(
            e,
            [
                "dns.health.forget_after: must be at least the largest staleness of any check (30s)",
                "dns.health.checks[0].interval: must be 100ms to 5m",
                "dns.health.checks[0].failure_threshold: 11 is out of range 1 to 10",
                "dns.health.checks[1].timeout: must be above 0 and at most the check's interval",
                "dns.health.checks[1].interval: must be at most dns.health.staleness",
                "dns.health.checks[2].timeout: must be above 0 and at most the check's interval",
                "dns.health.checks[3]: a calculated check is not probed: no interval, timeout or failure_threshold",
            ]
        );
        // Unset, a check's timeout is the default capped at its interval; staleness follows it.
        let text = format!(
            "{ZONE}  health:\n    checks:\n      \
             - {{ name: fast, address: 127.0.0.1:1, interval: 500ms }}\n      \
             - {{ name: slow, address: 127.0.0.1:1, interval: 1m, failure_threshold: 1 }}\n"
        );
        let c = parse(&text).unwrap();
        let h = c.config().dns.as_ref().and_then(|d| d.health.as_ref()).unwrap();
        let (fast, slow) = (&h.checks[0], &h.checks[1]);
        let s = std::time::Duration::from_secs;
        assert_eq!((h.timeout_of(fast), h.timeout_of(slow)), (std::time::Duration::from_millis(500), s(2)));
        assert_eq!((h.failure_threshold_of(fast), h.failure_threshold_of(slow)), (3, 1));
        assert_eq!(
            (h.staleness_of(fast), h.staleness_of(slow)),
            (std::time::Duration::from_millis(1500), s(180))
        );
        assert_eq!(h.forget_after(), s(1800));
    }

    #[test]
    fn zones_need_absolute_names_and_glue() {
        let e = errors("  zones: [{ name: a.example, ns: [{ name: ns.a.example. }] }]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("dns.zones[0].name: invalid name \"a.example\""), "{e:?}");
        let e = errors("  zones: [{ name: a.example., ns: [{ name: ns.a.example. }] }]\n");
        assert_eq!(e, ["dns.zones[0].ns[0].address: required: \"ns.a.example.\" is inside the zone (glue)"]);
        assert!(errors(ZONE).is_empty());
    }
}
