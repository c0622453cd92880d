//! The peer hop contract: gateways of different regions call each other over mutual TLS.
//!
//! A request failed over to region R goes to R's gateway tier (`regions[].peer_address`) on its
//! peer listener, authenticated both ways by the deployment CA (`peer.ca` in the bootstrap). It
//! carries a hop marker (the sending region), the service, the original client address, and as
//! every request the request id and traceparent. The receiver serves the service from its own
//! region only; when it cannot, it answers 503 with [`REGION_UNAVAILABLE`] so the sender tries
//! the next region. Hop headers arriving on the public listener are stripped: only an
//! authenticated peer may set them. A receiver never fails over again, so there are no loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::HeaderMap;
use http::header::HeaderName;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::upstream::pool::EndpointPool;

/// Hop marker: the region that sent this request on.
pub const HOP: HeaderName = HeaderName::from_static("x-meridian-hop");
/// The service the request is for.
pub const SERVICE: HeaderName = HeaderName::from_static("x-meridian-service");
/// The original client address, as the first gateway saw it.
pub const CLIENT: HeaderName = HeaderName::from_static("x-meridian-client");
/// On every proxied response: the region whose endpoint answered (set by the gateway of that
/// region, passed on by the gateway that failed over). Drills and operators read it.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-meridian-region");
/// On a 503 from a peer: the peer's region cannot serve the service; try the next one.
pub const REGION_UNAVAILABLE: HeaderName = HeaderName::from_static("x-meridian-region-unavailable");

/// Removes hop headers from a request that did not come from an authenticated peer.
#[inline]
pub fn strip_hop_headers(h: &mut HeaderMap) {
    // One pass over the names first: almost no request carries any of them.
    if !h.keys().any(|k| k.as_str().starts_with("x-meridian-")) {
        return;
    }
    for name in [&HOP, &SERVICE, &CLIENT, &REGION_UNAVAILABLE] {
        h.remove(name);
    }
}

/// Removes the "region unavailable" marker from an upstream's response. One pass over the
/// names first (a cheap prefix comparison each): almost no response carries it, and a lookup
/// by name would hash it on every response.
pub fn strip_region_unavailable(h: &mut HeaderMap) {
    if h.keys().any(|k| k.as_str().starts_with("x-meridian-")) {
        h.remove(&REGION_UNAVAILABLE);
    }
}

/// The name a region's peer listener certificate carries, e.g. `eu-west-1.peer.meridian`.
pub fn server_name(region: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(format!("{region}.peer.meridian")).ok()
}

/// TLS material of the peer hop, loaded from the bootstrap's `peer` section.
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: tokio_rustls::TlsConnector,
}

impl PeerTls {
    pub fn load(p: &meridian_model::PeerConfig) -> anyhow::Result<PeerTls> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&p.cert)
            .with_context(|| format!("peer.cert {}", p.cert.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("peer.cert {}", p.cert.display()))?;
        let key =
            PrivateKeyDer::from_pem_file(&p.key).with_context(|| format!("peer.key {}", p.key.display()))?;
        let mut roots = RootCertStore::empty();
        for ca in
            CertificateDer::pem_file_iter(&p.ca).with_context(|| format!("peer.ca {}", p.ca.display()))?
        {
            roots.add(ca.with_context(|| format!("peer.ca {}", p.ca.display()))?)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(crate::server::tls::provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .context("peer client verifier")?;
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("peer certificate and key")?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("peer client certificate")?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(PeerTls { server: Arc::new(server), client: tokio_rustls::TlsConnector::from(Arc::new(client)) })
    }
}

/// First back-off after a failure; doubles with each consecutive failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Exponential back-off of a failover target: skipped for 1 s, 2 s, 4 s … (capped) after
/// consecutive failures; the first success resets it. Lock-free.
pub struct Backoff {
    origin: Instant,
    /// Milliseconds after `origin` until which the target is skipped (0: never).
    until_ms: AtomicU64,
    failures: AtomicU64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { origin: Instant::now(), until_ms: AtomicU64::new(0), failures: AtomicU64::new(0) }
    }
}

impl Backoff {
    /// Records a failure; returns true when this starts a back-off (the first failure).
    pub fn fail(&self, now: Instant) -> bool {
        let prev = self.failures.fetch_add(1, Ordering::Relaxed);
        let n = prev.min(5) as u32;
        let wait = (BASE_BACKOFF * 2u32.pow(n)).min(MAX_BACKOFF);
        let until = (now + wait).saturating_duration_since(self.origin).as_millis() as u64;
        self.until_ms.store(until, Ordering::Relaxed);
        prev == 0
    }

    /// Records a success; returns true when this ends a back-off.
    #[inline]
    pub fn succeed(&self) -> bool {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.until_ms.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    #[inline]
    pub fn is_active(&self, now: Instant) -> bool {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        ms < self.until_ms.load(Ordering::Relaxed)
    }
}

/// Another region's gateway tier as a failover target. Its back-off covers failures to reach
/// it at all (connect, TLS, timeouts); "this service is unavailable there" is backed off per
/// service (see `ServiceRuntime::failover_backoff`).
pub struct PeerRegion {
    pub region: Arc<str>,
    pub pool: Arc<EndpointPool>,
    pub backoff: Backoff,
    /// Re-resolution of a peer address given as a hostname.
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl PeerRegion {
    pub fn new(region: Arc<str>, pool: Arc<EndpointPool>) -> Self {
        let refresh = crate::upstream::resolve::spawn_refresh(&pool, Duration::from_secs(30));
        PeerRegion { region, pool, refresh, backoff: Backoff::default() }
    }
}

impl Drop for PeerRegion {
    fn drop(&mut self) {
        if let Some(t) = &self.refresh {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::default();
        let t = Instant::now();
        assert!(!b.is_active(t));
        b.fail(t);
        assert!(b.is_active(t + Duration::from_millis(900)));
        assert!(!b.is_active(t + Duration::from_millis(1100)));
        b.fail(t);
        assert!(b.is_active(t + Duration::from_millis(1900)));
        for _ in 0..10 {
            b.fail(t);
        }
        assert!(b.is_active(t + Duration::from_secs(29)));
        assert!(!b.is_active(t + Duration::from_secs(31)));
        b.succeed();
        assert!(!b.is_active(t));
    }

    #[test]
    fn hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(HOP, "x".parse().unwrap());
        h.insert(SERVICE, "y".parse().unwrap());
        h.insert("x-other", "z".parse().unwrap());
        strip_hop_headers(&mut h);
        assert_eq!(h.len(), 1);
    }
}
