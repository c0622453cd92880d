//! Listener workers: one thread per worker, each with its own current-thread runtime.
//!
//! `--workers N` runs the listeners on N event loops, like nginx's worker processes: the
//! runtime that `start` is called on is worker 0 (it also runs the admin endpoints, the config
//! reloader and health checks) and N − 1 more threads each accept from the same listening
//! sockets (a duplicated descriptor each, registered with their own epoll) and serve what they
//! accept to the end. A connection never moves between threads, so no work-stealing queues,
//! no cross-thread wake-ups, and pooled upstream connections are handed out only to requests
//! on the thread that opened them (their sockets are registered with that thread's reactor).
//!
//! `SO_REUSEPORT` is not used: with it another process could bind the same port and silently
//! take a share of the traffic; one shared socket keeps "address in use" an error.

use std::cell::Cell;
use std::net::TcpListener as StdListener;
use std::os::fd::AsFd;

use meridian_core::Shutdown;
use meridian_model::ListenerLimits;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::Proxy;
use crate::server::listener::{self, Listener, ListenerKind};

thread_local! {
    static WORKER: Cell<u32> = const { Cell::new(0) };
}

/// The worker this thread is (0 for the runtime the gateway was started on).
pub fn id() -> u32 {
    WORKER.with(Cell::get)
}

/// What a worker needs to serve one listener: a duplicate of its socket and its settings.
pub(crate) struct ListenerSpec {
    name: String,
    kind: ListenerKind,
    tcp: StdListener,
    tls: Option<TlsAcceptor>,
    limits: ListenerLimits,
}

impl ListenerSpec {
    /// A duplicate of `l`'s listening socket (the same socket: connections go to whichever
    /// worker accepts first).
    pub(crate) fn of(l: &Listener) -> std::io::Result<ListenerSpec> {
        let fd = l.tcp.as_fd().try_clone_to_owned()?;
        Ok(ListenerSpec {
            name: l.name.clone(),
            kind: l.kind,
            tcp: StdListener::from(fd),
            tls: l.tls.clone(),
            limits: l.limits.clone(),
        })
    }
}

/// Starts worker `id` on its own thread: it serves `listeners` until `shutdown` stops them and
/// every connection tracked by `tracker` has finished, or until `abandon` is cancelled (the
/// grace period ran out; its connections are dropped with its runtime).
pub(crate) fn spawn(
    id: u32,
    listeners: Vec<ListenerSpec>,
    proxy: Proxy,
    shutdown: Shutdown,
    tracker: TaskTracker,
    abandon: CancellationToken,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name(format!("meridian-wrk-{id}")).spawn(move || {
        WORKER.with(|w| w.set(id));
        rt.block_on(async move {
            for spec in listeners {
                let tcp = match spec.tcp.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(spec.tcp)) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(worker = id, listener = %spec.name, error = %e, "worker cannot use the listener");
                        continue;
                    }
                };
                let l = Listener { name: spec.name, kind: spec.kind, tcp, tls: spec.tls, limits: spec.limits };
                tokio::spawn(listener::serve(l, proxy.clone(), shutdown.clone(), tracker.clone()));
            }
            tokio::select! {
                () = async {
                    shutdown.stopping().await;
                    tracker.wait().await;
                } => {}
                () = abandon.cancelled() => {}
            }
        });
    })?;
    Ok(())
}
