//! A real control instance on 127.0.0.1:0 with a temp store file, real HTTP clients, and a fake
//! node that reads the ndjson stream.

use std::path::PathBuf;
use std::time::Duration;

use meridian_control::{ControlConfig, Server};
use meridian_sync::protocol::{self, Ack, Kind, Push, Snapshot};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin-secret-token";

/// A config for deployment `test`; `port` makes versions differ.
pub fn config(port: u16) -> String {
    format!(
        "deployment: test\nregions:\n  - name: r1\n  - name: r2\nservices:\n  - name: orders\n    endpoints:\n      \
         r1: [{{address: \"127.0.0.1:{port}\"}}]\nroutes:\n  - name: root\n    service: orders\n"
    )
}

pub struct Ctl {
    pub server: Option<Server>,
    pub url: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
}

/// `control.yaml` of an instance with the embedded store in `dir`.
pub fn control_yaml(dir: &std::path::Path, extra: &str) -> ControlConfig {
    control_yaml_with(dir, "store: control.redb\n", extra)
}

/// `control.yaml` with a given `store:` block.
pub fn control_yaml_with(dir: &std::path::Path, store: &str, extra: &str) -> ControlConfig {
    let token = dir.join("admin.token");
    std::fs::write(&token, format!("{ADMIN}\n")).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\n{store}deployment: test\nadmin_token_file: {}\n{extra}",
        token.display()
    );
    ControlConfig::parse(&yaml).unwrap()
}

/// The `store:` block of an etcd at `endpoint`, keys under `prefix`.
pub fn etcd_store(endpoint: &str, prefix: &str) -> String {
    format!("store:\n  etcd:\n    endpoints: [\"{endpoint}\"]\n    prefix: {prefix}\n    timeout: 2s\n")
}

impl Ctl {
    pub async fn start(extra: &str) -> Ctl {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut c = Ctl::start_in(dir, extra).await;
        c._tmp = Some(tmp);
        c
    }

    pub async fn start_in(dir: PathBuf, extra: &str) -> Ctl {
        let cfg = control_yaml(&dir, extra);
        Ctl::start_with(dir, cfg).await
    }

    /// An instance with a given `store:` block (e.g. [`etcd_store`]) and a temp directory.
    pub async fn start_on(store: &str, extra: &str) -> Ctl {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let cfg = control_yaml_with(&dir, store, extra);
        let mut c = Ctl::start_with(dir, cfg).await;
        c._tmp = Some(tmp);
        c
    }

    async fn start_with(dir: PathBuf, cfg: ControlConfig) -> Ctl {
        let server = Server::start(&cfg, &dir).await.unwrap();
        let url = format!("http://{}", server.addr);
        Ctl { server: Some(server), url, dir, _tmp: None, http: reqwest::Client::new() }
    }

    /// Stops the instance (keeps the directory).
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(2)).await;
        }
    }

    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, format!("{}{path}", self.url)).bearer_auth(token);
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(ADMIN, "GET", path, &[], None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    /// Plans and applies a config as the admin; returns (status, body).
    pub async fn apply(&self, token: &str, yaml: &str) -> (u16, Value) {
        let (_, plan) = self.call(ADMIN, "POST", "/v1/config/plan", &[], Some(yaml.to_string())).await;
        let expected = plan["current_version"].as_u64().unwrap_or(0);
        self.apply_at(token, yaml, expected).await
    }

    pub async fn apply_at(&self, token: &str, yaml: &str, expected: u64) -> (u16, Value) {
        let h = [("x-meridian-expected-version", expected.to_string())];
        self.call(token, "POST", "/v1/config", &h, Some(yaml.to_string())).await
    }

    pub async fn token(&self, body: Value) -> String {
        let (s, v) = self.call(ADMIN, "POST", "/v1/tokens", &[], Some(body.to_string())).await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn node(&self, id: &str, region: &str) -> Node {
        let token = self.token(json!({"name": id, "node": id, "region": region})).await;
        Node::connect(&self.url, &token, id, region).await.unwrap()
    }

    pub async fn node_status(&self, id: &str) -> Value {
        let st = self.get("/v1/status").await;
        st["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).cloned().unwrap_or(Value::Null)
    }
}

/// A fake node: a real HTTP client reading the ndjson stream.
pub struct Node {
    pub id: String,
    pub region: String,
    pub token: String,
    url: String,
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Node {
    pub async fn connect(url: &str, token: &str, id: &str, region: &str) -> Result<Node, u16> {
        let resp = reqwest::Client::new()
            .get(format!("{url}{}", protocol::STREAM_PATH))
            .bearer_auth(token)
            .header(protocol::NODE_HEADER, id)
            .header(protocol::REGION_HEADER, region)
            .header(protocol::ROLE_HEADER, "gateway")
            .header(protocol::FEATURES_HEADER, "config,drains")
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            return Err(resp.status().as_u16());
        }
        assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
        Ok(Node {
            id: id.into(),
            region: region.into(),
            token: token.into(),
            url: url.into(),
            resp,
            buf: vec![],
        })
    }

    /// The next push (pings included), or None on timeout.
    pub async fn next(&mut self, wait: Duration) -> Option<Push> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(protocol::decode_line(std::str::from_utf8(&line).unwrap()).unwrap());
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.unwrap()?;
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next snapshot of a kind, skipping pings and other kinds.
    pub async fn snapshot(&mut self, kind: Kind) -> Snapshot {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Push::Snapshot(s)) if s.kind == kind => return s,
                Some(_) => continue,
                None => panic!("no {kind:?} snapshot within 10s"),
            }
        }
    }

    pub async fn ack(&self, s: &Snapshot, error: Option<&str>) -> u16 {
        let ack = Ack {
            node: self.id.clone(),
            region: self.region.clone(),
            kind: s.kind,
            version: s.version,
            hash: s.hash.clone(),
            ok: error.is_none(),
            error: error.map(String::from),
        };
        reqwest::Client::new()
            .post(format!("{}{}", self.url, protocol::ACK_PATH))
            .bearer_auth(&self.token)
            .json(&ack)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}
