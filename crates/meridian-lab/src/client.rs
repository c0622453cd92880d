//! The client side of the lab: what `meridian lab status|down|up|slow|curl` do. The running
//! lab is found through `DIR/state.json`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::LabConfig;
use crate::faults::Mode;
use crate::state::StateFile;
use crate::status::LabStatus;
use crate::{LabError, http1, state};

/// Fault requests restart processes and wait for them, so they get a long deadline.
const FAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to the lab running from a run directory.
pub struct LabClient {
    pub state: StateFile,
}

impl LabClient {
    pub fn from_dir(dir: &Path) -> Result<LabClient, LabError> {
        let state = state::read(dir)?;
        if !state::is_meridian(state.supervisor_pid) {
            return Err(LabError::Control(format!(
                "the lab that ran from {} is gone (its supervisor, pid {}, died); start one with `meridian up`",
                dir.display(),
                state.supervisor_pid
            )));
        }
        Ok(LabClient { state })
    }

    pub async fn status(&self) -> Result<LabStatus, LabError> {
        let r = http1::Request::get(self.state.control, "/status", Duration::from_secs(10)).send().await?;
        if !r.status.is_success() {
            return Err(LabError::Control(format!(
                "lab status: {}",
                String::from_utf8_lossy(&r.body).trim()
            )));
        }
        serde_json::from_slice(&r.body).map_err(|e| LabError::Control(format!("lab status answer: {e}")))
    }

    pub async fn down(&self, target: &str, mode: Mode) -> Result<String, LabError> {
        self.post("/down", serde_json::json!({"target": target, "mode": mode})).await
    }

    pub async fn up(&self, target: &str) -> Result<String, LabError> {
        self.post("/up", serde_json::json!({"target": target})).await
    }

    pub async fn slow(&self, target: &str, delay: &str) -> Result<String, LabError> {
        self.post("/slow", serde_json::json!({"target": target, "delay": delay})).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<String, LabError> {
        let r = http1::Request::post_json(self.state.control, path, &body, FAULT_TIMEOUT).send().await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if r.status.is_success() {
            Ok(v["message"].as_str().unwrap_or_default().to_string())
        } else {
            Err(LabError::Fault(v["error"].as_str().unwrap_or("the lab refused the request").to_string()))
        }
    }
}

/// Where `meridian lab curl` sends a request, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlPlan {
    /// Where to connect.
    pub connect: SocketAddr,
    /// The client socket's source address (in the client's region).
    pub source: IpAddr,
    pub host: String,
    pub path: String,
}

/// Plans a request from a client in `region` to `url`: a URL naming an IP address is sent
/// there; any other host (or a bare path) goes to the region's gateway, keeping the host in
/// the `Host` header. The client socket is bound to 127.0.N.250 of the region.
pub fn plan_curl(lab: &LabConfig, region: Option<&str>, url: &str) -> Result<CurlPlan, LabError> {
    let r = match region {
        Some(name) => lab.region(name).ok_or_else(|| LabError::Fault(format!("unknown region {name:?}")))?,
        None => lab.regions.first().ok_or_else(|| LabError::Fault("the lab has no region".into()))?,
    };
    let uri: http::Uri = url.parse().map_err(|e| LabError::Fault(format!("invalid URL {url:?}: {e}")))?;
    if uri.scheme_str().is_some_and(|s| s != "http") {
        return Err(LabError::Fault(format!("only http:// URLs are supported, got {url:?}")));
    }
    let path = uri.path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
    let (connect, host) = match uri.authority() {
        None => (r.public(), r.public().to_string()),
        Some(a) => {
            let bare = a.host().trim_start_matches('[').trim_end_matches(']');
            match bare.parse::<IpAddr>() {
                Ok(ip) => (SocketAddr::new(ip, a.port_u16().unwrap_or(80)), a.as_str().to_string()),
                Err(_) => (r.public(), a.as_str().to_string()),
            }
        }
    };
    if !connect.ip().is_loopback() {
        return Err(LabError::Fault(format!("the lab only talks to loopback addresses, not {connect}")));
    }
    Ok(CurlPlan { connect, source: IpAddr::V4(r.client_ip()), host, path })
}

/// Sends a GET as planned.
pub async fn curl(plan: &CurlPlan, timeout: Duration) -> Result<http1::Response, LabError> {
    http1::Request {
        method: http::Method::GET,
        addr: plan.connect,
        source: Some(plan.source),
        host: Some(&plan.host),
        path: &plan.path,
        body: None,
        headers: Vec::new(),
        timeout,
    }
    .send()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_goes_to_the_region_gateway_unless_the_url_names_an_address() {
        let lab = LabConfig::default();
        let p = plan_curl(&lab, Some("eu-west-1"), "http://api.example.com/orders?x=1").unwrap();
        assert_eq!(p.connect.to_string(), "127.0.2.1:8080");
        assert_eq!(p.source.to_string(), "127.0.2.250");
        assert_eq!(p.host, "api.example.com");
        assert_eq!(p.path, "/orders?x=1");
        let p = plan_curl(&lab, Some("eu-west-1"), "http://127.0.3.1:8080/users").unwrap();
        assert_eq!(p.connect.to_string(), "127.0.3.1:8080");
        let p = plan_curl(&lab, None, "/catalog").unwrap();
        assert_eq!(p.connect.to_string(), "127.0.1.1:8080");
        assert!(plan_curl(&lab, Some("mars"), "/x").is_err());
        assert!(plan_curl(&lab, None, "http://10.0.0.1/x").is_err());
    }
}
