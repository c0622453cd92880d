//! One probe of the checker role (HTTP, HTTPS or TCP from a source address), and the report
//! push to a director. HTTPS probes do not verify the certificate (as Route 53's): a check
//! asks whether the region answers, not whether its certificate is trusted from here.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::checker::connect;

/// What to do once connected.
#[derive(Debug, Clone)]
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
        request(tls, Method::GET, path, host, Bytes::new()).await?
    } else {
        request(stream, Method::GET, path, host, Bytes::new()).await?
    };
    if (200..400).contains(&status) { Ok(()) } else { Err(format!("status {status}")) }
}

/// `POST path` with a JSON body to a director; the answer's status.
pub(crate) async fn post_json(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    body: Bytes,
) -> Result<u16, String> {
    let stream = connect(addr, source).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    request(stream, Method::POST, path, &addr.to_string(), body).await
}

async fn request<S>(stream: S, method: Method, path: &str, host: &str, body: Bytes) -> Result<u16, String>
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
