//! A service's health check, outlier detection, circuit breaker and failover settings.

use std::collections::{HashMap, HashSet};

use super::Errors;
use crate::global::Service;
use crate::resilience::{CircuitBreaker, Failover, HealthCheck, OutlierDetection, Probe};

/// Most half-open probe requests; the breaker packs the count into a few bits, and more would
/// not be a probe any more.
const MAX_HALF_OPEN: u32 = 1000;

/// Checks the resilience settings of the service at path `p` (`services[i]`); `regions` are
/// the config's region names.
pub(super) fn check(p: &str, s: &Service, regions: &HashMap<&str, usize>, errs: &mut Errors) {
    if let Some(h) = &s.health_check {
        health_check(&format!("{p}.health_check"), h, errs);
    }
    outlier(&format!("{p}.outlier_detection"), &s.outlier_detection, errs);
    breaker(&format!("{p}.circuit_breaker"), &s.circuit_breaker, errs);
    failover(p, s, regions, errs);
}

fn at_least_1(errs: &mut Errors, path: String, v: u32) {
    if v == 0 {
        errs.push(path, "must be at least 1");
    }
}

fn health_check(p: &str, h: &HealthCheck, errs: &mut Errors) {
    if let Probe::Http { path, expected_statuses } = &h.probe {
        if !path.starts_with('/') {
            errs.push(format!("{p}.probe.path"), format!("invalid path {path:?}: must start with '/'"));
        } else if let Some(c) = path.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '#') {
            errs.push(format!("{p}.probe.path"), format!("invalid path {path:?}: {c:?} is not allowed"));
        }
        for (j, status) in expected_statuses.iter().enumerate() {
            if !(100..=599).contains(status) {
                errs.push(format!("{p}.probe.expected_statuses[{j}]"), format!("{status} is not 100..=599"));
            }
        }
    }
    errs.positive(|| format!("{p}.interval"), h.interval);
    errs.positive(|| format!("{p}.timeout"), h.timeout);
    // A probe still running when the next is due would overlap it or delay the schedule.
    if !h.interval.get().is_zero() && h.timeout >= h.interval {
        errs.push(format!("{p}.timeout"), "must be shorter than interval");
    }
    at_least_1(errs, format!("{p}.healthy_threshold"), h.healthy_threshold);
    at_least_1(errs, format!("{p}.unhealthy_threshold"), h.unhealthy_threshold);
}

fn outlier(p: &str, o: &OutlierDetection, errs: &mut Errors) {
    at_least_1(errs, format!("{p}.consecutive_5xx"), o.consecutive_5xx);
    at_least_1(errs, format!("{p}.consecutive_gateway_failures"), o.consecutive_gateway_failures);
    errs.positive(|| format!("{p}.base_ejection"), o.base_ejection);
    if o.base_ejection > o.max_ejection {
        errs.push(format!("{p}.base_ejection"), "must not be longer than max_ejection");
    }
    if o.max_ejection_percent > 100 {
        errs.push(format!("{p}.max_ejection_percent"), "must be at most 100");
    }
}

fn breaker(p: &str, b: &CircuitBreaker, errs: &mut Errors) {
    if !(1..=100).contains(&b.failure_rate_percent) {
        errs.push(format!("{p}.failure_rate_percent"), "must be 1..=100");
    }
    at_least_1(errs, format!("{p}.min_requests"), b.min_requests);
    at_least_1(errs, format!("{p}.consecutive_failures"), b.consecutive_failures);
    errs.positive(|| format!("{p}.window"), b.window);
    errs.positive(|| format!("{p}.open_for"), b.open_for);
    if !(1..=MAX_HALF_OPEN).contains(&b.half_open_requests) {
        errs.push(format!("{p}.half_open_requests"), format!("must be 1..={MAX_HALF_OPEN}"));
    }
}

fn failover(service: &str, s: &Service, regions: &HashMap<&str, usize>, errs: &mut Errors) {
    let f: &Failover = &s.failover;
    let p = format!("{service}.failover");
    for (j, r) in f.allowed_regions.iter().enumerate() {
        if !regions.contains_key(r.as_str()) {
            errs.push(format!("{p}.allowed_regions[{j}]"), format!("unknown region {r:?}"));
        }
    }
    let allowed = |r: &str| f.allowed_regions.is_empty() || f.allowed_regions.iter().any(|a| a == r);
    let mut seen = HashSet::new();
    for (j, r) in f.priority.iter().enumerate() {
        let path = format!("{p}.priority[{j}]");
        if !regions.contains_key(r.as_str()) {
            errs.push(path, format!("unknown region {r:?}"));
        } else if !allowed(r) {
            errs.push(path, format!("{r:?} is not in allowed_regions"));
        } else if !seen.insert(r.as_str()) {
            errs.push(path, format!("duplicate region {r:?}"));
        }
    }
    // Data residency: endpoints outside the allowed regions would serve from there anyway.
    for r in s.endpoints.keys() {
        if regions.contains_key(r.as_str()) && !allowed(r) {
            errs.push(format!("{service}.endpoints.{r}"), format!("{r:?} is not in allowed_regions"));
        }
    }
    if f.overprovisioning_percent < 100 {
        errs.push(format!("{p}.overprovisioning_percent"), "must be at least 100");
    }
    if f.panic_threshold_percent > 100 {
        errs.push(format!("{p}.panic_threshold_percent"), "must be at most 100");
    }
}

