//! Routing controls in answers: the latest control states (pushed by the control plane, kept in
//! the last-known-good snapshot) applied over health.
//!
//! A region or record-set member whose control is off is left out of answers whatever its
//! health. The policy then applies health with fail-open among the members still on. When every
//! member of a record set is off, controls are ignored for it and the policy answers as if all
//! were on (as Route 53 ARC, whose off controls are failed health checks under Route 53's
//! fail-open rule): controls never empty an answer. The assertion safety rules are what keep
//! an operator from getting there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use meridian_model::ValidConfig;
use meridian_sync::controls::ControlsContent;

use crate::health::{HealthTarget, HealthView};

/// The compiled off switches of one (config, controls) pair.
#[derive(Debug, Default)]
pub(crate) struct Switches {
    /// region → the control (off) that takes it out of every record set.
    regions: HashMap<String, String>,
    /// (record set name, lowercase absolute; region) → the control (off).
    members: HashMap<(String, String), String>,
}

impl Switches {
    fn build(config: &ValidConfig, states: &ControlsContent) -> Switches {
        let mut s = Switches::default();
        let Some(rc) = config.config().dns.as_ref().and_then(|d| d.routing_controls.as_ref()) else {
            return s;
        };
        for c in rc.controls.iter().filter(|c| !states.is_on(&c.name)) {
            match (&c.region, &c.record_set) {
                (Some(r), None) => {
                    s.regions.entry(r.clone()).or_insert_with(|| c.name.clone());
                }
                (Some(r), Some(rs)) => {
                    s.members.entry((rs.to_ascii_lowercase(), r.clone())).or_insert_with(|| c.name.clone());
                }
                // A master switch: nothing in answers.
                (None, _) => {}
            }
        }
        s
    }

    fn is_empty(&self) -> bool {
        self.regions.is_empty() && self.members.is_empty()
    }
}

/// A health view with the routing controls over it: what the policies ask.
pub(crate) struct Controlled {
    inner: Arc<dyn HealthView>,
    switches: ArcSwap<Switches>,
    /// Some control is off: read per query, so a plain flag rather than a load of `switches`.
    active: AtomicBool,
    /// The config and states the switches were built from, to rebuild on either's change.
    inputs: Mutex<(Option<ValidConfig>, ControlsContent)>,
}

impl Controlled {
    pub fn new(inner: Arc<dyn HealthView>) -> Controlled {
        Controlled {
            inner,
            switches: ArcSwap::from_pointee(Switches::default()),
            active: AtomicBool::new(false),
            inputs: Mutex::new((None, ControlsContent::default())),
        }
    }

    /// A new config version: its controls, with the current states.
    pub fn set_config(&self, config: &ValidConfig) {
        let mut i = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        i.0 = Some(config.clone());
        self.rebuild(&i);
    }

    /// New control states.
    pub fn set_states(&self, states: ControlsContent) {
        let mut i = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        i.1 = states;
        self.rebuild(&i);
    }

    fn rebuild(&self, i: &(Option<ValidConfig>, ControlsContent)) {
        let s = i.0.as_ref().map(|c| Switches::build(c, &i.1)).unwrap_or_default();
        let active = !s.is_empty();
        self.switches.store(Arc::new(s));
        // After the store: a query that sees the flag finds the switches it announces.
        self.active.store(active, Ordering::Release);
    }
}

impl HealthView for Controlled {
    fn healthy(&self, target: HealthTarget<'_>) -> bool {
        self.inner.healthy(target)
    }

    fn controls_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn switched_off(&self, record_set: &str, region: &str) -> Option<String> {
        let s = self.switches.load();
        s.regions
            .get(region)
            .or_else(|| s.members.get(&(record_set.to_string(), region.to_string())))
            .cloned()
    }
}
