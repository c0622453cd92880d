//! A gateway started in-process on loopback with a file config source, for integration tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use meridian_gateway::Running;
use meridian_gateway::config_source::FileSource;

pub struct Gw {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Gw {
    /// Starts a gateway in region `local` with the given global config YAML and extra
    /// bootstrap YAML lines for the `public` listener (indented under it) and top level.
    pub async fn start(global: &str) -> Gw {
        Gw::start_with(global, "", "").await
    }

    pub async fn start_with(global: &str, listener_extra: &str, top_extra: &str) -> Gw {
        Gw::start_in("local", global, listener_extra, top_extra).await
    }

    /// Starts a gateway of `region`.
    pub async fn start_in(region: &str, global: &str, listener_extra: &str, top_extra: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("global.yaml");
        std::fs::write(&config_path, global).unwrap();
        let bootstrap = format!(
            "node: {{ id: gw-{region}, region: {region} }}\n\
             listeners:\n  - name: public\n    address: 127.0.0.1:0\n{listener_extra}\
             admin: {{ address: 127.0.0.1:0 }}\n\
             config: {{ source: file, path: {path}, watch_interval: 50ms }}\n\
             shutdown: {{ drain_period: 500ms, grace_period: 5s }}\n{top_extra}",
            path = config_path.display()
        );
        let b = meridian_model::parse_bootstrap(&bootstrap)
            .unwrap_or_else(|e| panic!("bootstrap: {e}\n{bootstrap}"));
        let src = Box::new(FileSource::new(config_path.clone(), Duration::from_millis(50)));
        let running = meridian_gateway::start(b, src).await.expect("gateway starts");
        Gw { running: Some(running), dir, config_path }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{}", self.running.as_ref().unwrap().admin, path)
    }

    pub fn hash(&self) -> Option<String> {
        self.running.as_ref().unwrap().config.lock().unwrap().hash.clone()
    }

    pub fn status(&self) -> meridian_gateway::admin::ConfigStatus {
        self.running.as_ref().unwrap().config.lock().unwrap().clone()
    }

    /// Rewrites the global config file (the source picks it up within its watch interval).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("global.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown.stop();
        }
    }
}

/// A global config with one region `local`, one service `svc` with the given endpoints, and
/// the given routes/policies YAML appended (routes must reference `svc`).
pub fn global(endpoints: &[SocketAddr], service_extra: &str, rest: &str) -> String {
    let eps: String = endpoints.iter().map(|a| format!("        - address: {a}\n")).collect();
    format!(
        "regions:\n  - name: local\n    public_addresses: [127.0.0.1]\n\
         services:\n  - name: svc\n    endpoints:\n      local:\n{eps}{service_extra}{rest}"
    )
}

/// The default routes: everything to `svc`.
pub const CATCH_ALL: &str = "routes:\n  - name: all\n    match: { path: { prefix: / } }\n    service: svc\n";

/// Polls `f` every 20 ms until it returns true or the deadline passes.
pub async fn eventually(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().http2_prior_knowledge().build().unwrap()
}

/// Sends raw bytes on a fresh TCP connection and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let end = Instant::now() + wait;
    let mut closed = false;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), closed)
}
