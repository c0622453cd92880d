//! Wire-level behaviour of the gateway toward its clients (the HTTP/1.1 server loop in
//! `server/h1.rs`, and hyper behind it for what that loop hands over): keep-alive, pipelining,
//! `Connection` handling for HTTP/1.1 and HTTP/1.0, response framing (length, chunked,
//! close-delimited, HEAD), request bodies (inline, large, chunked, `Expect`), malformed and
//! oversized heads, upgrades and h2c on a connection, timeouts, shutdown and truncated bodies.
//!
//! Every client here is raw TCP: it writes exact bytes and parses the exact response bytes, so
//! a framing mistake (a stray body byte, a missing terminator, a length that lies) shows up as
//! a parse failure of the next response on the connection.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use meridian_testkit::TestUpstream;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::scripted::*;

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The raw client and its response reader.

/// One response as the client parsed it off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    /// The head as received (status line and fields), for messages.
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body came with chunked framing (and was decoded).
    chunked: bool,
    /// The body was delimited by the connection's end.
    until_close: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).count()
    }

    /// Whether a comma-separated field `name` carries `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

enum Fill {
    Data,
    Eof,
    Timeout,
}

/// A raw TCP client: exact bytes out, responses parsed from a buffer of what came in.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.s.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Reads more into the buffer, waiting at most `wait`. A reset counts as the end.
    async fn fill_within(&mut self, wait: Duration) -> Fill {
        // Read straight into the heap buffer: a large array in these futures overflows the
        // test thread's stack in debug builds.
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(wait, self.s.read_buf(&mut self.buf)).await {
            Err(_) => Fill::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => Fill::Eof,
            Ok(Ok(_)) => Fill::Data,
        }
    }

    /// Reads more; false at the end of the stream. Panics when nothing comes within [`WAIT`].
    async fn fill(&mut self) -> bool {
        match self.fill_within(WAIT).await {
            Fill::Data => true,
            Fill::Eof => false,
            Fill::Timeout => panic!(
                "nothing from the gateway within {WAIT:?}; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return line;
            }
            assert!(
                self.fill().await,
                "EOF inside a line; buffered: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "EOF after {} of {n} body bytes: {:?}",
                self.buf.len(),
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            );
        }
        self.buf.drain(..n).collect()
    }

    /// Reads a response head; `None` on EOF before a complete head (with nothing buffered).
    async fn head(&mut self) -> Option<(u16, String, Vec<(String, String)>)> {
        let end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p;
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "EOF inside a response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap();
        assert!(version == "HTTP/1.1" || version == "HTTP/1.0", "status line {status_line:?}");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("header line {l:?} in {head:?}"));
                (k.to_string(), v.trim().to_string())
            })
            .collect();
        Some((status, head, headers))
    }

    /// Reads one whole response to a request (`to_head`: the request was HEAD), framing its body
    /// by the rules of RFC 9112 §6.3. Panics on EOF or a framing error.
    async fn response(&mut self, to_head: bool) -> Resp {
        let (status, head, headers) = self.head().await.expect("EOF before a response");
        let mut r = Resp { status, head, headers, body: Vec::new(), chunked: false, until_close: false };
        if to_head || (100..200).contains(&status) || status == 204 || status == 304 {
            return r;
        }
        if let Some(te) = r.header("transfer-encoding") {
            assert!(te.eq_ignore_ascii_case("chunked"), "unexpected transfer-encoding in {}", r.head);
            assert!(r.header("content-length").is_none(), "both framings in {}", r.head);
            r.chunked = true;
            loop {
                let line = self.line().await;
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("chunk size line {line:?} after {} body bytes", r.body.len()));
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                let data = self.exact(size + 2).await;
                assert_eq!(&data[size..], b"\r\n", "chunk data ends with CRLF");
                r.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(n) = r.header("content-length") {
            assert_eq!(r.count("content-length"), 1, "one content-length in {}", r.head);
            let n: usize = n.parse().unwrap_or_else(|_| panic!("content-length in {}", r.head));
            r.body = self.exact(n).await;
        } else {
            r.until_close = true;
            while self.fill().await {}
            r.body = std::mem::take(&mut self.buf);
        }
        r
    }

    /// Whether the gateway closes the connection within `wait`, with no more bytes sent.
    async fn closes_within(&mut self, wait: Duration) -> bool {
        let end = tokio::time::Instant::now() + wait;
        loop {
            match self.fill_within(end.saturating_duration_since(tokio::time::Instant::now())).await {
                Fill::Eof => break,
                Fill::Timeout => return false,
                Fill::Data => {}
            }
        }
        assert!(self.buf.is_empty(), "bytes before the close: {:?}", String::from_utf8_lossy(&self.buf));
        true
    }

    /// The connection is still open: no byte and no EOF for a moment.
    async fn assert_open(&mut self) {
        match self.fill_within(Duration::from_millis(200)).await {
            Fill::Timeout => {}
            Fill::Eof => panic!("the gateway closed the connection"),
            Fill::Data => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// The stream, with nothing left unread.
    fn into_stream(self) -> TcpStream {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", String::from_utf8_lossy(&self.buf));
        self.s
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
}

/// The default script: `GET /x` → `200` with body `GET /x`; `HEAD` → a head announcing
/// `content-length: 1234` (no body); `/chunked` → a chunked body ([`CHUNKED_BODY`]).
fn default_script(r: &Seen) -> Reply {
    match (r.method.as_str(), r.target.as_str()) {
        ("HEAD", _) => Reply::keep("HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nx-head: yes\r\n\r\n"),
        (_, "/chunked") => {
            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            out.extend_from_slice(&chunked(CHUNKED_BODY, 5));
            Reply::keep(out)
        }
        (_, "/trailers") => Reply::keep(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n",
        ),
        _ => ok(&format!("{} {} {}", r.method, r.target, r.body.len())),
    }
}

const CHUNKED_BODY: &[u8] = b"hello, chunked world of the gateway";

async fn scripted_gateway() -> (Scripted, Gw) {
    let up = Scripted::start(default_script).await;
    let gw = Gw::start(&global(&[up.addr], "", CATCH_ALL)).await;
    (up, gw)
}

/// A plain GET on `c` gets the default script's answer.
async fn assert_get_works(c: &mut Client, path: &str) {
    c.send(get(path)).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), format!("GET {path} 0"));
}

// ---------------------------------------------------------------------------------------------
// The cases.

#[tokio::test]
async fn keep_alive_serves_sequential_requests_in_order_on_one_connection() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    for i in 0..5 {
        let path = format!("/k{i}");
        c.send(get(&path)).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        let want = format!("GET {path} 0");
        assert_eq!(r.text(), want);
        assert_eq!(r.header("content-length"), Some(want.len().to_string().as_str()), "{}", r.head);
        assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")), "a date: {}", r.head);
        assert!(!r.has_token("connection", "close"), "{}", r.head);
    }
    c.assert_open().await;
    let targets: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/k0", "/k1", "/k2", "/k3", "/k4"]);
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    c.send(format!("{}{}{}", get("/p1"), get("/p2"), get("/p3"))).await;
    for i in 1..=3 {
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.text(), format!("GET /p{i} 0"));
    }
    c.assert_open().await;
    assert_get_works(&mut c, "/p4").await;
    assert_eq!(up.seen().len(), 4);
}

