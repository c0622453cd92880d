//! The delay relay in front of every service instance.
//!
//! The kernel here has no netem, so delay is added in user space: the endpoint in the global
//! config is the relay (127.0.N.(10+k):9000), and the demo process listens behind it on the
//! port plus 10000. The relay passes bytes both ways; with a delay set, every chunk the service sends
//! is held for the delay before it is passed on, so every response (usually one read) arrives
//! at least that much later. When the instance is killed the relay closes its listener and
//! every connection, so clients see connection refused, as with a real dead process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::LabError;

/// A running relay. Dropping it closes the listener and every connection.
pub struct Relay {
    pub listen: SocketAddr,
    pub backend: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    delayed_chunks: Arc<AtomicU64>,
    /// Bumped to close the listener and every connection of the current generation.
    stop: Option<watch::Sender<bool>>,
}

impl Relay {
    /// A relay that is not listening yet; see [`Relay::open`].
    pub fn new(listen: SocketAddr, backend: SocketAddr) -> Relay {
        Relay {
            listen,
            backend,
            delay_ms: Arc::new(AtomicU64::new(0)),
            delayed_chunks: Arc::new(AtomicU64::new(0)),
            stop: None,
        }
    }

    /// Starts listening (no-op when already listening).
    pub async fn open(&mut self) -> Result<(), LabError> {
        if self.stop.is_some() {
            return Ok(());
        }
        let listener = bind(self.listen).await?;
        let (tx, rx) = watch::channel(false);
        self.stop = Some(tx);
        let (backend, delay, counter) =
            (self.backend, Arc::clone(&self.delay_ms), Arc::clone(&self.delayed_chunks));
        tokio::spawn(accept_loop(listener, backend, delay, counter, rx));
        Ok(())
    }

    /// Stops listening and cuts every connection.
    pub fn close(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }

    pub fn is_open(&self) -> bool {
        self.stop.is_some()
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn delay_ms(&self) -> u64 {
        self.delay_ms.load(Ordering::Relaxed)
    }

    /// How many chunks were held back by a delay so far.
    pub fn delayed_chunks(&self) -> u64 {
        self.delayed_chunks.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.close();
    }
}

/// Binds with SO_REUSEADDR so a relay can reopen at once after a close.
async fn bind(addr: SocketAddr) -> Result<TcpListener, LabError> {
    let socket =
        tokio::net::TcpSocket::new_v4().map_err(|e| LabError::io(format!("relay socket {addr}"), e))?;
    let _ = socket.set_reuseaddr(true);
    socket.bind(addr).map_err(|e| LabError::io(format!("relay bind {addr}"), e))?;
    socket.listen(1024).map_err(|e| LabError::io(format!("relay listen {addr}"), e))
}

async fn accept_loop(
    listener: TcpListener,
    backend: SocketAddr,
    delay: Arc<AtomicU64>,
    counter: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let client = tokio::select! {
            r = listener.accept() => match r { Ok((c, _)) => c, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let (delay, counter, mut stop) = (Arc::clone(&delay), Arc::clone(&counter), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = pipe(client, backend, delay, counter) => {}
                _ = stop.changed() => {}
            }
        });
    }
}

async fn pipe(client: TcpStream, backend: SocketAddr, delay: Arc<AtomicU64>, counter: Arc<AtomicU64>) {
    // The backend refusing means the instance is down: the client's connection is closed.
    let Ok(server) = TcpStream::connect(backend).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let upstream = async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let ms = delay.load(Ordering::Relaxed);
            if ms > 0 {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
