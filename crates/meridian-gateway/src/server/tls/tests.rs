use std::path::Path;
use std::sync::Arc;

use meridian_model::{Certificate, ListenerTls};
use meridian_testkit::certs::{Leaf, TestCa};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{CertStore, server_config};

fn cert_entry(paths: (std::path::PathBuf, std::path::PathBuf), names: &[&str]) -> Certificate {
    Certificate { cert: paths.0, key: paths.1, server_names: names.iter().map(|n| n.to_string()).collect() }
}

fn tls(certificates: Vec<Certificate>) -> ListenerTls {
    ListenerTls { certificates, min_version: "1.2".into() }
}

fn leaf_der(leaf: &Leaf) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()
}

fn picked(store: &CertStore, sni: Option<&str>) -> CertificateDer<'static> {
    store.pick(sni).cert[0].clone()
}

/// A default cert and an API cert (exact + wildcard SANs), written into `dir`.
fn two_certs(ca: &TestCa, dir: &Path) -> (Leaf, Leaf, ListenerTls) {
    let default = ca.issue(&["default.test"]);
    let api = ca.issue(&["api.test", "*.wild.test"]);
    let config = tls(vec![
        cert_entry(default.write_named(dir, "default"), &[]),
        cert_entry(api.write_named(dir, "api"), &[]),
    ]);
    (default, api, config)
}

#[test]
fn sni_picks_exact_then_wildcard_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let (default, api, config) = two_certs(&ca, dir.path());
    let store = CertStore::load(&config).unwrap();

    assert_eq!(picked(&store, Some("api.test")), leaf_der(&api));
    assert_eq!(picked(&store, Some("API.Test.")), leaf_der(&api), "case and trailing dot ignored");
    assert_eq!(picked(&store, Some("x.wild.test")), leaf_der(&api));
    assert_eq!(picked(&store, Some("a.b.wild.test")), leaf_der(&default), "wildcard covers one label");
    assert_eq!(picked(&store, Some("unknown.test")), leaf_der(&default));
    assert_eq!(picked(&store, None), leaf_der(&default));
}

#[test]
fn configured_server_names_replace_the_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let first = ca.issue(&["first.test"]);
    let second = ca.issue(&["second.test"]);
    let config = tls(vec![
        cert_entry(first.write_named(dir.path(), "first"), &[]),
        cert_entry(second.write_named(dir.path(), "second"), &["Other.Test", "*.zone.test"]),
    ]);
    let store = CertStore::load(&config).unwrap();
    assert_eq!(picked(&store, Some("other.test")), leaf_der(&second));
    assert_eq!(picked(&store, Some("a.zone.test")), leaf_der(&second));
    assert_eq!(picked(&store, Some("second.test")), leaf_der(&first), "SANs not used when names are set");
}

#[test]
fn reload_swaps_the_certificate_and_tracks_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let old = ca.issue(&["api.test"]);
    let config = tls(vec![cert_entry(old.write_to(dir.path()), &[])]);
    let store = CertStore::load(&config).unwrap();
    assert!(!store.files_changed());

    let new = ca.issue(&["api.test"]);
    new.write_to(dir.path());
    assert!(store.files_changed());
    assert_eq!(picked(&store, Some("api.test")), leaf_der(&old), "nothing changes before reload");

    store.reload().unwrap();
    assert!(!store.files_changed());
    assert_eq!(picked(&store, Some("api.test")), leaf_der(&new));
}

#[test]
fn broken_file_on_reload_keeps_the_current_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let leaf = ca.issue(&["api.test"]);
    let (_, key_path) = leaf.write_to(dir.path());
    let store = CertStore::load(&tls(vec![cert_entry(leaf.write_to(dir.path()), &[])])).unwrap();

    std::fs::write(&key_path, "not a key\n").unwrap();
    assert!(store.files_changed());
    let err = store.reload().unwrap_err().to_string();
    assert!(err.contains(&key_path.display().to_string()), "{err}");
    assert!(err.contains("no private key"), "{err}");
    assert_eq!(picked(&store, Some("api.test")), leaf_der(&leaf));
    assert!(!store.files_changed(), "a failed attempt is not retried until the files change again");

    // A key from another certificate: the mismatch is reported, the old set still serves.
    let other = ca.issue(&["api.test"]);
    std::fs::write(&key_path, &other.key_pem).unwrap();
    let err = store.reload().unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert_eq!(picked(&store, Some("api.test")), leaf_der(&leaf));
}