#[tokio::test]
async fn connection_close_from_an_http11_client_closes_after_the_response() {
    let (_up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    assert_get_works(&mut c, "/first").await;
    c.send("GET /last HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "GET /last 0");
    assert!(r.has_token("connection", "close"), "{}", r.head);
    assert!(c.closes_within(WAIT).await, "the gateway closes after `Connection: close`");
}

#[tokio::test]
async fn http10_clients_close_by_default_and_keep_alive_when_asked() {
    let (up, gw) = scripted_gateway().await;

    let mut c = Client::connect(gw.addr()).await;
    c.send("GET /old HTTP/1.0\r\nHost: gw.test\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "GET /old 0");
    assert!(!r.has_token("connection", "keep-alive"), "{}", r.head);
    assert!(c.closes_within(WAIT).await, "an HTTP/1.0 connection closes after its response");

    let mut c = Client::connect(gw.addr()).await;
    for path in ["/ka1", "/ka2"] {
        c.send(format!("GET {path} HTTP/1.0\r\nHost: gw.test\r\nConnection: keep-alive\r\n\r\n")).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.text(), format!("GET {path} 0"));
        assert!(r.has_token("connection", "keep-alive"), "{}", r.head);
        assert!(r.header("content-length").is_some(), "{}", r.head);
    }
    // Without the token again: the last response, then the close.
    c.send("GET /ka3 HTTP/1.0\r\nHost: gw.test\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.text(), "GET /ka3 0");
    assert!(c.closes_within(WAIT).await);
    assert_eq!(up.seen().len(), 4);
}

#[tokio::test]
async fn head_responses_carry_the_upstream_length_and_no_body() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    c.send("HEAD /h HTTP/1.1\r\nHost: gw.test\r\n\r\n").await;
    let r = c.response(true).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some("1234"), "{}", r.head);
    assert_eq!(r.header("x-head"), Some("yes"));
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    // Any body byte sent for the HEAD would be read as the start of the next response.
    assert_get_works(&mut c, "/after-head").await;

    // The same, pipelined in one write.
    c.send(format!("HEAD /h2 HTTP/1.1\r\nHost: gw.test\r\n\r\n{}", get("/after-head-2"))).await;
    let r = c.response(true).await;
    assert_eq!((r.status, r.header("content-length")), (200, Some("1234")), "{}", r.head);
    let r = c.response(false).await;
    assert_eq!(r.text(), "GET /after-head-2 0");
    c.assert_open().await;
    assert_eq!(up.one("HEAD", "/h").body.len(), 0);
}

#[tokio::test]
async fn a_chunked_upstream_body_is_chunked_to_http11_and_close_delimited_to_http10() {
    let (_up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    c.send(get("/chunked")).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.chunked, "chunked framing to an HTTP/1.1 client: {}", r.head);
    assert_eq!(r.body, CHUNKED_BODY);
    assert_get_works(&mut c, "/after-chunked").await;
    c.assert_open().await;

    let mut c = Client::connect(gw.addr()).await;
    c.send("GET /chunked HTTP/1.0\r\nHost: gw.test\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        !r.chunked && r.header("transfer-encoding").is_none(),
        "no chunked framing for HTTP/1.0: {}",
        r.head
    );
    assert!(r.until_close, "delimited by the close: {}", r.head);
    assert_eq!(r.body, CHUNKED_BODY);

    // Even when an HTTP/1.0 client asks for keep-alive: the body's end is the connection's.
    let mut c = Client::connect(gw.addr()).await;
    c.send("GET /chunked HTTP/1.0\r\nHost: gw.test\r\nConnection: keep-alive\r\n\r\n").await;
    let r = c.response(false).await;
    assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
    assert!(!r.has_token("connection", "keep-alive") || r.header("content-length").is_some(), "{}", r.head);
    assert_eq!(r.body, CHUNKED_BODY);
}

#[tokio::test]
async fn content_length_request_bodies_arrive_exactly_inline_and_through_hyper() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    for (path, n) in [("/small", 1024usize), ("/big", 100 * 1024)] {
        let body = pattern(n);
        let mut req =
            format!("POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        req.extend_from_slice(&body);
        c.send(req).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.text(), format!("POST {path} {n}"));
        let seen = up.one("POST", path);
        assert_eq!(seen.body.len(), n);
        assert!(seen.body == body, "{path}: the upstream got other bytes");
        assert_get_works(&mut c, &format!("{path}/after")).await;
    }
    c.assert_open().await;

    // An inline body pipelined with the next request: the body ends where its length says.
    let mut c = Client::connect(gw.addr()).await;
    let body = pattern(1024);
    let mut req = b"POST /piped HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1024\r\n\r\n".to_vec();
    req.extend_from_slice(&body);
    req.extend_from_slice(get("/after-piped").as_bytes());
    c.send(req).await;
    assert_eq!(c.response(false).await.text(), "POST /piped 1024");
    assert_eq!(c.response(false).await.text(), "GET /after-piped 0");
    assert!(up.one("POST", "/piped").body == body, "the upstream got other bytes");
}

