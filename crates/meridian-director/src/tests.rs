//! The answer logic, exhaustively, on examples/dns.yaml (no sockets).

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, RecordType};

use crate::{AllHealthy, Answer, ClientInfo, HealthTarget, HealthView, Rcode, View, answer};

const EXAMPLE: &str = include_str!("../../../examples/dns.yaml");

fn view_of(yaml: &str) -> View {
    View::build(&meridian_model::parse_global(yaml).unwrap(), 7).unwrap()
}

/// Regions and value members listed here are down.
struct Down(HashSet<String>);

impl Down {
    fn of(items: &[&str]) -> Down {
        Down(items.iter().map(|s| s.to_string()).collect())
    }
}

impl HealthView for Down {
    fn healthy(&self, t: HealthTarget<'_>) -> bool {
        match t {
            HealthTarget::Region(r) | HealthTarget::Check(r) => !self.0.contains(r),
            HealthTarget::Member { member, .. } => !self.0.contains(&format!("members[{member}]")),
        }
    }
}

fn ask_with(
    v: &View,
    name: &str,
    t: RecordType,
    from: &str,
    ecs: Option<&str>,
    h: &dyn HealthView,
    roll: u64,
) -> Answer {
    let client = ClientInfo { addr: from.parse().unwrap(), ecs: ecs.map(|e| e.parse().unwrap()), roll };
    answer(v, &Name::from_str(name).unwrap(), t, &client, h)
}

fn ask(v: &View, name: &str, t: RecordType, from: &str) -> Answer {
    ask_with(v, name, t, from, None, &AllHealthy, 0)
}

