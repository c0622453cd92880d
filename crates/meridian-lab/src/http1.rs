//! A minimal HTTP/1.1 client on one fresh connection, with a deadline and an optional source
//! address: what readiness checks, the `meridian lab` commands and `meridian lab curl` need.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::LabError;

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: http::Method,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Bind the client socket to this address first (port chosen by the kernel).
    pub source: Option<IpAddr>,
    /// The `Host` header; default: `addr`.
    pub host: Option<&'a str>,
    /// Path and query.
    pub path: &'a str,
    pub body: Option<Vec<u8>>,
    /// Extra request headers (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// The whole exchange (connect, request, response body) must end within this.
    pub timeout: Duration,
}

impl<'a> Request<'a> {
    pub fn get(addr: SocketAddr, path: &'a str, timeout: Duration) -> Self {
        Request {
            method: http::Method::GET,
            addr,
            source: None,
            host: None,
            path,
            body: None,
            headers: Vec::new(),
            timeout,
        }
    }

    pub fn post_json(addr: SocketAddr, path: &'a str, body: &serde_json::Value, timeout: Duration) -> Self {
        Request {
            method: http::Method::POST,
            body: Some(body.to_string().into_bytes()),
            ..Self::get(addr, path, timeout)
        }
    }

    /// A request with a text body (YAML, plain text) instead of JSON.
    pub fn with_text(mut self, method: http::Method, body: &str) -> Self {
        self.method = method;
        self.body = Some(body.as_bytes().to_vec());
        self.headers.push(("content-type", "text/plain".into()));
        self
    }

    /// Adds `authorization: Bearer TOKEN`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.headers.push(("authorization", format!("Bearer {token}")));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sends the request; errors name what failed (connect refused, timeout, ...).
    pub async fn send(self) -> Result<Response, LabError> {
        let timeout = self.timeout;
        let addr = self.addr;
        tokio::time::timeout(timeout, self.exchange())
            .await
            .map_err(|_| LabError::Control(format!("no answer from {addr} within {timeout:?} (timed out)")))?
    }

    async fn exchange(self) -> Result<Response, LabError> {
        let addr = self.addr;
        let err = |what: &str, e: &dyn std::fmt::Display| LabError::Control(format!("{what} {addr}: {e}"));
        let socket =
            if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                .map_err(|e| err("socket for", &e))?;
        if let Some(src) = self.source {
            socket.bind(SocketAddr::new(src, 0)).map_err(|e| err(&format!("binding {src} to reach"), &e))?;
        }
        let tcp = socket.connect(addr).await.map_err(|e| err("connecting to", &e))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| err("handshake with", &e))?;
        tokio::spawn(conn);
        let host = self.host.map(str::to_string).unwrap_or_else(|| addr.to_string());
        let mut builder =
            http::Request::builder().method(self.method).uri(self.path).header(http::header::HOST, host);
        if self.body.is_some() && !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &self.headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(self.body.unwrap_or_default())))
            .map_err(|e| err("building a request for", &e))?;
        let response = sender.send_request(request).await.map_err(|e| err("request to", &e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| err("reading the body from", &e))?.to_bytes();
        Ok(Response { status: parts.status, headers: parts.headers, body })
    }
}
