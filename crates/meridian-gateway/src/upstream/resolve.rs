//! Re-resolving hostname endpoints per DNS TTL, off the request path.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;

use super::pool::EndpointPool;

/// Shortest wait between two resolutions of one name, whatever the TTL says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Wait after a failed resolution before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

fn resolver() -> Option<&'static TokioResolver> {
    static R: OnceLock<Option<TokioResolver>> = OnceLock::new();
    R.get_or_init(|| match TokioResolver::builder_tokio() {
        Ok(b) => b.build().ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the system resolver config; hostname endpoints will not resolve");
            None
        }
    })
    .as_ref()
}

/// Resolves `host` once: the addresses (with `port`) and how long they are valid.
pub async fn resolve_once(host: &str, port: u16) -> Result<(Vec<SocketAddr>, Option<Instant>), String> {
    // /etc/hosts style names that the resolver may not have are tried by the system too.
    let r = resolver().ok_or("no resolver")?;
    match r.lookup_ip(host).await {
        Ok(l) => {
            let until = l.valid_until();
            let addrs: Vec<SocketAddr> = l.iter().map(|ip| SocketAddr::new(ip, port)).collect();
            if addrs.is_empty() { Err(format!("{host}: no addresses")) } else { Ok((addrs, Some(until))) }
        }
        Err(e) => Err(format!("{host}: {e}")),
    }
}

/// Keeps a hostname endpoint's addresses fresh until the pool is dropped. On failure the last
/// addresses are kept (a resolver outage degrades freshness, not availability).
pub fn spawn_refresh(
    pool: &Arc<EndpointPool>,
    fallback_interval: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    let host = pool.addr.hostname.clone()?;
    let port = pool.addr.port;
    let weak: Weak<EndpointPool> = Arc::downgrade(pool);
    Some(tokio::spawn(async move {
        loop {
            let wait = match resolve_once(&host, port).await {
                Ok((addrs, until)) => {
                    let Some(p) = weak.upgrade() else { return };
                    if *p.addr.addrs() != addrs {
                        tracing::info!(endpoint = %p.addr.configured, ?addrs, "endpoint resolved");
                    }
                    p.addr.set_addrs(addrs);
                    until
                        .map(|u| u.saturating_duration_since(Instant::now()))
                        .unwrap_or(fallback_interval)
                        .clamp(MIN_INTERVAL, fallback_interval.max(MIN_INTERVAL))
                }
                Err(e) => {
                    if weak.strong_count() == 0 {
                        return;
                    }
                    tracing::warn!(error = %e, "endpoint resolution failed; keeping the last addresses");
                    RETRY_AFTER_FAILURE
                }
            };
            tokio::time::sleep(wait).await;
            if weak.strong_count() == 0 {
                return;
            }
        }
    }))
}
