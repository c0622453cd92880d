//! Faults that look like real ones, applied by the supervisor to a [`Target`]:
//!
//! - `kill`: SIGKILL the processes (reaped at once; not a crash) and close their relays, so
//!   connections are refused; `up` starts them again and waits until they are ready.
//! - `stop`: SIGSTOP the processes: connections are accepted by the kernel (or the relay) and
//!   then hang; `up` sends SIGCONT.
//! - `blackhole`: nftables drops packets to the target's addresses, so peers see timeouts;
//!   `up` removes the rules.
//! - `slow`: the relays of the target's instances hold every chunk the instance sends.

use std::collections::BTreeSet;
use std::time::Duration;

use rustix::process::Signal;
use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::nft::Hole;
use crate::procs::{Intent, Proc, Role};
use crate::supervisor::{Inner, RelayEntry, Supervisor};
use crate::{LabError, nft};

/// How a target is taken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Kill,
    Stop,
    Blackhole,
}

impl std::str::FromStr for Mode {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "kill" => Ok(Mode::Kill),
            "stop" => Ok(Mode::Stop),
            "blackhole" => Ok(Mode::Blackhole),
            _ => Err(LabError::Fault(format!("unknown mode {s:?}: expected kill, stop or blackhole"))),
        }
    }
}

fn proc_in(p: &Proc, t: &Target) -> bool {
    match (&p.role, t) {
        (Role::ControlPlane, Target::ControlPlane) | (Role::Director, Target::Director) => true,
        (Role::Checker { region }, Target::Checker(r)) => region == r,
        (Role::Gateway { region }, Target::Region(r) | Target::Gateway(r)) => region == r,
        (Role::Instance { region, .. }, Target::Region(r)) => region == r,
        (Role::Instance { service, region, .. }, Target::Service { service: s, region: r }) => {
            service == s && region == r
        }
        _ => false,
    }
}

fn relay_in(e: &RelayEntry, t: &Target) -> bool {
    match t {
        Target::Region(r) => &e.region == r,
        Target::Service { service, region } => &e.service == service && &e.region == region,
        Target::Gateway(_) | Target::ControlPlane | Target::Director | Target::Checker(_) => false,
    }
}

impl Supervisor {
    /// The destinations a blackhole of `t` drops: the gateway's listeners for a region or a
    /// gateway, the endpoints (relays) of the target's instances, the control plane's address.
    fn blackhole_addresses(&self, inner: &Inner, t: &Target) -> BTreeSet<Hole> {
        let mut set: BTreeSet<Hole> =
            inner.relays.iter().filter(|e| relay_in(e, t)).map(|e| Hole::To(e.relay.listen)).collect();
        match t {
            Target::Region(name) | Target::Gateway(name) => {
                if let Some(r) = self.lab.region(name) {
                    set.extend([r.public(), r.admin(), r.peer()].map(Hole::To));
                }
            }
            Target::ControlPlane => {
                set.insert(Hole::To(crate::plane::ADDRESS));
            }
            Target::Director => {
                set.insert(Hole::To(crate::dns::DIRECTOR_HTTP));
                set.insert(Hole::To(crate::dns::DIRECTOR_DNS));
            }
            Target::Checker(name) => {
                if let Some(r) = self.lab.region(name) {
                    set.insert(Hole::From(crate::dns::checker_source(r)));
                }
            }
            Target::Service { .. } => {}
        }
        set
    }

