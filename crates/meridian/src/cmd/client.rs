//! The admin API client shared by `apply`, `diff`, `history`, `rollback`, `status`, `drain`,
//! `undrain`, `export`, `import`: reqwest on a small current-thread runtime.

use anyhow::{Context, bail};
use serde_json::Value;

#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The control plane's admin API.
    #[arg(long, env = "MERIDIAN_SERVER", default_value = "http://127.0.0.1:9700")]
    pub server: String,
    /// An admin API token.
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// An answer from the admin API.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The body of a success, or an error with the API's message (and every error path).
    pub fn ok(self) -> anyhow::Result<Value> {
        if self.status < 400 {
            return Ok(self.body);
        }
        let code = self.body["code"].as_str().unwrap_or("Error");
        let msg = self.body["message"].as_str().map(String::from).unwrap_or_else(|| self.body.to_string());
        bail!("{code} ({}): {msg}", self.status)
    }
}

impl Client {
    pub fn new(a: &ServerArgs) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Client { base: a.server.trim_end_matches('/').to_string(), token: a.token.clone(), http, rt })
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Answer> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut rb = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        self.rt.block_on(async {
            let resp = rb
                .send()
                .await
                .with_context(|| format!("cannot reach the control plane at {}", self.base))?;
            let status = resp.status().as_u16();
            let text = resp.text().await?;
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok(Answer { status, body })
        })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, &[], None)?.ok()
    }
}

/// "3s ago" from unix milliseconds.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

/// A plain table: columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        format!("{}\n", s.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}