#[tokio::test]
async fn a_request_trickled_byte_by_byte_is_served() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    let req = b"POST /slow HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello";
    for b in req.chunks(1) {
        c.send(b).await;
        tokio::task::yield_now().await;
    }
    let r = c.response(false).await;
    assert_eq!(r.text(), "POST /slow 5");
    assert_eq!(up.one("POST", "/slow").body, b"hello");
    assert_get_works(&mut c, "/after-slow").await;
}

#[tokio::test]
async fn chunked_request_bodies_arrive_decoded() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    let body = pattern(3000);
    let mut req = b"POST /te HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(&chunked(&body, 700));
    c.send(req).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "POST /te 3000");
    assert!(up.one("POST", "/te").body == body, "the upstream got other bytes");
    assert_get_works(&mut c, "/after-te").await;

    // Pipelined behind a request the gateway serves itself, and followed by another: the
    // bytes read before the hand-over reach hyper in order.
    let mut c = Client::connect(gw.addr()).await;
    let mut req = get("/before-te").into_bytes();
    req.extend_from_slice(b"POST /te2 HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    req.extend_from_slice(&chunked(&body, 1000));
    req.extend_from_slice(get("/after-te2").as_bytes());
    c.send(req).await;
    assert_eq!(c.response(false).await.text(), "GET /before-te 0");
    assert_eq!(c.response(false).await.text(), "POST /te2 3000");
    assert_eq!(c.response(false).await.text(), "GET /after-te2 0");
    assert!(up.one("POST", "/te2").body == body, "the upstream got other bytes");
    c.assert_open().await;
}

