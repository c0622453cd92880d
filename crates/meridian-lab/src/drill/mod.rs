//! `meridian drill`: takes each service out of each region in turn and measures how traffic
//! moves — time to detect, to fail over, to recover, and the errors clients saw.
//!
//! Probes: every service through every region's gateway at a fixed interval. The serving
//! region of each answer is read from the `x-meridian-region` header the gateways set. A step
//! passes when probes through the affected region moved to another region, no other service
//! left that region, the service came back after the restore, and failed probes stayed within
//! the error budget.

pub mod report;
pub mod topology;

use std::time::{Duration, Instant};

pub use report::{DrillReport, StepReport};
pub use topology::{DrillRegion, DrillService, Topology};

use crate::client::LabClient;
use crate::faults::Mode;
use crate::{LabError, http1};

/// How a target is taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A drain switch: through the control plane when [`DrillOptions::control`] is set (a new
    /// drains version pushed to every gateway), else `PUT /-/drains/SERVICE@REGION` on every
    /// gateway's admin API. Works on a real deployment.
    Drain,
    /// A lab fault.
    Fault(Mode),
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Drain => "drain",
            Method::Fault(Mode::Kill) => "kill",
            Method::Fault(Mode::Stop) => "stop",
            Method::Fault(Mode::Blackhole) => "blackhole",
        }
    }
}

pub struct DrillOptions {
    pub method: Method,
    /// Time between probe rounds. Default 5s.
    pub interval: Duration,
    /// Longest wait for failover and for recovery in each step. Default 60s.
    pub settle: Duration,
    /// Failed probes allowed per step. Default 0.
    pub error_budget: u64,
    /// Probes shorter than this fail. Default 10s.
    pub probe_timeout: Duration,
    /// Only these `SERVICE@REGION` targets (default: all).
    pub only: Vec<String>,
    /// Set drain switches through this control plane rather than on each gateway.
    pub control: Option<ControlPlane>,
}

/// A control plane's admin API and a token with the operator role.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub addr: std::net::SocketAddr,
    pub token: String,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            method: Method::Drain,
            interval: Duration::from_secs(5),
            settle: Duration::from_secs(60),
            error_budget: 0,
            probe_timeout: Duration::from_secs(10),
            only: Vec::new(),
            control: None,
        }
    }
}

/// One probe's answer: the serving region, or None for a failure.
async fn probe(region: &DrillRegion, service: &DrillService, timeout: Duration) -> Option<String> {
    let mut req = http1::Request::get(region.gateway, &service.path, timeout);
    req.source = region.client_source;
    let r = req.send().await.ok()?;
    if !r.status.is_success() {
        return None;
    }
    Some(r.headers.get("x-meridian-region").and_then(|v| v.to_str().ok()).unwrap_or("?").to_string())
}

async fn serves_itself(region: &DrillRegion, service: &str, timeout: Duration) -> bool {
    let path = format!("/-/health/services/{service}");
    http1::Request::get(region.admin, &path, timeout)
        .send()
        .await
        .map(|r| r.status.is_success())
        .unwrap_or(false)
}

async fn set_drain(
    topo: &Topology,
    opts: &DrillOptions,
    target: &str,
    drained: bool,
) -> Result<(), LabError> {
    let (timeout, method) =
        (opts.probe_timeout, if drained { http::Method::PUT } else { http::Method::DELETE });
    if let Some(cp) = &opts.control {
        let path = format!("/v1/drains/{target}");
        let mut req = http1::Request::get(cp.addr, &path, timeout).bearer(&cp.token);
        req.method = method;
        let resp = req.send().await?;
        if !resp.status.is_success() {
            return Err(LabError::Fault(format!(
                "control plane: drain {target} answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body).trim()
            )));
        }
        return Ok(());
    }
    let path = format!("/-/drains/{target}");
    for r in &topo.regions {
        let mut req = http1::Request::get(r.admin, &path, timeout);
        req.method = method.clone();
        let resp = req.send().await?;
        if !resp.status.is_success() {
            return Err(LabError::Fault(format!("{}: drain {target} answered {}", r.name, resp.status)));
        }
    }
    Ok(())
}