fn ips(a: &Answer) -> Vec<String> {
    a.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(x) => x.0.to_string(),
            RData::AAAA(x) => x.0.to_string(),
            RData::CNAME(x) => x.0.to_string(),
            RData::TXT(x) => x.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

const ANY: &str = "10.9.9.9";
const IE: &str = "198.51.100.7";
const AU: &str = "203.0.113.7";
const NY: &str = "192.0.2.7";

#[test]
fn apex_soa_ns_glue_and_negative_answers() {
    let v = view_of(EXAMPLE);
    let soa = ask(&v, "api.example.com.", RecordType::SOA, ANY);
    assert!(soa.authoritative && soa.rcode == Rcode::NoError);
    let RData::SOA(s) = &soa.answers[0].data else { panic!("{soa:?}") };
    assert_eq!((s.serial, s.minimum, s.rname.to_string().as_str()), (7, 30, "hostmaster.example.com."));
    let ns = ask(&v, "api.example.com.", RecordType::NS, ANY);
    let RData::NS(n) = &ns.answers[0].data else { panic!("{ns:?}") };
    assert_eq!((ns.answers.len(), n.0.to_string().as_str()), (1, "ns1.api.example.com."));
    assert_eq!(ns.additional.len(), 1, "glue for the in-zone name server");
    assert_eq!(ips(&ask(&v, "ns1.api.example.com.", RecordType::A, ANY)), ["127.0.0.1"]);

    let nx = ask(&v, "nope.api.example.com.", RecordType::A, ANY);
    assert_eq!((nx.rcode, nx.authoritative, nx.answers.len()), (Rcode::NxDomain, true, 0));
    assert_eq!(nx.authority[0].record_type(), RecordType::SOA);
    assert_eq!(nx.authority[0].ttl, 30, "negative TTL: min(zone ttl 60s, SOA minimum 30s)");
    let nodata = ask(&v, "failover.api.example.com.", RecordType::AAAA, ANY);
    assert_eq!((nodata.rcode, nodata.answers.len(), nodata.authority.len()), (Rcode::NoError, 0, 1));
    let apex_nodata = ask(&v, "api.example.com.", RecordType::MX, ANY);
    assert_eq!((apex_nodata.rcode, apex_nodata.answers.len()), (Rcode::NoError, 0));
    let refused = ask(&v, "example.org.", RecordType::A, ANY);
    assert_eq!((refused.rcode, refused.authoritative), (Rcode::Refused, false));
}

#[test]
fn simple_cname_txt_and_ttls() {
    let v = view_of(EXAMPLE);
    let a = ask(&v, "API.example.com.", RecordType::A, ANY);
    assert_eq!((ips(&a), a.answers[0].ttl), (vec!["127.0.1.1".to_string()], 60));
    let cname = ask(&v, "www.api.example.com.", RecordType::A, ANY);
    assert_eq!(ips(&cname), ["api.example.com.", "127.0.1.1"], "the in-zone target is followed");
    assert_eq!(cname.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(ips(&ask(&v, "www.api.example.com.", RecordType::CNAME, ANY)), ["api.example.com."]);
    let nodata = ask(&v, "www.api.example.com.", RecordType::AAAA, ANY);
    assert_eq!((ips(&nodata), nodata.rcode), (vec!["api.example.com.".to_string()], Rcode::NoError));
    let to_latency =
        view_of(&EXAMPLE.replace("values: [api.example.com.]", "values: [latency.api.example.com.]"));
    let chained = ask_with(
        &to_latency,
        "www.api.example.com.",
        RecordType::A,
        ANY,
        Some("203.0.113.0/24"),
        &AllHealthy,
        0,
    );
    assert_eq!(
        (ips(&chained), chained.ecs_scope),
        (vec!["latency.api.example.com.".into(), "127.0.3.1".into()], Some(24))
    );
    let outside = view_of(&EXAMPLE.replace("values: [api.example.com.]", "values: [example.net.]"));
    assert_eq!(ips(&ask(&outside, "www.api.example.com.", RecordType::A, ANY)), ["example.net."]);
    let txt = ask(&v, "api.example.com.", RecordType::TXT, ANY);
    assert_eq!((ips(&txt), txt.answers[0].ttl), (vec!["v=meridian1".to_string()], 300));
    assert_eq!(ask(&v, "failover.api.example.com.", RecordType::A, ANY).answers[0].ttl, 10);
}

#[test]
fn failover_and_its_fail_open() {
    let v = view_of(EXAMPLE);
    let q = |down: &[&str]| {
        ask_with(&v, "failover.api.example.com.", RecordType::A, ANY, None, &Down::of(down), 0)
    };
    assert_eq!(ips(&q(&[])), ["127.0.1.1"]);
    assert_eq!(ips(&q(&["us-east-1"])), ["127.0.2.1"]);
    let both = q(&["us-east-1", "eu-west-1"]);
    assert_eq!(ips(&both), ["127.0.1.1"], "fail open: as if all were healthy, the primary");
    assert!(both.why.fail_open && !q(&[]).why.fail_open);
}

#[test]
fn members_follow_their_configured_health_checks() {
    let yaml = EXAMPLE.replace(
        "  record_sets:\n",
        "  record_sets:\n    - name: orders.api.example.com.\n      type: A\n      \
         health_checks: { us-east-1: us-east-1-admin }\n      \
         policy: { kind: failover, primary: us-east-1, secondary: eu-west-1 }\n    \
         - name: dc.api.example.com.\n      type: A\n      policy:\n        kind: weighted\n        \
         members:\n          - { region: eu-west-1, weight: 1, health_check: ap-southeast-2 }\n          \
         - { values: [192.0.2.20], weight: 1, health_check: us-east-1-public }\n",
    );
    let v = view_of(&yaml);
    let q = |name: &str, down: &[&str], roll| {
        ips(&ask_with(&v, name, RecordType::A, ANY, None, &Down::of(down), roll))
    };
    // The record set's check for us-east-1 decides, not the region's own.
    assert_eq!(q("orders.api.example.com.", &["us-east-1"], 0), ["127.0.1.1"]);
    assert_eq!(q("orders.api.example.com.", &["us-east-1-admin"], 0), ["127.0.2.1"]);
    // A member's own check decides it, for a region or for values.
    assert_eq!(q("dc.api.example.com.", &["ap-southeast-2"], 0), ["192.0.2.20"]);
    assert_eq!(q("dc.api.example.com.", &["us-east-1-public"], 1), ["127.0.2.1"]);
    assert_eq!(q("dc.api.example.com.", &["eu-west-1", "members[1]"], 1), ["192.0.2.20"]);
}

#[test]
fn weighted_by_weight_with_zero_weight_standby() {
    let v = view_of(EXAMPLE);
    let q = |down: &[&str], roll| {
        ask_with(&v, "weighted.api.example.com.", RecordType::A, ANY, None, &Down::of(down), roll)
    };
    let picks: Vec<String> = (0..4).map(|r| ips(&q(&[], r))[0].clone()).collect();
    assert_eq!(picks, ["127.0.1.1", "127.0.1.1", "127.0.1.1", "127.0.2.1"], "weights 3:1");
    assert!((0..4).all(|r| ips(&q(&["us-east-1"], r)) == ["127.0.2.1"]));
    let standby = q(&["us-east-1", "eu-west-1"], 0);
    assert_eq!((ips(&standby), standby.why.fail_open), (vec!["192.0.2.10".to_string()], false));
    let all_down = q(&["us-east-1", "eu-west-1", "members[2]"], 3);
    assert_eq!((ips(&all_down), all_down.why.fail_open), (vec!["127.0.2.1".to_string()], true));
}

#[test]
fn latency_by_client_network_with_ecs_scope() {
    let v = view_of(EXAMPLE);
    let q = |from, ecs, down: &[&str]| {
        ask_with(&v, "latency.api.example.com.", RecordType::A, from, ecs, &Down::of(down), 0)
    };
    assert_eq!(ips(&q(IE, None, &[])), ["127.0.2.1"]);
    assert_eq!(ips(&q(AU, None, &[])), ["127.0.3.1"]);
    assert_eq!(ips(&q(IE, None, &["eu-west-1"])), ["127.0.1.1"], "next lowest: 80 ms");
    assert_eq!(ips(&q(ANY, None, &[])), ["127.0.1.1"], "no row: first listed");
    let ecs = q(ANY, Some("203.0.113.0/24"), &[]);
    assert_eq!((ips(&ecs), ecs.ecs_scope), (vec!["127.0.3.1".to_string()], Some(24)), "ECS decides");
    let wide = q(AU, Some("10.0.0.0/16"), &[]);
    assert_eq!((ips(&wide), wide.ecs_scope), (vec!["127.0.1.1".to_string()], Some(16)));
    assert_eq!(q(IE, None, &[]).ecs_scope, None);
    assert_eq!(ips(&q(AU, Some("0.0.0.0/0"), &[])), ["127.0.1.1"], "ECS /0: client unknown");
    let v6 = ask_with(
        &v,
        "latency.api.example.com.",
        RecordType::AAAA,
        ANY,
        Some("2001:db8::/56"),
        &AllHealthy,
        0,
    );
    assert_eq!((ips(&v6), v6.ecs_scope), (vec!["fd00::2:1".to_string()], Some(32)));
    let simple = ask_with(&v, "api.example.com.", RecordType::A, ANY, Some("203.0.113.0/24"), &AllHealthy, 0);
    assert_eq!(simple.ecs_scope, Some(0), "an answer for everyone has scope 0");
}

#[test]
fn geolocation_country_continent_default_and_fallbacks() {
    let v = view_of(EXAMPLE);
    let q = |from, down: &[&str]| {
        ask_with(&v, "geo.api.example.com.", RecordType::A, from, None, &Down::of(down), 0)
    };
    assert_eq!(ips(&q(AU, &[])), ["127.0.3.1"], "country AU");
    assert_eq!(ips(&q(IE, &[])), ["127.0.2.1"], "continent EU");
    assert_eq!(ips(&q(NY, &[])), ["127.0.1.1"], "default");
    assert_eq!(ips(&q(ANY, &[])), ["127.0.1.1"], "not in the table: default");
    assert_eq!(ips(&q(IE, &["eu-west-1"])), ["127.0.1.1"], "unhealthy: the less specific rule");
    let all = q(IE, &["eu-west-1", "us-east-1"]);
    assert_eq!((ips(&all), all.why.fail_open), (vec!["127.0.2.1".to_string()], true));
    let no_default =
        view_of(&EXAMPLE.replace("          - { region: us-east-1 }                  # default\n", ""));
    let none = ask(&no_default, "geo.api.example.com.", RecordType::A, NY);
    assert_eq!((none.rcode, none.answers.len(), none.authority.len()), (Rcode::NoError, 0, 1), "NODATA");
}

#[test]
fn geoproximity_by_distance_and_bias() {
    let v = view_of(EXAMPLE);
    let q = |v: &View, from, down: &[&str]| {
        ips(&ask_with(v, "near.api.example.com.", RecordType::A, from, None, &Down::of(down), 0))
    };
    assert_eq!(q(&v, NY, &[]), ["127.0.1.1"]);
    assert_eq!(q(&v, IE, &[]), ["127.0.2.1"]);
    assert_eq!(q(&v, AU, &[]), ["127.0.3.1"]);
    // Sydney: Virginia 15,700 km, Dublin 17,200 km but eu-west-1's bias 20 makes it 13,800.
    assert_eq!(q(&v, AU, &["ap-southeast-2"]), ["127.0.2.1"], "bias draws Sydney to Dublin");
    let unbiased = view_of(&EXAMPLE.replace("bias: 20", "bias: 0"));
    assert_eq!(q(&unbiased, AU, &["ap-southeast-2"]), ["127.0.1.1"], "without bias: Virginia");
    assert_eq!(q(&v, ANY, &[]), ["127.0.1.1"], "no client location: first listed");
    let biased = view_of(&EXAMPLE.replace("bias: 20", "bias: 99"));
    assert_eq!(q(&biased, NY, &[]), ["127.0.2.1"], "a large bias draws New York to Dublin");
}

#[test]
fn multivalue_healthy_values_up_to_eight() {
    let v = view_of(EXAMPLE);
    let q = |down: &[&str], roll| {
        ips(&ask_with(&v, "multi.api.example.com.", RecordType::A, ANY, None, &Down::of(down), roll))
    };
    assert_eq!(q(&[], 0), ["127.0.1.1", "127.0.2.1", "192.0.2.1", "192.0.2.2"]);
    assert_eq!(q(&[], 1)[0], "127.0.2.1", "rotated per query");
    assert_eq!(q(&["us-east-1"], 0), ["127.0.2.1", "192.0.2.1", "192.0.2.2"]);
    assert_eq!(q(&["us-east-1", "eu-west-1", "members[2]"], 0).len(), 4, "fail open: all");
    let many: Vec<String> = (1..=12).map(|i| format!("192.0.2.{i}")).collect();
    let big = view_of(
        &EXAMPLE.replace("values: [192.0.2.1, 192.0.2.2]", &format!("values: [{}]", many.join(", "))),
    );
    let a = ask(&big, "multi.api.example.com.", RecordType::A, ANY);
    assert_eq!(a.answers.len(), 8);
    let _: Vec<IpAddr> = ips(&a).iter().map(|s| s.parse().unwrap()).collect();
}

#[test]
fn members_without_an_address_of_the_family_are_refused_by_validation() {
    // What keeps a policy from having nothing to answer with: AAAA from a region that has only
    // IPv4 addresses never reaches the director.
    let yaml = "regions:\n  - { name: a, public_addresses: [127.0.1.1] }\n\
        dns:\n  zones: [{ name: z.test., ns: [{ name: ns1.z.test., address: 127.0.0.1 }] }]\n\
        \x20 record_sets:\n    - { name: m.z.test., type: AAAA, policy: { kind: multivalue, members: [{ region: a }] } }\n";
    let err = meridian_model::parse_global(yaml).unwrap_err().to_string();
    assert!(err.contains("region \"a\" has no IPv6 public address"), "{err}");
}

/// The example's routing controls with `off` switched off, over `down`.
fn controlled(off: &[&str], down: &[&str]) -> crate::controls::Controlled {
    let c = crate::controls::Controlled::new(std::sync::Arc::new(Down::of(down)));
    c.set_config(&meridian_model::parse_global(EXAMPLE).unwrap());
    let mut states = meridian_sync::controls::ControlsContent::default();
    for (i, name) in off.iter().enumerate() {
        states = meridian_sync::controls::with_change(&states, name, false, i as u64 + 1, 0);
    }
    c.set_states(states);
    c
}

#[test]
fn routing_controls_override_health_and_never_empty_an_answer() {
    let v = view_of(EXAMPLE);
    let a = |name: &str, h: &dyn HealthView| ask_with(&v, name, RecordType::A, "127.0.0.1", None, h, 0);
    // A region switched off leaves the answer although healthy.
    let h = controlled(&["us-east-1"], &[]);
    let f = a("failover.api.example.com.", &h);
    assert_eq!(ips(&f), ["127.0.2.1"]);
    assert_eq!(f.why.switched_off, ["us-east-1"]);
    assert!(!f.why.controls_ignored && !f.why.fail_open);
    assert_eq!(ips(&a("multi.api.example.com.", &h)), ["127.0.2.1", "192.0.2.1", "192.0.2.2"]);
    // Fail-open applies among the members still on: eu is down but the only one on.
    let h = controlled(&["us-east-1"], &["eu-west-1"]);
    let f = a("failover.api.example.com.", &h);
    assert_eq!(ips(&f), ["127.0.2.1"]);
    assert!(f.why.fail_open && !f.why.controls_ignored);
    // A record-set control: only that record set's member.
    let h = controlled(&["failover-secondary"], &["us-east-1"]);
    let f = a("failover.api.example.com.", &h);
    assert_eq!(ips(&f), ["127.0.1.1"], "secondary off: the primary, by fail-open");
    assert_eq!(ips(&a("multi.api.example.com.", &h)), ["127.0.2.1", "192.0.2.1", "192.0.2.2"]);
    // Every member off: controls ignored, the policy answers as without them.
    let h = controlled(&["us-east-1", "eu-west-1"], &[]);
    let f = a("failover.api.example.com.", &h);
    assert_eq!(ips(&f), ["127.0.1.1"]);
    assert!(f.why.controls_ignored);
    let simple = a("api.example.com.", &h);
    assert_eq!(ips(&simple), ["127.0.1.1"]);
    assert!(simple.why.controls_ignored);
    assert_eq!(simple.why.switched_off, ["us-east-1"]);
    // No control off: as before, nothing reported.
    let h = controlled(&[], &[]);
    assert!(a("failover.api.example.com.", &h).why.switched_off.is_empty());
}