#[tokio::test]
async fn expect_100_continue_gets_the_body_to_the_upstream() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    c.send("POST /expect HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        .await;
    // As curl does: wait a while for `100 Continue`, then send the body anyway.
    let mut got_continue = false;
    let mut early_final = None;
    if let Fill::Data = c.fill_within(Duration::from_secs(3)).await {
        let r = c.response(false).await;
        if r.status == 100 {
            got_continue = true;
        } else {
            early_final = Some(r);
        }
    }
    assert!(early_final.is_none(), "a final response before the body was sent: {early_final:?}");
    c.send("hello world").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{} (100 Continue seen: {got_continue})", r.head);
    assert_eq!(r.text(), "POST /expect 11");
    assert_eq!(up.one("POST", "/expect").body, b"hello world");
    assert_get_works(&mut c, "/after-expect").await;
}

#[tokio::test]
async fn malformed_request_lines_get_400_and_never_reach_the_upstream() {
    let (up, gw) = scripted_gateway().await;
    for bad in ["GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", "G@T / HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let (resp, closed) = raw(gw.addr(), bad.as_bytes(), WAIT).await;
        assert!(resp.starts_with("HTTP/1.1 400 "), "{bad:?} → {resp:?}");
        assert!(closed, "{bad:?}: the connection is closed after a 400");
    }
    // Mid-connection, after a request served by the gateway's own loop.
    let mut c = Client::connect(gw.addr()).await;
    assert_get_works(&mut c, "/before-bad").await;
    c.send("G@T / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(c.closes_within(WAIT).await);
    let targets: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/before-bad"], "only the good request reached the upstream");
}

#[tokio::test]
async fn too_many_headers_after_a_served_request_get_431_on_the_same_connection() {
    let (up, gw) = scripted_gateway().await;
    let mut c = Client::connect(gw.addr()).await;
    assert_get_works(&mut c, "/before-431").await;
    // Host and 100 more: 101 fields, one over the default limit.
    let mut req = String::from("GET /too-many HTTP/1.1\r\nHost: gw.test\r\n");
    for i in 0..100 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    c.send(req).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 431, "{}", r.head);
    let targets: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/before-431"]);
}