/// Runs the drill. `lab` is needed for fault methods; `progress` gets one line per event.
pub async fn run(
    topo: &Topology,
    opts: &DrillOptions,
    lab: Option<&LabClient>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<DrillReport, LabError> {
    if matches!(opts.method, Method::Fault(_)) && lab.is_none() {
        return Err(LabError::Config("fault methods need a running lab (--dir)".into()));
    }
    let mut report = DrillReport { steps: Vec::new(), passed: true };
    for service in &topo.services {
        for region in &topo.regions {
            let target = format!("{}@{}", service.name, region.name);
            if !opts.only.is_empty() && !opts.only.contains(&target) {
                continue;
            }
            progress(&format!("{target}: taking out by {}", opts.method.name()));
            let step = step(topo, opts, lab, service, region, &target, progress).await?;
            progress(&format!(
                "{target}: {} (failover {:?} ms, recover {:?} ms, {} of {} probes failed)",
                if step.passed { "pass" } else { "FAIL" },
                step.failover_ms,
                step.recover_ms,
                step.failed,
                step.sent
            ));
            report.passed &= step.passed;
            report.steps.push(step);
        }
    }
    Ok(report)
}

async fn step(
    topo: &Topology,
    opts: &DrillOptions,
    lab: Option<&LabClient>,
    service: &DrillService,
    region: &DrillRegion,
    target: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<StepReport, LabError> {
    let mut s = StepReport {
        service: service.name.clone(),
        region: region.name.clone(),
        method: opts.method.name().to_string(),
        ..Default::default()
    };
    // Before: the service is served by the region itself. Right after a previous step the
    // region may still be taking its traffic back (slow start), so wait for a local answer.
    let ready_by = Instant::now() + opts.settle;
    loop {
        if probe(region, service, opts.probe_timeout).await.as_deref() == Some(region.name.as_str()) {
            break;
        }
        if Instant::now() >= ready_by {
            s.problems.push("not served locally before the fault".into());
            break;
        }
        tokio::time::sleep(opts.interval).await;
    }

    let t0 = Instant::now();
    match (opts.method, lab) {
        (Method::Drain, _) => set_drain(topo, opts, target, true).await?,
        (Method::Fault(mode), Some(lab)) => {
            lab.down(target, mode).await?;
        }
        (Method::Fault(_), None) => unreachable_lab()?,
    }
    let elapsed = |t: Instant| Some(t.duration_since(t0).as_millis() as u64);
    // During: probe rounds until both failover and detection were seen (then one more round)
    // or the deadline.
    let deadline = t0 + opts.settle;
    let mut rounds_after_failover = 0;
    while Instant::now() < deadline && rounds_after_failover < 2 {
        if s.detect_ms.is_none() && !serves_itself(region, &service.name, opts.probe_timeout).await {
            s.detect_ms = elapsed(Instant::now());
        }
        round(topo, opts, service, region, &mut s, true, t0).await;
        if s.failover_ms.is_some() && s.detect_ms.is_some() {
            rounds_after_failover += 1;
        }
        tokio::time::sleep(opts.interval).await;
    }
    if s.failover_ms.is_none() {
        s.problems.push(format!("no failover within {:?}", opts.settle));
    }
    if s.detect_ms.is_none() {
        s.problems.push(format!("the region never reported the service down within {:?}", opts.settle));
    }

    // Restore, then wait for the region to serve the service itself again.
    let t1 = Instant::now();
    match (opts.method, lab) {
        (Method::Drain, _) => set_drain(topo, opts, target, false).await?,
        (Method::Fault(_), Some(lab)) => {
            lab.up(target).await?;
        }
        (Method::Fault(_), None) => unreachable_lab()?,
    }
    let deadline = t1 + opts.settle;
    while Instant::now() < deadline {
        s.sent += 1;
        match probe(region, service, opts.probe_timeout).await {
            Some(r) if r == region.name => {
                s.recover_ms = Some(t1.elapsed().as_millis() as u64);
                break;
            }
            Some(_) => {}
            None => s.failed += 1,
        }
        tokio::time::sleep(opts.interval).await;
    }
    if s.recover_ms.is_none() {
        s.problems.push(format!("traffic did not return within {:?}", opts.settle));
    }
    if !s.others_moved.is_empty() {
        s.problems.push(format!("other services moved: {}", s.others_moved.join(", ")));
    }
    if s.failed > opts.error_budget {
        s.problems.push(format!("{} failed probes (budget {})", s.failed, opts.error_budget));
    }
    s.passed = s.problems.is_empty();
    if !s.passed {
        progress(&format!("{target}: {}", s.problems.join("; ")));
    }
    Ok(s)
}

/// One round: every service through every region (the affected pair checked for failover,
/// the other services through the affected region checked for staying put).
async fn round(
    topo: &Topology,
    opts: &DrillOptions,
    service: &DrillService,
    region: &DrillRegion,
    s: &mut StepReport,
    during_fault: bool,
    t0: Instant,
) {
    for r in &topo.regions {
        for svc in &topo.services {
            s.sent += 1;
            let Some(served) = probe(r, svc, opts.probe_timeout).await else {
                s.failed += 1;
                continue;
            };
            let affected = svc.name == service.name && r.name == region.name;
            if affected && during_fault && served != region.name {
                if s.failover_ms.is_none() {
                    s.failover_ms = Some(t0.elapsed().as_millis() as u64);
                }
                if !s.served_by.contains(&served) {
                    s.served_by.push(served.clone());
                }
            }
            // Another service probed through the affected region must stay there.
            if !affected && r.name == region.name && svc.name != service.name && served != region.name {
                let who = format!("{}@{}→{served}", svc.name, r.name);
                if !s.others_moved.contains(&who) {
                    s.others_moved.push(who);
                }
            }
        }
    }
}

fn unreachable_lab() -> Result<(), LabError> {
    Err(LabError::Config("fault methods need a running lab (--dir)".into()))
}
