//! TLS for gateway listeners: rustls with the aws-lc-rs provider, certificates chosen by SNI
//! from a [`CertStore`] that can be swapped at runtime without dropping connections.
//!
//! Handshakes in flight keep the certificate set they started with; a reload only affects
//! handshakes that begin after it (the set is read once per `resolve` through `ArcSwap`).

mod store;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use anyhow::bail;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

pub use store::CertStore;

/// ALPN protocols offered to clients, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Installs the aws-lc-rs `CryptoProvider` as the process default. Idempotent; call at startup.
///
/// Several providers can be compiled in (reqwest, tonic, etcd-client pull their own features),
/// and rustls then refuses to pick one implicitly, so the binary chooses once here.
pub fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // Err means another provider was installed first (e.g. by a test harness); keep it.
        let _ = aws_lc_rs::default_provider().install_default();
    });
}

/// The rustls `ServerConfig` for a listener.
///
/// - ALPN `h2`, `http/1.1`.
/// - `min_version` `"1.2"` (TLS 1.2 and 1.3) or `"1.3"` (TLS 1.3 only); anything else is an error.
/// - Suites: all TLS 1.3 suites; for TLS 1.2 only ECDHE key exchange with AES-GCM or
///   CHACHA20-POLY1305 (forward secrecy and AEAD only).
/// - Certificate chosen per handshake by SNI through `store`.
pub fn server_config(store: Arc<CertStore>, min_version: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let versions: &[&'static SupportedProtocolVersion] = match min_version.trim() {
        "1.2" => &[&TLS13, &TLS12],
        "1.3" => &[&TLS13],
        other => bail!("tls.min_version: unsupported TLS version {other:?} (expected \"1.2\" or \"1.3\")"),
    };
    let provider = Arc::new(provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// aws-lc-rs with the suite set named in [`server_config`]; also used to load private keys.
pub(crate) fn provider() -> CryptoProvider {
    CryptoProvider { cipher_suites: cipher_suites(), ..aws_lc_rs::default_provider() }
}

fn cipher_suites() -> Vec<SupportedCipherSuite> {
    use aws_lc_rs::cipher_suite as cs;
    vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}