#[tokio::test]
async fn a_websocket_upgrade_works_after_plain_requests_on_the_connection() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let mut c = Client::connect(gw.addr()).await;
    for i in 0..2 {
        c.send(get(&format!("/plain{i}"))).await;
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{}", r.head);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["path"], format!("/plain{i}"));
    }
    let stream = c.into_stream();
    let (mut ws, resp) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(format!("ws://{}/ws", gw.addr()), stream))
            .await
            .expect("handshake in time")
            .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(tokio_tungstenite::tungstenite::Message::text(format!("hello {i}"))).await.unwrap();
        let m = tokio::time::timeout(WAIT, ws.next()).await.expect("echo in time").unwrap().unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.close(None).await.unwrap();
    assert_eq!(up.requests_to("/plain0") + up.requests_to("/plain1"), 2);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_on_a_fresh_connection() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let tcp = TcpStream::connect(gw.addr()).await.unwrap();
    let (h2, conn) = tokio::time::timeout(WAIT, h2::client::handshake(tcp)).await.unwrap().unwrap();
    tokio::spawn(conn);
    let mut h2 = tokio::time::timeout(WAIT, h2.ready()).await.unwrap().unwrap();
    for i in 0..2 {
        let path = format!("/h2c{i}");
        let req = http::Request::get(gw.url(&path)).body(()).unwrap();
        let (resp, _) = h2.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(d) = tokio::time::timeout(WAIT, body.data()).await.unwrap() {
            let d = d.unwrap();
            let _ = body.flow_control().release_capacity(d.len());
            bytes.extend_from_slice(&d);
        }
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["path"], path);
        h2 = tokio::time::timeout(WAIT, h2.ready()).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_by_the_header_read_timeout() {
    let (up, gw) = {
        let up = Scripted::start(default_script).await;
        let gw = Gw::start_with(
            &global(&[up.addr], "", CATCH_ALL),
            "    limits:\n      header_read_timeout: 300ms\n",
            "",
        )
        .await;
        (up, gw)
    };
    let mut c = Client::connect(gw.addr()).await;
    c.send("GET / HTTP/1.1\r\nHost: x\r\n").await;
    assert!(c.closes_within(Duration::from_secs(5)).await, "the half head's connection was not closed");
    // The same after a request served on the connection.
    let mut c = Client::connect(gw.addr()).await;
    assert_get_works(&mut c, "/served").await;
    c.send("GET /never HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        c.closes_within(Duration::from_secs(5)).await,
        "the second half head's connection was not closed"
    );
    let targets: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/served"]);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let up = Scripted::start(default_script).await;
    let gw = Gw::start_with(
        &global(&[up.addr], "", CATCH_ALL),
        "    limits:\n      idle_timeout: 300ms\n      header_read_timeout: 10s\n",
        "",
    )
    .await;
    // Served by the gateway's own loop.
    let mut own = Client::connect(gw.addr()).await;
    assert_get_works(&mut own, "/idle").await;
    // Served by hyper (a chunked request body hands the connection over).
    let mut handed = Client::connect(gw.addr()).await;
    let mut req = b"POST /te HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(&chunked(b"abc", 2));
    handed.send(req).await;
    let r = handed.response(false).await;
    assert_eq!(r.text(), "POST /te 3");
    assert!(own.closes_within(Duration::from_secs(5)).await, "own loop: idle connection not closed");
    assert!(handed.closes_within(Duration::from_secs(5)).await, "hyper: idle connection not closed");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_cut_off() {
    // 64 MiB from the endpoint; the client asks for it and then takes nothing. Once the socket
    // buffers are full, the gateway's writes make no progress; after the idle timeout it gives
    // the connection up instead of holding it (nginx's send_timeout).
    const BIG: usize = 64 << 20;
    let (_up, gw) = big_response_gateway(BIG).await;
    let (got, head) = stall_then_drain(gw.addr(), b"GET /big HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .expect("the connection stayed open");
    // What the kernels still hold arrives, then the end: far less than the body.
    assert!(head.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&head[..head.len().min(200)]));
    assert!(got < BIG, "the whole body arrived ({got} bytes): the stalled client was not cut off");
}

/// A gateway whose endpoint answers every request with `BIG` bytes, and whose idle timeout
/// (also the limit on a client that takes no response bytes) is one second.
async fn big_response_gateway(big: usize) -> (Scripted, Gw) {
    let up = Scripted::start(move |_| {
        let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {big}\r\n\r\n").into_bytes();
        r.resize(r.len() + big, b'x');
        Reply::keep(r)
    })
    .await;
    let gw =
        Gw::start_with(&global(&[up.addr], "", CATCH_ALL), "    limits:\n      idle_timeout: 1s\n", "").await;
    (up, gw)
}

/// Sends `request` on a connection with a small receive buffer, takes nothing for three
/// seconds, then reads to the end: the number of bytes that arrived and the first 64 KiB of
/// them, or None if the connection stayed open.
async fn stall_then_drain(addr: SocketAddr, request: &[u8]) -> Option<(usize, Vec<u8>)> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0usize;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got += n;
                    let room = (64usize << 10).saturating_sub(head.len());
                    head.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    })
    .await
    .ok()
    .map(|()| (got, head))
}

