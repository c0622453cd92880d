//! Routing controls as pushed state (kind `controls`): the state of every control ever set,
//! and the safety rules a change must keep (`dns.routing_controls` in the global config).
//!
//! The rules are judged here, as a pure function of the config, the current states and the
//! time, so the control plane refuses an unsafe change the same way whichever instance takes
//! it, and tests judge them with an injected clock.

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_model::dns::{RoutingControls, SafetyRule};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The content of a `controls` snapshot: by control name, every control ever set. A control
/// absent here is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlsContent {
    #[serde(default)]
    pub controls: BTreeMap<String, ControlState>,
}

/// The state of one control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    pub on: bool,
    /// The `controls` version of its last change.
    pub version: u64,
    /// When it last changed, Unix milliseconds.
    pub changed_at_ms: u64,
}

impl ControlsContent {
    /// Whether `name` is on (a control never set is).
    pub fn is_on(&self, name: &str) -> bool {
        self.controls.get(name).is_none_or(|c| c.on)
    }

    /// Canonical JSON and its SHA-256 (hex): the snapshot's content and hash.
    pub fn canonical(&self) -> (String, String) {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        let hash = hex::encode(Sha256::digest(json.as_bytes()));
        (json, hash)
    }
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown routing control {0:?} (dns.routing_controls.controls)")]
    Unknown(String),
    /// A safety rule (or the wait period, named `wait_period`) would be broken.
    #[error("refused by safety rule {rule:?}: {message}")]
    Unsafe { rule: String, message: String },
}

impl Refusal {
    /// The rule that refused, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Refusal::Unsafe { rule, .. } => Some(rule),
            Refusal::Unknown(_) => None,
        }
    }
}

