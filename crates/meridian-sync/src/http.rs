//! The little HTTP/1.1 client the node side needs: one connection per request, plain TCP to a
//! control instance's admin address (`http://host:port`), hyper's low-level client.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::SyncError;

/// A control instance's base URL, parsed once.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    authority: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, SyncError> {
        let bad = |why: &str| SyncError::BadUrl { url: url.to_string(), why: why.to_string() };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// is supported")),
            None => return Err(bad("missing http:// scheme")),
        }
        let auth = uri.authority().ok_or_else(|| bad("missing host:port"))?;
        let authority = match auth.port_u16() {
            Some(_) => auth.as_str().to_string(),
            None => format!("{}:80", auth.host()),
        };
        Ok(Target { url: url.trim_end_matches('/').to_string(), authority })
    }

    /// Sends `req` (its URI is the path) on a fresh connection; returns the response head with
    /// the body still streaming.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SyncError> {
        let err = |e: String| SyncError::Connect { url: self.url.clone(), error: e };
        let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| err(format!("connect timed out after {connect_timeout:?}")))?
            .map_err(|e| err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) =
            tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(TokioIo::new(tcp)))
                .await
                .map_err(|_| err("handshake timed out".into()))?
                .map_err(|e| err(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = http::HeaderValue::from_str(&self.authority).map_err(|e| err(e.to_string()))?;
        req.headers_mut().insert(http::header::HOST, host);
        sender.send_request(req).await.map_err(|e| err(e.to_string()))
    }
}
