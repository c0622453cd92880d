//! The lab supervisor behind `meridian up`: generates the files, starts the control plane and
//! provisions it, then every service instance (behind its relay) and every gateway as child
//! processes (the gateways take their config from the control plane), waits until each is ready, serves
//! the control API, and watches for crashes. It stops everything, and removes its nftables
//! table, when asked to stop or when a child exits that nobody killed on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::LabConfig;
use crate::generate::{Generated, generate};
use crate::procs::{Intent, Proc, Readiness, Role, stop_all};
use crate::relay::Relay;
use crate::state::{ProcessEntry, StateFile};
use crate::{LabError, control_api, nft, state};

/// How `meridian up` runs the lab.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run directory (generated files, logs, state.json).
    pub dir: PathBuf,
    /// Worker threads of every gateway.
    pub workers: usize,
    /// Address of the lab control API.
    pub control: SocketAddr,
    /// The `meridian` binary the children run.
    pub exe: PathBuf,
    /// Isolate regions with nftables: a region's service endpoints accept connections only
    /// from the region's own addresses (127.0.N.0/24), so cross-region traffic must go through
    /// the peer gateways.
    pub isolate: bool,
}

/// A running lab.
pub struct Supervisor {
    pub lab: LabConfig,
    pub generated: Generated,
    pub control: SocketAddr,
    pub(crate) exe: PathBuf,
    pub(crate) inner: tokio::sync::Mutex<Inner>,
}

/// The mutable part, behind one lock: faults are applied one at a time.
pub(crate) struct Inner {
    /// Service instances first, then gateways: the order to start them in.
    pub procs: Vec<Proc>,
    pub relays: Vec<RelayEntry>,
    /// Blackholed destinations, by the target that asked for them.
    pub blackholes: BTreeMap<String, BTreeSet<crate::nft::Hole>>,
    /// Loopback octets of the isolated regions (all of them with `--isolate`, else none).
    pub isolated: Vec<u8>,
}

/// Rules left in place when the lab goes away on an unusual path (start-up interrupted, an
/// error) are removed; [`Supervisor::shutdown`] clears both lists after removing them itself.
impl Drop for Inner {
    fn drop(&mut self) {
        if !self.blackholes.is_empty() || !self.isolated.is_empty() {
            let _ = nft::reset();
        }
    }
}

pub(crate) struct RelayEntry {
    pub service: String,
    pub region: String,
    pub relay: Relay,
}

impl Supervisor {
    /// Generates the lab's files and starts everything; `progress` gets one line per step.
    /// On failure every process started so far is stopped again.
    pub async fn start(
        lab: LabConfig,
        opts: Options,
        progress: &dyn Fn(&str),
    ) -> Result<Arc<Supervisor>, LabError> {
        state::take_over(&opts.dir, progress)?;
        let generated = generate(&lab, &opts.dir)?;
        crate::dns::write_report_token(&generated.dir)?;
        progress(&format!("generated configs and certificates in {}", generated.dir.display()));
        if let Err(e) = nft::reset() {
            progress(&format!("warning: {e} (blackhole faults will not work)"));
        }
        let control = tokio::net::TcpListener::bind(opts.control)
            .await
            .map_err(|e| LabError::io(format!("binding the lab control API on {}", opts.control), e))?;
        let isolated: Vec<u8> =
            if opts.isolate { lab.regions.iter().map(|r| r.octet).collect() } else { vec![] };
        if !isolated.is_empty() {
            nft::apply(&BTreeSet::new(), &isolated)?;
            progress("regions isolated: a region's service endpoints accept only its own addresses");
        }
        let mut inner = Inner {
            procs: plan(&lab, &generated, opts.workers),
            relays: Vec::new(),
            blackholes: BTreeMap::new(),
            isolated,
        };
        for (k, s) in lab.services.iter().enumerate() {
            for r in &lab.regions {
                for i in 0..s.instances {
                    let relay = Relay::new(r.endpoint(k, i), r.backend(k, i));
                    inner.relays.push(RelayEntry { service: s.name.clone(), region: r.name.clone(), relay });
                }
            }
        }
        if let Err(e) = start_all(&mut inner, &lab, &generated, &opts.exe, progress).await {
            // Dropping `inner` removes the isolation rules.
            stop_all(&mut inner.procs).await;
            return Err(e);
        }
        let sup = Arc::new(Supervisor {
            lab,
            generated,
            control: opts.control,
            exe: opts.exe,
            inner: tokio::sync::Mutex::new(inner),
        });
        sup.write_state(&*sup.inner.lock().await)?;
        tokio::spawn(control_api::serve(control, Arc::clone(&sup)));
        Ok(sup)
    }

