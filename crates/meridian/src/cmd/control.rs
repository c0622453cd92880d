//! `meridian control -c control.yaml`: the control plane role (admin API, versioned store,
//! distribution to nodes). See docs/control-plane.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use meridian_control::{ControlConfig, Server};

#[derive(clap::Args)]
pub struct Args {
    /// The control instance's bootstrap (listen address, store: a redb file or etcd, deployment
    /// id, …).
    #[arg(short = 'c', long, default_value = "control.yaml")]
    config: PathBuf,
    /// Override `listen` from the file.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = ControlConfig::load(&a.config)?;
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    let rt = super::runtime(None)?;
    rt.block_on(async move {
        let store = cfg.store_description();
        let server = Server::start(&cfg, std::path::Path::new("."))
            .await
            .with_context(|| format!("control plane not started (store: {store})"))?;
        println!(
            "control plane of deployment {:?} listening on http://{} (store: {store})",
            cfg.deployment, server.addr
        );
        let stop = server.stopper();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
            // Node streams never end on their own: a second signal or the grace period cuts them.
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            std::process::exit(0);
        });
        server.wait().await?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