#[cfg(test)]
mod tests {
    use crate::valid::parse_global;

    fn errors(services: &str) -> Vec<String> {
        let yaml = format!("regions:\n  - name: eu\n  - name: us\n  - name: ap\nservices:\n{services}");
        match parse_global(&yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_and_a_full_valid_service_pass() {
        assert_eq!(errors("  - name: s\n    health_check: {}\n"), Vec::<String>::new());
        let full = "  - name: s\n    endpoints: {eu: [{address: \"a:1\"}]}\n\
                    \x20   health_check: {probe: {type: http, path: \"/healthz?deep=1\", expected_statuses: [200, 204]}, interval: 2s, timeout: 500ms}\n\
                    \x20   outlier_detection: {base_ejection: 5m, max_ejection: 5m, max_ejection_percent: 100}\n\
                    \x20   circuit_breaker: {failure_rate_percent: 100, half_open_requests: 1}\n\
                    \x20   failover: {priority: [us, ap], allowed_regions: [eu, us, ap], overprovisioning_percent: 100, panic_threshold_percent: 0}\n";
        assert_eq!(errors(full), Vec::<String>::new());
        assert_eq!(errors("  - name: s\n    health_check: {probe: {type: tcp}}\n"), Vec::<String>::new());
    }

    #[test]
    fn health_check() {
        let got = errors(
            "  - name: a\n  - name: b\n  - name: c\n    health_check:\n\
             \x20     probe: {type: http, path: healthz, expected_statuses: [200, 99, 600]}\n\
             \x20     interval: 1s\n      timeout: 1s\n      healthy_threshold: 0\n      unhealthy_threshold: 0\n\
             \x20 - name: d\n    health_check: {probe: {type: http, path: \"/a b\"}, interval: 0s, timeout: 0s}\n",
        );
        assert_eq!(
            got,
            [
                "services[2].health_check.probe.path: invalid path \"healthz\": must start with '/'",
                "services[2].health_check.probe.expected_statuses[1]: 99 is not 100..=599",
                "services[2].health_check.probe.expected_statuses[2]: 600 is not 100..=599",
                "services[2].health_check.timeout: must be shorter than interval",
                "services[2].health_check.healthy_threshold: must be at least 1",
                "services[2].health_check.unhealthy_threshold: must be at least 1",
                "services[3].health_check.probe.path: invalid path \"/a b\": ' ' is not allowed",
                "services[3].health_check.interval: must be greater than 0",
                "services[3].health_check.timeout: must be greater than 0",
            ]
        );
    }

    #[test]
    fn outlier_detection() {
        let got = errors(
            "  - name: s\n    outlier_detection: {consecutive_5xx: 0, consecutive_gateway_failures: 0, \
             base_ejection: 10m, max_ejection: 5m, max_ejection_percent: 101}\n\
             \x20 - name: t\n    outlier_detection: {base_ejection: 0s}\n",
        );
        assert_eq!(
            got,
            [
                "services[0].outlier_detection.consecutive_5xx: must be at least 1",
                "services[0].outlier_detection.consecutive_gateway_failures: must be at least 1",
                "services[0].outlier_detection.base_ejection: must not be longer than max_ejection",
                "services[0].outlier_detection.max_ejection_percent: must be at most 100",
                "services[1].outlier_detection.base_ejection: must be greater than 0",
            ]
        );
    }

    #[test]
    fn circuit_breaker() {
        let got = errors(
            "  - name: s\n    circuit_breaker: {failure_rate_percent: 0, min_requests: 0, consecutive_failures: 0, \
             window: 0s, open_for: 0s, half_open_requests: 0}\n\
             \x20 - name: t\n    circuit_breaker: {failure_rate_percent: 101, half_open_requests: 1001}\n",
        );
        assert_eq!(
            got,
            [
                "services[0].circuit_breaker.failure_rate_percent: must be 1..=100",
                "services[0].circuit_breaker.min_requests: must be at least 1",
                "services[0].circuit_breaker.consecutive_failures: must be at least 1",
                "services[0].circuit_breaker.window: must be greater than 0",
                "services[0].circuit_breaker.open_for: must be greater than 0",
                "services[0].circuit_breaker.half_open_requests: must be 1..=1000",
                "services[1].circuit_breaker.failure_rate_percent: must be 1..=100",
                "services[1].circuit_breaker.half_open_requests: must be 1..=1000",
            ]
        );
    }

    #[test]
    fn failover() {
        let got = errors(
            "  - name: s\n    endpoints: {eu: [{address: \"a:1\"}], us: [{address: \"b:1\"}]}\n\
             \x20   failover:\n      priority: [x, eu, us, us]\n      allowed_regions: [us, y]\n\
             \x20     overprovisioning_percent: 99\n      panic_threshold_percent: 101\n",
        );
        assert_eq!(
            got,
            [
                "services[0].failover.allowed_regions[1]: unknown region \"y\"",
                "services[0].failover.priority[0]: unknown region \"x\"",
                "services[0].failover.priority[1]: \"eu\" is not in allowed_regions",
                "services[0].failover.priority[3]: duplicate region \"us\"",
                "services[0].endpoints.eu: \"eu\" is not in allowed_regions",
                "services[0].failover.overprovisioning_percent: must be at least 100",
                "services[0].failover.panic_threshold_percent: must be at most 100",
            ]
        );
    }
}