    /// Runs until `stop` resolves (then stops everything and returns `Ok`) or a child crashes
    /// (then stops everything and returns the error).
    pub async fn run_until(self: &Arc<Self>, stop: impl Future<Output = ()>) -> Result<(), LabError> {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let result = loop {
            tokio::select! {
                _ = &mut stop => break Ok(()),
                _ = tick.tick() => {
                    let mut inner = self.inner.lock().await;
                    let crashed = inner.procs.iter_mut().filter(|p| p.intent != Intent::Killed).find_map(|p| {
                        p.check_exit().map(|status| format!("{} exited unexpectedly ({status}); see {}", p.name, p.log.display()))
                    });
                    if let Some(reason) = crashed {
                        break Err(LabError::Process(reason));
                    }
                }
            }
        };
        self.shutdown().await;
        result
    }

    /// Stops every process and relay, removes the nftables table and the state file.
    pub async fn shutdown(&self) {
        let mut inner = self.inner.lock().await;
        for r in &mut inner.relays {
            r.relay.close();
        }
        stop_all(&mut inner.procs).await;
        if (!inner.blackholes.is_empty()
            || !inner.isolated.is_empty()
            || nft::table_exists().unwrap_or(false))
            && let Err(e) = nft::reset()
        {
            tracing::warn!("removing the lab's nftables table: {e}");
        }
        inner.blackholes.clear();
        inner.isolated.clear();
        state::remove(&self.generated.dir);
    }

    /// Writes `DIR/state.json`.
    pub(crate) fn write_state(&self, inner: &Inner) -> Result<(), LabError> {
        let processes = inner
            .procs
            .iter()
            .map(|p| ProcessEntry { name: p.name.clone(), pid: p.pid(), intent: p.intent })
            .collect();
        let s = StateFile {
            control: self.control,
            supervisor_pid: std::process::id(),
            dir: self.generated.dir.clone(),
            lab: self.lab.clone(),
            processes,
        };
        state::write(&self.generated.dir, &s)
    }
}

