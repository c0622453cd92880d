//! The access log: one JSON line per request, written by a dedicated thread so that a slow disk
//! never blocks a request. Off by default (and in benchmarks).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, GwBody};

/// A handle to the log writer; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::SyncSender<String>,
}

/// Lines buffered for the writer; beyond this, lines are dropped rather than slowing requests
/// down.
const QUEUE: usize = 64 * 1024;

impl AccessLog {
    /// Starts the writer thread, appending to `path` or writing to standard output.
    pub fn start(path: Option<&Path>) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        std::thread::Builder::new().name("access-log".into()).spawn(move || {
            let mut buf = std::io::BufWriter::with_capacity(64 * 1024, &mut out);
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(line) => {
                        let _ = buf.write_all(line.as_bytes());
                        let _ = buf.write_all(b"\n");
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let _ = buf.flush();
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        let _ = buf.flush();
                        return;
                    }
                }
            }
        })?;
        Ok(AccessLog { tx })
    }

    fn write(&self, line: String) {
        let _ = self.tx.try_send(line);
    }
}

/// What is known about a request when its response headers are ready.
pub struct LogRecord {
    pub request_id: String,
    pub route: Arc<str>,
    pub service: Arc<str>,
    pub region: Arc<str>,
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
        let time = humantime_rfc3339(SystemTime::now());
        let line = serde_json::json!({
            "time": time,
            "request_id": r.request_id,
            "route": &*r.route,
            "service": &*r.service,
            "region": &*r.region,
            "endpoint": r.endpoint.map(|e| e.to_string()),
            "client": r.client.to_string(),
            "status": r.status,
            "headers_ms": (r.headers_ms * 1000.0).round() / 1000.0,
            "total_ms": (r.start.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
            "bytes_sent": self.bytes,
            "complete": complete,
        });
        self.log.write(line.to_string());
    }
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
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
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
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", d.subsec_millis())
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
}
