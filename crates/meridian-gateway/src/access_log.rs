//! The access log: one JSON line per request, written by a dedicated thread so that a slow disk
//! never blocks a request. Off by default.
//!
//! Requests append their lines to one shared buffer (a short lock, no allocation per line);
//! the writer takes the whole buffer at once and writes it, at most the flush interval
//! (bootstrap `access_log.flush_interval`) after its first line arrived (one write for many lines under load, rather than a syscall per line).
//! When the last handle is dropped — the gateway's runtime shutting down — the writer drains
//! the buffer and is joined, so no line logged before shutdown is lost.

use std::cell::RefCell;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::ascii::push_decimal;
use crate::body::{BoxError, GwBody};

/// A handle to the log writer; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
    _writer: Arc<Writer>,
}

/// Lines waiting for the writer.
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the buffer gets its first line, passes [`WAKE_AT`], or closes.
    wake: Condvar,
}

struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

/// The writer thread; when the last handle goes, it is told to finish and joined.
struct Writer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes buffered for the writer; beyond this, lines are dropped rather than slowing requests
/// down (a disk that cannot keep up).
const QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Buffered bytes that wake the writer before its flush interval.
const WAKE_AT: usize = 1024 * 1024;
/// The capacity each of the two buffers starts with: what wakes the writer and the line that
/// crosses it, without growing (growing copies every line waiting so far, once per doubling).
/// Only the pages lines are written to become resident.
const BUFFER_BYTES: usize = WAKE_AT + 4096;

