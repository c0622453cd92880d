//! One probe of the checker role (HTTP, HTTPS or TCP from a source address), and the report
//! push to a director. HTTPS probes do not verify the certificate (as Route 53's): a check
//! asks whether the region answers, not whether its certificate is trusted from here.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::checker::connect;

/// What to do once connected.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeKind {
    Tcp,
    Http { path: String, host: String, tls: bool },
}

/// Passes, or says why not.
pub(crate) async fn probe(addr: SocketAddr, source: Option<IpAddr>, kind: &ProbeKind) -> Result<(), String> {
    let stream = connect(addr, source).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    let (path, host, tls) = match kind {
        ProbeKind::Tcp => return Ok(()),
        ProbeKind::Http { path, host, tls } => (path, host, *tls),
    };
    let status = if tls {
        let name = rustls_pki_types::ServerName::try_from(host.split(':').next().unwrap_or(host).to_string())
            .unwrap_or_else(|_| rustls_pki_types::ServerName::IpAddress(addr.ip().into()));
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {addr}: {e}"))?;
        request(tls, Method::GET, path, host, None, Bytes::new()).await?
    } else {
        request(stream, Method::GET, path, host, None, Bytes::new()).await?
    };
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("status {status}")) }
}

/// `POST path` with a JSON body to a director, with `Authorization: Bearer` when a report
/// token is given; the answer's status.
pub(crate) async fn post_json(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    bearer: Option<&str>,
    body: Bytes,
) -> Result<u16, String> {
    let stream = connect(addr, source).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    request(stream, Method::POST, path, &addr.to_string(), bearer, body).await
}

async fn request<S>(
    stream: S,
    method: Method,
    path: &str,
    host: &str,
    bearer: Option<&str>,
    body: Bytes,
) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, "meridian-checker")
        .header(CONNECTION, "close");
    if !body.is_empty() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let mut conn = std::pin::pin!(conn);
    let mut response = std::pin::pin!(sender.send_request(req));
    let response = tokio::select! {
        r = &mut response => r,
        // With `Connection: close` the connection may end in the same poll that reads the
        // answer; the answer is then waiting.
        closed = &mut conn => {
            closed.map_err(|e| e.to_string())?;
            response.await
        }
    };
    Ok(response.map_err(|e| e.to_string())?.status().as_u16())
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS client: {e}"))?;
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Accepts any certificate, still checking the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_testkit::certs::TestCa;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A TLS server with a certificate no client trusts, answering `status` to one request
    /// per connection.
    async fn tls_server(status: u16) -> SocketAddr {
        let ca = TestCa::new("untrusted test CA");
        let leaf = ca.issue(&["gateway.test"]);
        let certs = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let answer =
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    fn https(path: &str) -> ProbeKind {
        ProbeKind::Http { path: path.into(), host: "gateway.test".into(), tls: true }
    }

    #[tokio::test]
    async fn https_probes_pass_without_trusting_the_certificate_and_read_the_status() {
        let ok = tls_server(200).await;
        assert_eq!(probe(ok, None, &https("/-/ready")).await, Ok(()));
        let draining = tls_server(503).await;
        assert_eq!(probe(draining, None, &https("/-/ready")).await, Err("status 503".into()));
        // From a chosen source address, as a checker in a region.
        assert_eq!(probe(ok, Some("127.0.20.9".parse().unwrap()), &https("/")).await, Ok(()));
    }

    #[tokio::test]
    async fn tcp_probes_pass_on_connect_and_fail_on_refusal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        assert_eq!(probe(open, None, &ProbeKind::Tcp).await, Ok(()));
        drop(listener);
        let e = probe(open, None, &ProbeKind::Tcp).await.unwrap_err();
        assert!(e.starts_with(&format!("connect to {open}")), "{e}");
    }
}