#[test]
fn load_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let leaf = ca.issue(&["api.test"]);
    let (cert, key) = leaf.write_to(dir.path());

    let missing = dir.path().join("missing.pem");
    let err = CertStore::load(&tls(vec![cert_entry((missing.clone(), key.clone()), &[])])).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("tls.certificates[0].cert") && err.contains("missing.pem"), "{err}");
    assert!(err.contains("cannot read"), "{err}");

    let err = CertStore::load(&tls(vec![cert_entry((key.clone(), key.clone()), &[])])).unwrap_err();
    assert!(err.to_string().contains("no CERTIFICATE"), "{err}");

    let err = CertStore::load(&tls(vec![cert_entry((cert.clone(), cert.clone()), &[])])).unwrap_err();
    assert!(err.to_string().contains("no private key"), "{err}");

    let err = CertStore::load(&tls(vec![cert_entry((cert, key), &["bad name!"])])).unwrap_err();
    assert!(err.to_string().contains("server_names"), "{err}");

    let err = CertStore::load(&tls(vec![])).unwrap_err();
    assert!(err.to_string().contains("at least one"), "{err}");
}

#[test]
fn min_version_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let (_, _, config) = two_certs(&ca, dir.path());
    let store = CertStore::load(&config).unwrap();
    let err = server_config(store.clone(), "1.1").unwrap_err();
    assert!(err.to_string().contains("min_version"), "{err}");
    let config = server_config(store, "1.3").unwrap();
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
}

fn client_config(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Serves one TLS connection: echoes what the client sends until it closes.
async fn serve_once(config: Arc<rustls::ServerConfig>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    if tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn handshake(
    addr: std::net::SocketAddr,
    client: rustls::ClientConfig,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await?;
    connector.connect(ServerName::try_from(sni.to_string()).unwrap(), tcp).await
}

#[tokio::test]
async fn real_handshake_selects_by_sni_negotiates_h2_and_sees_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let (default, api, config) = two_certs(&ca, dir.path());
    let store = CertStore::load(&config).unwrap();
    let addr = serve_once(server_config(store.clone(), "1.2").unwrap()).await;

    let mut stream = handshake(addr, client_config(&ca, rustls::ALL_VERSIONS), "x.wild.test").await.unwrap();
    {
        let (_, conn) = stream.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(conn.peer_certificates().unwrap()[0], leaf_der(&api));
    }
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    let tls12 =
        handshake(addr, client_config(&ca, &[&rustls::version::TLS12]), "default.test").await.unwrap();
    assert_eq!(tls12.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(tls12.get_ref().1.peer_certificates().unwrap()[0], leaf_der(&default));

    // Swap the default certificate on disk; the next handshake gets the new one.
    let renewed = ca.issue(&["default.test"]);
    renewed.write_named(dir.path(), "default");
    assert!(store.files_changed());
    store.reload().unwrap();
    let stream = handshake(addr, client_config(&ca, rustls::ALL_VERSIONS), "default.test").await.unwrap();
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], leaf_der(&renewed));
}

#[tokio::test]
async fn tls13_only_listener_refuses_tls12_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("tls-test-ca");
    let (_, _, config) = two_certs(&ca, dir.path());
    let store = CertStore::load(&config).unwrap();
    let addr = serve_once(server_config(store, "1.3").unwrap()).await;

    let refused = handshake(addr, client_config(&ca, &[&rustls::version::TLS12]), "api.test").await;
    assert!(refused.is_err());
    let ok = handshake(addr, client_config(&ca, rustls::ALL_VERSIONS), "api.test").await.unwrap();
    assert_eq!(ok.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
}