impl AccessLog {
    /// Starts the writer thread, appending to `path` or writing to standard output; a line
    /// waits at most `flush_after` before it is written.
    pub fn start(path: Option<&Path>, flush_after: Duration) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
            None => Box::new(std::io::stdout()),
        };
        let pending = Pending { lines: Vec::with_capacity(BUFFER_BYTES), closed: false };
        let shared = Arc::new(Shared { pending: Mutex::new(pending), wake: Condvar::new() });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("access-log".into()).spawn(move || {
            let shared = for_thread;
            let mut batch = Vec::with_capacity(BUFFER_BYTES);
            loop {
                let mut p = lock(&shared.pending);
                // Sleep without a timer while there is nothing to write.
                while p.lines.is_empty() && !p.closed {
                    p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                // Lines are waiting: give others up to `flush_after` to join them.
                let first = Instant::now();
                while !p.closed && p.lines.len() < WAKE_AT {
                    let Some(left) = flush_after.checked_sub(first.elapsed()).filter(|d| !d.is_zero()) else {
                        break;
                    };
                    p = shared.wake.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
                }
                std::mem::swap(&mut batch, &mut p.lines);
                let closed = p.closed;
                drop(p);
                let _ = out.write_all(&batch);
                let _ = out.flush();
                batch.clear();
                if closed && lock(&shared.pending).lines.is_empty() {
                    return;
                }
            }
        })?;
        let writer = Writer { shared: Arc::clone(&shared), thread: Some(thread) };
        Ok(AccessLog { shared, _writer: Arc::new(writer) })
    }

    /// Appends one line (without its newline).
    fn write(&self, line: &[u8]) {
        let mut p = lock(&self.shared.pending);
        if p.lines.len() + line.len() >= QUEUE_BYTES {
            return;
        }
        let before = p.lines.len();
        p.lines.extend_from_slice(line);
        p.lines.push(b'\n');
        let wake = before == 0 || (before < WAKE_AT && p.lines.len() >= WAKE_AT);
        drop(p);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

/// The region, route and service names of a log line, escaped once: they are the same for
/// every request of a route (escaping and copying them per line was a fifth of its cost).
#[derive(Clone)]
pub struct LogNames {
    /// `,"region":…` then `,"route":…,"service":…`.
    bytes: Arc<[u8]>,
    split: usize,
}

impl LogNames {
    pub fn new(region: &str, route: &str, service: &str) -> Self {
        let mut b = Vec::new();
        b.extend_from_slice(b",\"region\":");
        push_json_str(&mut b, region);
        let split = b.len();
        b.extend_from_slice(b",\"route\":");
        push_json_str(&mut b, route);
        b.extend_from_slice(b",\"service\":");
        push_json_str(&mut b, service);
        LogNames { bytes: b.into(), split }
    }
}

/// What is known about a request when its response headers are ready.
pub struct LogRecord {
    /// The request id as the response carries it (shared bytes, no copy).
    pub request_id: http::HeaderValue,
    pub names: LogNames,
    pub endpoint: Option<SocketAddr>,
    /// The client as the gateway believes it (after trusted proxies, or the peer hop).
    pub client: std::net::IpAddr,
    pub status: u16,
    pub start: Instant,
    /// Time until the response headers were ready, in milliseconds.
    pub headers_ms: f64,
}

/// A response body that writes the access log line when it ends (or is dropped).
pub struct LoggedBody {
    inner: GwBody,
    rec: Option<LogRecord>,
    log: AccessLog,
    bytes: u64,
}

impl LoggedBody {
    pub fn new(inner: GwBody, rec: LogRecord, log: AccessLog) -> Self {
        LoggedBody { inner, rec: Some(rec), log, bytes: 0 }
    }

    fn emit(&mut self, complete: bool) {
        let Some(r) = self.rec.take() else { return };
        let total_ms = r.start.elapsed().as_secs_f64() * 1000.0;
        // Formatted into this thread's line buffer: no allocation per line.
        thread_local! {
            static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
        }
        LINE.with(|l| {
            let mut l = l.borrow_mut();
            l.clear();
            json_line(&mut l, &r, SystemTime::now(), total_ms, self.bytes, complete);
            self.log.write(&l);
        });
    }
}

/// The log line: a JSON object with its keys in alphabetical order, as `serde_json` printed it
/// from a `json!` map, written straight into one buffer — building a `serde_json::Value` and
/// printing it cost more than the rest of a proxied request (the tests check both agree).
fn json_line(
    l: &mut Vec<u8>,
    r: &LogRecord,
    now: SystemTime,
    total_ms: f64,
    bytes_sent: u64,
    complete: bool,
) {
    l.extend_from_slice(b"{\"bytes_sent\":");
    push_decimal(l, bytes_sent);
    // An address's text has no character that JSON escapes.
    l.extend_from_slice(b",\"client\":\"");
    push_ip(l, r.client);
    l.extend_from_slice(if complete { b"\",\"complete\":true" } else { b"\",\"complete\":false" });
    l.extend_from_slice(b",\"endpoint\":");
    match r.endpoint {
        Some(SocketAddr::V4(e)) => {
            l.push(b'"');
            push_ip(l, IpAddr::V4(*e.ip()));
            l.push(b':');
            push_decimal(l, u64::from(e.port()));
            l.push(b'"');
        }
        Some(e) => {
            let _ = write!(l, "\"{e}\"");
        }
        None => l.extend_from_slice(b"null"),
    }
    l.extend_from_slice(b",\"headers_ms\":");
    push_millis(l, r.headers_ms);
    let (region, route_service) = r.names.bytes.split_at(r.names.split);
    l.extend_from_slice(region);
    l.extend_from_slice(b",\"request_id\":");
    push_json_str(l, r.request_id.to_str().unwrap_or(""));
    l.extend_from_slice(route_service);
    l.extend_from_slice(b",\"status\":");
    push_decimal(l, u64::from(r.status));
    l.extend_from_slice(b",\"time\":\"");
    write_rfc3339(l, now);
    l.extend_from_slice(b"\",\"total_ms\":");
    push_millis(l, total_ms);
    l.push(b'}');
}

/// IPv4 by hand into one small buffer (the common case, and `Display` through `core::fmt`
/// costs ~1,000 instructions); IPv6 through `Display`, whose compression rules are not worth
/// copying.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(crate::ascii::ipv4(v4).as_bytes()),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Milliseconds rounded to the microsecond, printed as serde_json prints that `f64`: at least
/// one decimal, no trailing zeros (`12.0`, `0.5`, `180.159`).
fn push_millis(out: &mut Vec<u8>, ms: f64) {
    // `f64::round` (half away from zero) for these non-negative values, without its libm
    // call: the fraction left after truncating is exact below 2^52.
    let x = ms * 1000.0;
    let whole = x as u64;
    let micros = if x - whole as f64 >= 0.5 { whole + 1 } else { whole };
    push_decimal(out, micros / 1000);
    let f = (micros % 1000) as u16;
    let frac = [b'.', b'0' + (f / 100) as u8, b'0' + (f / 10 % 10) as u8, b'0' + (f % 10) as u8];
    let keep = if f.is_multiple_of(100) {
        2
    } else if f.is_multiple_of(10) {
        3
    } else {
        4
    };
    out.extend_from_slice(&frac[..keep]);
}

/// A JSON string with serde_json's escaping (`\"`, `\\`, `\n`-style short forms, `\u00XX` for
/// other control characters; everything else as is).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Checked without stopping early, so that the check runs on whole vectors of bytes.
    if !s.bytes().fold(false, |any, b| any | (b < 0x20) | (b == b'"') | (b == b'\\')) {
        // Nearly every value (ids, names): nothing to escape.
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[start..i]);
        start = i + 1;
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short.as_bytes());
        }
    }
    out.extend_from_slice(&s.as_bytes()[start..]);
    out.push(b'"');
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // Bodies that are empty from the start (204, 304, HEAD) are never polled.
        let complete = self.inner.is_end_stream();
        self.emit(complete);
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.emit(true);
                }
            }
            Poll::Ready(None) => this.emit(true),
            Poll::Ready(Some(Err(_))) => this.emit(false),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without a date-time dependency.
