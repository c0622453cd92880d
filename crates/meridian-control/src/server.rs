//! Starting a control instance: open the store, register the bootstrap admin token and the
//! expected nodes, bind, serve until shut down.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use meridian_core::clock::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::auth::token_hash;
use crate::bootstrap::{ControlConfig, StoreConfig};
use crate::control::{Control, ControlError};
use crate::store::{EtcdStore, RedbStore, Role, Store, StoreError, TokenKind, TokenRecord};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Opens the backend `store` names. An unreachable etcd fails here, naming its endpoints.
pub async fn open_store(cfg: &ControlConfig, base: &Path) -> Result<Arc<dyn Store>, StoreError> {
    let deployment = cfg.deployment.clone();
    match &cfg.store {
        StoreConfig::Redb(path) => {
            let path = base.join(path);
            let store = tokio::task::spawn_blocking(move || RedbStore::open(&path, &deployment))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))??;
            Ok(Arc::new(store))
        }
        StoreConfig::Etcd(e) => Ok(Arc::new(EtcdStore::connect(&e.options(&deployment), &deployment).await?)),
    }
}

/// A running control instance.
pub struct Server {
    pub addr: SocketAddr,
    pub control: Arc<Control>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the store of `cfg` (a redb path relative to `base`, or etcd) and starts serving.
    pub async fn start(cfg: &ControlConfig, base: &Path) -> Result<Server, StartError> {
        let store = open_store(cfg, base).await?;
        Server::start_with(cfg, store, Arc::new(SystemClock)).await
    }

    /// Starts on any store and clock.
    pub async fn start_with(
        cfg: &ControlConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, StartError> {
        if let Some(token) = cfg.admin_token()? {
            let record = TokenRecord {
                name: "bootstrap".into(),
                kind: TokenKind::Admin { role: Role::Admin },
                created_at_ms: crate::unix_ms(clock.wall()),
            };
            // A changed file replaces the old bootstrap token instead of adding a second one.
            store.delete_tokens("bootstrap".into()).await?;
            store.put_token(token_hash(&token), record).await?;
        }
        store.set_expected(cfg.expected_nodes.clone()).await?;
        let control = Arc::new(Control::new(store, clock, cfg.lease.get()).await?);
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| StartError::Listen { addr: cfg.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen { addr: cfg.listen, source })?;
        let (stop, mut stopped) = watch::channel(false);
        let app = crate::api::router(control.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, deployment = control.deployment(), "control plane listening");
        Ok(Server { addr, control, stop, task })
    }

    /// Stops accepting and waits for open requests. Node streams are long-lived, so they are
    /// cut after `grace`.
    pub async fn shutdown(self, grace: std::time::Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }

    /// Serves until the task ends (it ends only after [`Server::shutdown`] or an I/O error).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// A handle that stops the server when sent `true`.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}