/// Every process of the lab: the control plane, the service instances, the gateways.
fn plan(lab: &LabConfig, g: &Generated, workers: usize) -> Vec<Proc> {
    let mut procs = Vec::new();
    let log = |name: &str| g.logs.join(format!("{name}.log"));
    procs.push(Proc {
        args: vec!["control".into(), "-c".into(), g.plane.config.display().to_string()],
        log: log("control"),
        name: "control".into(),
        role: Role::ControlPlane,
        ready: Readiness::Tcp(crate::plane::ADDRESS),
        child: None,
        intent: Intent::Killed,
    });
    for (k, s) in lab.services.iter().enumerate() {
        for r in &lab.regions {
            for i in 0..s.instances {
                let name = format!("{}-{}-{}", s.name, r.name, i + 1);
                let backend = r.backend(k, i);
                procs.push(Proc {
                    args: [
                        "demo-upstream",
                        "--listen",
                        &backend.to_string(),
                        "--service",
                        &s.name,
                        "--region",
                        &r.name,
                        "--instance",
                        &name,
                    ]
                    .map(String::from)
                    .to_vec(),
                    log: log(&name),
                    name,
                    role: Role::Instance { service: s.name.clone(), region: r.name.clone(), index: i },
                    ready: Readiness::Tcp(backend),
                    child: None,
                    intent: Intent::Killed,
                });
            }
        }
    }
    for (region, id, bootstrap) in &g.gateways {
        let Some(r) = lab.region(region) else { continue };
        procs.push(Proc {
            args: vec![
                "gateway".into(),
                "-c".into(),
                bootstrap.display().to_string(),
                "--workers".into(),
                workers.to_string(),
            ],
            log: log(id),
            name: id.clone(),
            role: Role::Gateway { region: region.clone() },
            ready: Readiness::Gateway { public: r.public(), admin: r.admin() },
            child: None,
            intent: Intent::Killed,
        });
    }
    let first_region = lab.regions.first().map_or(String::new(), |r| r.name.clone());
    procs.push(Proc {
        args: [
            "director",
            "--control",
            &format!("http://{}", crate::plane::ADDRESS),
            "--token-file",
            &g.plane.node_token(crate::dns::DIRECTOR_ID).display().to_string(),
            "--node-id",
            crate::dns::DIRECTOR_ID,
            "--region",
            &first_region,
            "--snapshot",
            &g.dir.join(format!("snapshots/{}", crate::dns::DIRECTOR_ID)).display().to_string(),
            "--listen",
            &crate::dns::DIRECTOR_DNS.to_string(),
            "--http",
            &crate::dns::DIRECTOR_HTTP.to_string(),
            "--report-token-file",
            &crate::dns::report_token_file(&g.dir).display().to_string(),
            "--workers",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        log: log("director"),
        name: "director".into(),
        role: Role::Director,
        ready: Readiness::Tcp(crate::dns::DIRECTOR_DNS),
        child: None,
        intent: Intent::Killed,
    });
    for (region, id, snapshot) in &g.checkers {
        let Some(r) = lab.region(region) else { continue };
        let args = [
            "checker",
            "--control",
            &format!("http://{}", crate::plane::ADDRESS),
            "--token-file",
            &g.plane.node_token(id).display().to_string(),
            "--node-id",
            id,
            "--region",
            region,
            "--snapshot",
            &snapshot.display().to_string(),
            "--director",
            &crate::dns::DIRECTOR_HTTP.to_string(),
            "--source-address",
            &crate::dns::checker_source(r).to_string(),
            "--report-token-file",
            &crate::dns::report_token_file(&g.dir).display().to_string(),
        ];
        procs.push(Proc {
            args: args.map(String::from).to_vec(),
            log: log(id),
            name: id.clone(),
            role: Role::Checker { region: region.clone() },
            ready: Readiness::Started,
            child: None,
            intent: Intent::Killed,
        });
    }
    procs
}

/// Starts the control plane and provisions it (node tokens, the global config), then every
/// other process.
async fn start_all(
    inner: &mut Inner,
    lab: &LabConfig,
    g: &Generated,
    exe: &std::path::Path,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    for r in &mut inner.relays {
        r.relay.open().await?;
    }
    let (plane, rest) = inner.procs.split_at_mut(1);
    let plane = &mut plane[0];
    plane.spawn(exe)?;
    plane.wait_ready().await?;
    let global = std::fs::read_to_string(&g.global)
        .map_err(|e| LabError::io(format!("reading {}", g.global.display()), e))?;
    let version = crate::plane::provision(lab, &g.plane, &global).await?;
    progress(&format!(
        "  ready: control plane on http://{} (pid {}), config version {version}",
        crate::plane::ADDRESS,
        plane.pid().unwrap_or(0)
    ));
    let count = rest.len();
    for p in rest.iter_mut() {
        p.spawn(exe)?;
    }
    progress(&format!("started {count} processes; waiting until each is ready"));
    for p in rest.iter_mut() {
        p.wait_ready().await?;
        let what = match &p.role {
            Role::ControlPlane => "control plane",
            Role::Director => "DNS director",
            Role::Checker { .. } => "health checker",
            Role::Gateway { .. } => "gateway",
            Role::Instance { .. } => "service instance",
        };
        progress(&format!("  ready: {what} {} (pid {})", p.name, p.pid().unwrap_or(0)));
    }
    Ok(())
}