/// The (type, stream) of each whole HTTP/2 frame in `bytes`.
fn h2_frames(bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let stream = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        frames.push((bytes[at + 3], stream));
        at += 9 + len;
    }
    frames
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_on_connections_hyper_serves() {
    // The same stall as above on the connections the gateway hands to hyper: an HTTP/1.1
    // request with a chunked body, and HTTP/2 (h2c prior knowledge, with windows opened wide
    // so that flow control does not stop the gateway before the socket does).
    const BIG: usize = 64 << 20;
    let (_up, gw) = big_response_gateway(BIG).await;

    let mut chunked_req =
        b"POST /big HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked_req.extend_from_slice(&chunked(b"abc", 2));
    let (got, head) = stall_then_drain(gw.addr(), &chunked_req)
        .await
        .expect("HTTP/1.1 through hyper: the connection stayed open");
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "HTTP/1.1 through hyper: {:?}",
        String::from_utf8_lossy(&head[..head.len().min(200)])
    );
    assert!(got < BIG, "HTTP/1.1 through hyper: the whole body arrived ({got} bytes)");

    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: INITIAL_WINDOW_SIZE = 2^31 - 1.
    h2.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0]);
    h2.extend_from_slice(&[0, 0x4, 0x7f, 0xff, 0xff, 0xff]);
    // WINDOW_UPDATE on the connection: up to 2^31 - 1.
    h2.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0]);
    h2.extend_from_slice(&(0x7fff_ffffu32 - 65_535).to_be_bytes());
    // HEADERS, stream 1, END_STREAM | END_HEADERS: GET http://gw.test/big (HPACK: :method GET,
    // :scheme http from the static table; :path and :authority as literals).
    let block: &[u8] = b"\x82\x86\x04\x04/big\x01\x07gw.test";
    h2.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
    h2.extend_from_slice(block);
    let (got, head) = stall_then_drain(gw.addr(), &h2).await.expect("HTTP/2: the connection stayed open");
    // The response was under way: its HEADERS (type 1) and DATA (type 0) on stream 1.
    let frames = h2_frames(&head);
    assert!(
        frames.contains(&(1, 1)) && frames.contains(&(0, 1)),
        "HTTP/2: no response on stream 1: {frames:?}"
    );
    assert!(got < BIG, "HTTP/2: the whole body arrived ({got} bytes)");
}