    /// Takes `target` down; returns what was done.
    pub async fn down(&self, target: &str, mode: Mode) -> Result<String, LabError> {
        let t = Target::parse(target, &self.lab)?;
        let mut inner = self.inner.lock().await;
        let mut names = Vec::new();
        match mode {
            Mode::Kill => {
                for p in inner.procs.iter_mut().filter(|p| proc_in(p, &t) && p.intent != Intent::Killed) {
                    p.kill_now();
                    p.intent = Intent::Killed;
                    names.push(p.name.clone());
                }
                for e in inner.relays.iter_mut().filter(|e| relay_in(e, &t)) {
                    e.relay.close();
                }
            }
            Mode::Stop => {
                for p in inner.procs.iter_mut().filter(|p| proc_in(p, &t) && p.intent == Intent::Running) {
                    p.signal(Signal::STOP);
                    p.intent = Intent::Stopped;
                    names.push(p.name.clone());
                }
            }
            Mode::Blackhole => {
                let addrs = self.blackhole_addresses(&inner, &t);
                names.extend(addrs.iter().map(ToString::to_string));
                inner.blackholes.insert(t.to_string(), addrs);
                if let Err(e) = nft::apply(&union(&inner), &inner.isolated) {
                    inner.blackholes.remove(&t.to_string());
                    return Err(e);
                }
            }
        }
        self.write_state(&inner)?;
        let verb = match mode {
            Mode::Kill => "killed",
            Mode::Stop => "stopped",
            Mode::Blackhole => "blackholed",
        };
        Ok(format!(
            "{t}: {verb} {}",
            if names.is_empty() { "nothing (already down)".into() } else { names.join(", ") }
        ))
    }

    /// Undoes every fault on `target`: restarts killed processes (waiting until ready),
    /// resumes stopped ones, removes its blackholes (of the region and every service in it,
    /// for a region).
    pub async fn up(&self, target: &str) -> Result<String, LabError> {
        let t = Target::parse(target, &self.lab)?;
        let mut inner = self.inner.lock().await;
        let mut done = Vec::new();
        let removed: Vec<String> = inner
            .blackholes
            .keys()
            .filter(|k| match (&t, Target::parse(k, &self.lab)) {
                (
                    Target::Region(r),
                    Ok(Target::Region(x) | Target::Service { region: x, .. } | Target::Gateway(x)),
                ) => *r == x,
                (_, Ok(other)) => other == t,
                (_, Err(_)) => false,
            })
            .cloned()
            .collect();
        if !removed.is_empty() {
            for k in &removed {
                inner.blackholes.remove(k);
            }
            nft::apply(&union(&inner), &inner.isolated)?;
            done.push(format!("removed blackhole of {}", removed.join(", ")));
        }
        for e in inner.relays.iter_mut().filter(|e| relay_in(e, &t)) {
            e.relay.open().await?;
        }
        let mut restarted = Vec::new();
        for p in inner.procs.iter_mut().filter(|p| proc_in(p, &t)) {
            match p.intent {
                Intent::Running => {}
                Intent::Stopped => {
                    p.signal(Signal::CONT);
                    p.intent = Intent::Running;
                    done.push(format!("resumed {}", p.name));
                }
                Intent::Killed => {
                    p.spawn(&self.exe)?;
                    restarted.push(p.name.clone());
                }
            }
        }
        let mut result = Ok(());
        for p in inner.procs.iter_mut().filter(|p| restarted.contains(&p.name)) {
            if let Err(e) = p.wait_ready().await {
                p.kill_now();
                p.intent = Intent::Killed;
                result = Err(e);
                break;
            }
            done.push(format!("restarted {} (pid {})", p.name, p.pid().unwrap_or(0)));
        }
        self.write_state(&inner)?;
        result?;
        Ok(format!("{t}: {}", if done.is_empty() { "nothing to undo".into() } else { done.join(", ") }))
    }

    /// Sets the delay of the relays of `target`'s instances (zero clears it).
    pub async fn slow(&self, target: &str, delay: Duration) -> Result<String, LabError> {
        let t = Target::parse(target, &self.lab)?;
        let inner = self.inner.lock().await;
        let mut n = 0;
        for e in inner.relays.iter().filter(|e| relay_in(e, &t)) {
            e.relay.set_delay(delay);
            n += 1;
        }
        Ok(format!("{t}: delay {}ms on {n} relay(s)", delay.as_millis()))
    }
}

pub(crate) fn union(inner: &Inner) -> BTreeSet<Hole> {
    inner.blackholes.values().flatten().copied().collect()
}
