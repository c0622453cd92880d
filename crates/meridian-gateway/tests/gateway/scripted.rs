//! A scripted raw-TCP upstream for the wire tests: it parses each request (head, then the body
//! by Content-Length or chunked), records it, and writes the exact response bytes its script
//! gives. Shared by `upstream_wire.rs` and `server_wire.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the scripted upstream parsed it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// Which accepted connection carried it (0 for the first).
    pub(crate) conn: usize,
    pub(crate) method: String,
    /// The request-target bytes, as sent.
    pub(crate) target: String,
    /// Header fields in order, names as sent.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, decoded when it came chunked.
    pub(crate) body: Vec<u8>,
    pub(crate) chunked: bool,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the upstream does after writing a reply.
pub(crate) enum After {
    /// Waits for the next request on the connection.
    KeepAlive,
    /// Closes the connection.
    Close,
    /// Holds the connection open, reading nothing more into requests, until the peer closes.
    Hang,
}

pub(crate) struct Reply {
    pub(crate) bytes: Vec<u8>,
    pub(crate) after: After,
    /// How long the upstream waits before writing the reply.
    pub(crate) delay: std::time::Duration,
}

impl Reply {
    pub(crate) fn keep(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply { bytes: bytes.into(), after: After::KeepAlive, delay: std::time::Duration::ZERO }
    }

    pub(crate) fn close(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply { bytes: bytes.into(), after: After::Close, delay: std::time::Duration::ZERO }
    }

    pub(crate) fn hang() -> Reply {
        Reply { bytes: Vec::new(), after: After::Hang, delay: std::time::Duration::ZERO }
    }

    /// This reply, written after `delay`.
    pub(crate) fn after(mut self, delay: std::time::Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// `200 OK` with a Content-Length body, keep-alive.
pub(crate) fn ok(body: &str) -> Reply {
    Reply::keep(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()))
}

pub(crate) type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A raw-TCP upstream answering from a script.
pub(crate) struct Scripted {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub(crate) async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (a, c, s) = (Arc::clone(&accepted), Arc::clone(&closed), Arc::clone(&seen));
        tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                let conn = a.fetch_add(1, Ordering::SeqCst);
                let (script, seen, closed) = (Arc::clone(&script), Arc::clone(&s), Arc::clone(&c));
                tokio::spawn(async move {
                    serve(stream, conn, &*script, &seen).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted { addr, accepted, closed, seen }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests seen with this method and request-target.
    pub(crate) fn count(&self, method: &str, target: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|r| r.method == method && r.target == target).count()
    }

    /// The only request seen with this method and target.
    pub(crate) fn one(&self, method: &str, target: &str) -> Seen {
        let all: Vec<Seen> =
            self.seen().into_iter().filter(|r| r.method == method && r.target == target).collect();
        assert_eq!(all.len(), 1, "{method} {target} seen once: {all:#?}");
        all.into_iter().next().unwrap()
    }
}

pub(crate) async fn serve(mut s: TcpStream, conn: usize, script: &Script, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut s, &mut buf, conn).await {
        let reply = script(&req);
        seen.lock().unwrap().push(req);
        if !reply.delay.is_zero() {
            tokio::time::sleep(reply.delay).await;
        }
        if s.write_all(&reply.bytes).await.is_err() {
            return;
        }
        match reply.after {
            After::KeepAlive => {}
            After::Close => {
                let _ = s.shutdown().await;
                return;
            }
            After::Hang => {
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                return;
            }
        }
    }
}

/// Reads more bytes into `buf`; false at end of stream or on error.
pub(crate) async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads into `buf` until `done(buf)`; false when the stream ends (or fails) first.
pub(crate) async fn fill_until(s: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) -> bool {
    while !done(buf) {
        if !fill(s, buf).await {
            return false;
        }
    }
    true
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(crate) async fn read_line(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(p) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..p]).into_owned();
            buf.drain(..p + 2);
            return Some(line);
        }
        if !fill(s, buf).await {
            return None;
        }
    }
}

pub(crate) async fn read_exact_into(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !fill(s, buf).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

/// A request: head up to the blank line, then the body by chunked or Content-Length.
pub(crate) async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>, conn: usize) -> Option<Seen> {
    let end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p;
        }
        if !fill(s, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let mut rl = lines.next()?.splitn(3, ' ');
    let (method, target) = (rl.next()?.to_string(), rl.next()?.to_string());
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect();
    let mut req = Seen { conn, method, target, headers, body: Vec::new(), chunked: false };
    req.chunked = req.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if req.chunked {
        loop {
            let line = read_line(s, buf).await?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailer fields up to the blank line.
                while !read_line(s, buf).await?.is_empty() {}
                break;
            }
            let data = read_exact_into(s, buf, size + 2).await?;
            assert_eq!(&data[size..], b"\r\n", "chunk data ends with CRLF");
            req.body.extend_from_slice(&data[..size]);
        }
    } else if let Some(n) = req.header("content-length") {
        let n: usize = n.parse().ok()?;
        req.body = read_exact_into(s, buf, n).await?;
    }
    Some(req)
}

/// `n` bytes of a repeating, position-dependent pattern.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
}

/// Chunked encoding of `body` in chunks of `size`.
pub(crate) fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