pub fn humantime_rfc3339(t: SystemTime) -> String {
    let mut s = Vec::with_capacity(24);
    write_rfc3339(&mut s, t);
    String::from_utf8_lossy(&s).into_owned()
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) to `out`. The part up to the seconds is computed
/// once per second per thread.
fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let mut text = SECOND.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let text = seconds_rfc3339(secs);
        c.set((secs, text));
        text
    });
    let ms = d.subsec_millis();
    text[19] = b'.';
    let mut line = [0u8; 24];
    line[..20].copy_from_slice(&text);
    line[20] = b'0' + (ms / 100) as u8;
    line[21] = b'0' + (ms / 10 % 10) as u8;
    line[22] = b'0' + (ms % 10) as u8;
    line[23] = b'Z';
    out.extend_from_slice(&line);
}

/// `YYYY-MM-DDTHH:MM:SS` and one spare byte for the seconds since the epoch (UTC).
fn seconds_rfc3339(secs: u64) -> [u8; 20] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Years 0..=9999, the only ones RFC 3339 writes.
    let year = year.clamp(0, 9999) as u64;
    let fields: [(u64, usize, u8); 6] = [
        (year, 4, b'-'),
        (month as u64, 2, b'-'),
        (day as u64, 2, b'T'),
        (h, 2, b':'),
        (m, 2, b':'),
        (s, 2, b' '),
    ];
    let mut out = [0u8; 20];
    let mut at = 0;
    for (v, width, sep) in fields {
        let mut v = v;
        for d in out[at..at + width].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out[at + width] = sep;
        at += width + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(humantime_rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(humantime_rfc3339(t), "2026-11-18T11:06:40.123Z");
    }

    /// A record whose route is `name` (any text: names are escaped) and whose request id is a
    /// valid header value with characters JSON escapes.
    fn record(name: &str, endpoint: Option<SocketAddr>, headers_ms: f64) -> LogRecord {
        LogRecord {
            request_id: http::HeaderValue::from_static("983c2a38\"43\\3bf367"),
            names: LogNames::new("eu-west", name, "upstream"),
            endpoint,
            client: if headers_ms > 1.0 { "2001:db8::7" } else { "10.0.255.7" }.parse().unwrap(),
            status: 200,
            start: Instant::now(),
            headers_ms,
        }
    }

    /// The line as it was printed before it was written by hand: a `json!` map.
    fn reference(
        r: &LogRecord,
        route: &str,
        now: SystemTime,
        total_ms: f64,
        bytes: u64,
        complete: bool,
    ) -> String {
        serde_json::json!({
            "time": humantime_rfc3339(now),
            "request_id": r.request_id.to_str().unwrap(),
            "route": route,
            "service": "upstream",
            "region": "eu-west",
            "endpoint": r.endpoint.map(|e| e.to_string()),
            "client": r.client.to_string(),
            "status": r.status,
            "headers_ms": (r.headers_ms * 1000.0).round() / 1000.0,
            "total_ms": (total_ms * 1000.0).round() / 1000.0,
            "bytes_sent": bytes,
            "complete": complete,
        })
        .to_string()
    }

    #[test]
    fn the_line_is_what_serde_json_printed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_007);
        let ids = ["983c2a38433bf367e3fef249929f2f0d", "", "q\"uo\\te\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é☃"];
        let millis = [0.0, 0.0004, 0.0005, 0.001, 0.0105, 0.05, 0.5, 1.0, 12.3456, 180.159, 99_999.999_9];
        let endpoints = [Some("127.0.0.1:19210".parse().unwrap()), None, Some("[::1]:8443".parse().unwrap())];
        for (i, id) in ids.iter().enumerate() {
            for (j, &ms) in millis.iter().enumerate() {
                let r = record(id, endpoints[j % 3], ms);
                let total = millis[millis.len() - 1 - j];
                let (bytes, complete) = ((i * j) as u64 * 977, j % 3 != 0);
                let mut line = Vec::new();
                json_line(&mut line, &r, now, total, bytes, complete);
                let line = String::from_utf8(line).unwrap();
                assert_eq!(line, reference(&r, id, now, total, bytes, complete));
                serde_json::from_str::<serde_json::Value>(&line).unwrap();
            }
        }
    }

    /// The bootstrap's default `access_log.flush_interval`.
    fn flush_after() -> Duration {
        meridian_model::AccessLog::default().flush_interval.get()
    }

    fn temp_log(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("meridian-access-{name}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn every_line_is_in_the_file_once_the_last_handle_is_dropped() {
        let path = temp_log("drop");
        let log = AccessLog::start(Some(&path), flush_after()).unwrap();
        let other = log.clone();
        for i in 0..1000 {
            log.write(format!("{{\"n\":{i}}}").as_bytes());
        }
        drop(log);
        other.write(b"{\"n\":\"last\"}");
        drop(other); // joins the writer: no waiting needed before reading
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1001);
        assert_eq!(lines[0], "{\"n\":0}");
        assert_eq!(lines[1000], "{\"n\":\"last\"}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_line_reaches_the_file_while_the_log_stays_open() {
        let path = temp_log("open");
        let log = AccessLog::start(Some(&path), flush_after()).unwrap();
        log.write(b"{\"n\":1}");
        // Written after the flush interval without another line or a shutdown; the generous deadline
        // only keeps a broken writer from hanging the test.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(&path).unwrap_or_default() == "{\"n\":1}\n" {
                break;
            }
            assert!(Instant::now() < deadline, "the line never reached the file");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(log);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn lines_wait_for_the_flush_interval_or_the_close() {
        let path = temp_log("interval");
        let log = AccessLog::start(Some(&path), Duration::from_secs(3600)).unwrap();
        log.write(b"{\"n\":1}");
        std::thread::sleep(flush_after() * 3);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "written before its flush interval");
        drop(log);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":1}\n");
        let _ = std::fs::remove_file(&path);
    }
}
