//! `dns.routing_controls`: the switches and the safety rules over them.

use std::collections::{HashMap, HashSet};

use super::Errors;
use crate::dns::{DnsConfig, RoutingControls, SafetyRule};
use crate::global::Region;

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

pub fn check(rc: &RoutingControls, dns: &DnsConfig, regions: &HashMap<&str, &Region>, errs: &mut Errors) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, c) in rc.controls.iter().enumerate() {
        let p = format!("dns.routing_controls.controls[{i}]");
        if !is_name(&c.name) {
            errs.push(format!("{p}.name"), format!("{:?}: use letters, digits, - and _", c.name));
        } else if let Some(first) = names.get(c.name.as_str()) {
            errs.push(
                format!("{p}.name"),
                format!("duplicate control (also dns.routing_controls.controls[{first}])"),
            );
        } else {
            names.insert(&c.name, i);
        }
        if let Some(r) = &c.region
            && !regions.contains_key(r.as_str())
        {
            errs.push(format!("{p}.region"), format!("unknown region {r:?}"));
        }
        if let Some(rs) = &c.record_set {
            if c.region.is_none() {
                errs.push(format!("{p}.record_set"), "needs region (the member to switch)");
            }
            if !dns.record_sets.iter().any(|s| s.name.eq_ignore_ascii_case(rs)) {
                errs.push(format!("{p}.record_set"), format!("unknown record set {rs:?} (dns.record_sets)"));
            }
        }
    }
    let known = |p: String, n: &str, errs: &mut Errors| {
        if !names.contains_key(n) {
            errs.push(p, format!("unknown routing control {n:?} (dns.routing_controls.controls)"));
        }
    };
    let mut rules = HashSet::new();
    for (i, r) in rc.safety_rules.iter().enumerate() {
        let p = format!("dns.routing_controls.safety_rules[{i}]");
        if !is_name(r.name()) {
            errs.push(format!("{p}.name"), format!("{:?}: use letters, digits, - and _", r.name()));
        } else if !rules.insert(r.name()) {
            errs.push(format!("{p}.name"), format!("duplicate rule {:?}", r.name()));
        }
        let controls = match r {
            SafetyRule::Assertion { controls, min_on, .. } => {
                if *min_on == 0 || *min_on as usize > controls.len() {
                    errs.push(format!("{p}.min_on"), "must be 1 to the number of controls");
                }
                controls
            }
            SafetyRule::Gating { gate, controls, .. } => {
                known(format!("{p}.gate"), gate, errs);
                if controls.contains(gate) {
                    errs.push(format!("{p}.gate"), "the gate cannot be one of the controls it gates");
                }
                controls
            }
        };
        if controls.is_empty() {
            errs.push(format!("{p}.controls"), "at least one control is required");
        }
        for (j, c) in controls.iter().enumerate() {
            known(format!("{p}.controls[{j}]"), c, errs);
        }
    }
}

#[cfg(test)]
mod tests {
    fn errors(rc: &str) -> Vec<String> {
        let yaml = format!(
            "regions:\n  - {{ name: us, public_addresses: [192.0.2.1] }}\n  - {{ name: eu, public_addresses: [192.0.2.2] }}\n\
             dns:\n  zones: [{{ name: a.example., ns: [{{ name: ns.a.example., address: 192.0.2.53 }}] }}]\n  \
             record_sets:\n    - {{ name: f.a.example., type: A, policy: {{ kind: failover, primary: us, secondary: eu }} }}\n  \
             routing_controls:\n{rc}"
        );
        match crate::parse_global(&yaml) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn controls_and_rules_name_their_paths() {
        assert_eq!(
            errors(
                "    controls: [{ name: us, region: us }, { name: eu, region: eu, record_set: f.a.example. }, { name: m }]\n    \
                 safety_rules:\n      - { name: one-on, kind: assertion, controls: [us, eu], min_on: 1 }\n      \
                 - { name: gate, kind: gating, gate: m, controls: [eu] }\n    wait_period: 5m\n"
            ),
            Vec::<String>::new()
        );
        let e = errors(
            "    controls: [{ name: us, region: mars }, { name: us }, { name: x, record_set: g.a.example. }, { name: \"a b\" }]\n    \
             safety_rules:\n      - { name: r, kind: assertion, controls: [us, nope], min_on: 3 }\n      \
             - { name: r, kind: gating, gate: us, controls: [us] }\n",
        );
        assert_eq!(
            e,
            [
                "dns.routing_controls.controls[0].region: unknown region \"mars\"",
                "dns.routing_controls.controls[1].name: duplicate control (also dns.routing_controls.controls[0])",
                "dns.routing_controls.controls[2].record_set: needs region (the member to switch)",
                "dns.routing_controls.controls[2].record_set: unknown record set \"g.a.example.\" (dns.record_sets)",
                "dns.routing_controls.controls[3].name: \"a b\": use letters, digits, - and _",
                "dns.routing_controls.safety_rules[0].min_on: must be 1 to the number of controls",
                "dns.routing_controls.safety_rules[0].controls[1]: unknown routing control \"nope\" (dns.routing_controls.controls)",
                "dns.routing_controls.safety_rules[1].name: duplicate rule \"r\"",
                "dns.routing_controls.safety_rules[1].gate: the gate cannot be one of the controls it gates",
            ]
        );
    }
}