/// Judges switching `name` to `on` at `now_ms` (Unix milliseconds), given the current states.
/// A change to the state a control already has is not judged (nothing changes).
pub fn check_change(
    rc: &RoutingControls,
    cur: &ControlsContent,
    name: &str,
    on: bool,
    now_ms: u64,
) -> Result<(), Refusal> {
    if !rc.controls.iter().any(|c| c.name == name) {
        return Err(Refusal::Unknown(name.to_string()));
    }
    if cur.is_on(name) == on {
        return Ok(());
    }
    let unsafe_ = |rule: &str, message: String| Refusal::Unsafe { rule: rule.to_string(), message };
    if let Some(last) = cur.controls.get(name) {
        let wait = rc.wait_period.get();
        let since = Duration::from_millis(now_ms.saturating_sub(last.changed_at_ms));
        if since < wait {
            return Err(unsafe_(
                "wait_period",
                format!(
                    "{name} changed {} ago; it cannot change again before {} have passed (wait again in {})",
                    meridian_core::format_duration(since),
                    meridian_core::format_duration(wait),
                    meridian_core::format_duration(wait - since)
                ),
            ));
        }
    }
    for rule in &rc.safety_rules {
        match rule {
            SafetyRule::Gating { name: rule, gate, controls }
                if controls.iter().any(|c| c == name) && !cur.is_on(gate) =>
            {
                return Err(unsafe_(
                    rule,
                    format!("{name} can change only while the gate {gate} is on; {gate} is off"),
                ));
            }
            // Switching on never breaks an assertion; switching off must leave enough on.
            SafetyRule::Assertion { name: rule, controls, min_on }
                if !on && controls.iter().any(|c| c == name) =>
            {
                let left = controls.iter().filter(|c| *c != name && cur.is_on(c)).count();
                if (left as u64) < u64::from(*min_on) {
                    return Err(unsafe_(
                        rule,
                        format!(
                            "switching {name} off would leave {left} of [{}] on; at least {min_on} must stay on",
                            controls.join(", ")
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `cur` with `name` switched to `on` as of `version` at `now_ms`.
pub fn with_change(
    cur: &ControlsContent,
    name: &str,
    on: bool,
    version: u64,
    now_ms: u64,
) -> ControlsContent {
    let mut next = cur.clone();
    next.controls.insert(name.to_string(), ControlState { on, version, changed_at_ms: now_ms });
    next
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_core::clock::{Clock, ManualClock};

    use super::*;

    fn rules() -> RoutingControls {
        serde_json::from_value(serde_json::json!({
            "controls": [{"name": "us"}, {"name": "eu"}, {"name": "ap"}, {"name": "sec"}, {"name": "master"}],
            "safety_rules": [
                {"name": "one-region-on", "kind": "assertion", "controls": ["us", "eu", "ap"], "min_on": 2},
                {"name": "master-gate", "kind": "gating", "gate": "master", "controls": ["sec"]},
            ],
            "wait_period": "5m",
        }))
        .unwrap()
    }

    fn ms(clock: &dyn Clock) -> u64 {
        clock.wall().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    /// Applies a change the rules allow, as the control plane would.
    fn set(
        rc: &RoutingControls,
        cur: &mut ControlsContent,
        clock: &dyn Clock,
        name: &str,
        on: bool,
    ) -> Result<(), Refusal> {
        check_change(rc, cur, name, on, ms(clock))?;
        let v = cur.controls.values().map(|c| c.version).max().unwrap_or(0) + 1;
        *cur = with_change(cur, name, on, v, ms(clock));
        Ok(())
    }

    #[test]
    fn assertion_keeps_enough_controls_on() {
        let rc = rules();
        let clock = Arc::new(ManualClock::new());
        let mut cur = ControlsContent::default();
        set(&rc, &mut cur, clock.as_ref(), "us", false).unwrap();
        let e = set(&rc, &mut cur, clock.as_ref(), "eu", false).unwrap_err();
        assert_eq!(e.rule(), Some("one-region-on"));
        assert_eq!(
            e.to_string(),
            "refused by safety rule \"one-region-on\": switching eu off would leave 1 of [us, eu, ap] on; at least 2 must stay on"
        );
        // Switching on is always allowed by an assertion; then eu may go off.
        clock.advance(Duration::from_secs(300));
        set(&rc, &mut cur, clock.as_ref(), "us", true).unwrap();
        set(&rc, &mut cur, clock.as_ref(), "eu", false).unwrap();
        assert!(!cur.is_on("eu") && cur.is_on("us") && cur.is_on("ap"));
    }

    #[test]
    fn gating_needs_the_master_switch_on() {
        let rc = rules();
        let clock = Arc::new(ManualClock::new());
        let mut cur = ControlsContent::default();
        set(&rc, &mut cur, clock.as_ref(), "master", false).unwrap();
        let e = set(&rc, &mut cur, clock.as_ref(), "sec", false).unwrap_err();
        assert_eq!(e.rule(), Some("master-gate"));
        assert!(e.to_string().contains("sec can change only while the gate master is on"), "{e}");
        clock.advance(Duration::from_secs(300));
        set(&rc, &mut cur, clock.as_ref(), "master", true).unwrap();
        set(&rc, &mut cur, clock.as_ref(), "sec", false).unwrap();
        // Ungated controls do not care about the gate.
        assert!(check_change(&rc, &cur, "ap", false, ms(clock.as_ref())).is_ok());
    }

    #[test]
    fn wait_period_stops_flapping() {
        let rc = rules();
        let clock = Arc::new(ManualClock::new());
        let mut cur = ControlsContent::default();
        set(&rc, &mut cur, clock.as_ref(), "ap", false).unwrap();
        clock.advance(Duration::from_secs(299));
        let e = set(&rc, &mut cur, clock.as_ref(), "ap", true).unwrap_err();
        assert_eq!(e.rule(), Some("wait_period"));
        assert!(e.to_string().contains("wait again in 1s"), "{e}");
        // Setting the state it already has is no change, so no wait.
        assert!(check_change(&rc, &cur, "ap", false, ms(clock.as_ref())).is_ok());
        clock.advance(Duration::from_secs(1));
        set(&rc, &mut cur, clock.as_ref(), "ap", true).unwrap();
        assert!(cur.is_on("ap"));
        assert_eq!(check_change(&rc, &cur, "nope", true, 0), Err(Refusal::Unknown("nope".into())));
    }
}