#[tokio::test]
async fn a_tunnel_client_that_sends_but_never_reads_is_cut_off() {
    // An upgraded connection (WebSocket) whose route has an idle timeout: the upstream streams
    // without end and reads whatever comes; the client keeps sending but takes nothing. The
    // client's bytes keep the tunnel from being idle; its full window must still end it.
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (s, _) = up.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|x| x == b"\r\n\r\n") {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed before the upgrade request's end");
            head.extend_from_slice(&buf[..n]);
        }
        w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        tokio::spawn(async move { while r.read(&mut buf).await.is_ok_and(|n| n > 0) {} });
        let chunk = vec![b'x'; 64 * 1024];
        // Ends when the gateway drops the tunnel.
        while w.write_all(&chunk).await.is_ok() {}
    });
    let routes = "routes:\n  - name: all\n    match: { path: { prefix: / } }\n    service: svc\n    timeouts: { idle: 300ms }\n";
    let gw = Gw::start(&global(&[up_addr], "", routes)).await;

    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(gw.addr()).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    // Only send from here on: a few bytes every 20 ms, never reading.
    let cut = tokio::time::timeout(WAIT, async {
        loop {
            if s.write_all(b"ping").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(cut.is_ok(), "the tunnel stayed open to a client that took nothing for {WAIT:?}");
    tokio::time::timeout(WAIT, upstream).await.expect("the upstream side of the tunnel stayed open").unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_when_the_gateway_stops() {
    let (up, gw) = scripted_gateway().await;
    let mut own = Client::connect(gw.addr()).await;
    assert_get_works(&mut own, "/idle").await;
    let mut handed = Client::connect(gw.addr()).await;
    let mut req = b"POST /te HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(&chunked(b"abc", 2));
    handed.send(req).await;
    assert_eq!(handed.response(false).await.text(), "POST /te 3");
    own.assert_open().await;
    handed.assert_open().await;
    gw.running.as_ref().unwrap().shutdown.stop();
    assert!(own.closes_within(WAIT).await, "own loop: idle keep-alive not closed on stop");
    assert!(handed.closes_within(WAIT).await, "hyper: idle keep-alive not closed on stop");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn a_body_cut_by_the_upstream_never_looks_complete_to_the_client() {
    let up = Scripted::start(|r| match r.target.as_str() {
        "/cut" => Reply::close(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789".to_vec()),
        _ => default_script(r),
    })
    .await;
    let gw = Gw::start(&global(&[up.addr], "", CATCH_ALL)).await;
    for http10 in [false, true] {
        let mut c = Client::connect(gw.addr()).await;
        let version = if http10 { "1.0" } else { "1.1" };
        c.send(format!("GET /cut HTTP/{version}\r\nHost: gw.test\r\n\r\n")).await;
        // Everything until the gateway closes.
        while c.fill().await {}
        let got = std::mem::take(&mut c.buf);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some(end) = find(&got, b"\r\n\r\n") else { continue };
        let head = &text[..end];
        let body = &got[end + 4..];
        let lower = head.to_ascii_lowercase();
        if head.starts_with("HTTP/1.1 200 ") {
            assert!(!lower.contains("transfer-encoding"), "HTTP/{version}: {text:?}");
            assert!(lower.contains("content-length: 1000\r\n"), "the announced length is kept: {text:?}");
            assert!(body.len() < 1000, "HTTP/{version}: a cut body arrived whole? {text:?}");
            assert_eq!(body, b"0123456789", "HTTP/{version}");
        } else {
            assert!(head.starts_with("HTTP/1.1 502 "), "HTTP/{version}: {text:?}");
        }
    }
}

#[tokio::test]
async fn a_large_response_arrives_byte_exact() {
    let up = TestUpstream::start("a").await;
    let gw = Gw::start(&global(&[up.addr()], "", CATCH_ALL)).await;
    let n = 2 * 1024 * 1024;
    let mut c = Client::connect(gw.addr()).await;
    c.send(get(&format!("/bytes/{n}"))).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some(n.to_string().as_str()), "{}", r.head);
    assert_eq!(r.body.len(), n);
    let wrong = r.body.iter().enumerate().position(|(i, &b)| b != (i % 256) as u8);
    assert_eq!(wrong, None, "first wrong byte");
    c.send(get("/after-large")).await;
    let r = c.response(false).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["path"], "/after-large");
}

#[tokio::test]
async fn trailers_reach_only_clients_that_accept_them() {
    let (_up, gw) = scripted_gateway().await;
    let ask = |te: &str| format!("GET /trailers HTTP/1.1\r\nHost: gw.test\r\n{te}Connection: close\r\n\r\n");
    let (with, _) = raw(gw.addr(), ask("TE: trailers\r\n").as_bytes(), WAIT).await;
    assert!(with.ends_with("5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"), "{with}");
    let (without, _) = raw(gw.addr(), ask("").as_bytes(), WAIT).await;
    assert!(without.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{without}");
}
