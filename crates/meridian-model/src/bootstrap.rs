//! Node bootstrap: per-process settings (identity, listeners, certificates, admin address, where
//! the global config comes from, snapshot path). Never pushed by the control plane.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dur::Dur;

/// The bootstrap file of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Who this node is.
    pub node: NodeIdentity,
    /// Where the node serves traffic.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// The admin address (health, readiness, status). Default 127.0.0.1:9901.
    #[serde(default)]
    pub admin: Admin,
    /// Where the global config comes from.
    pub config: ConfigSource,
    /// Where the last-known-good global config is persisted. Default: none.
    #[serde(default)]
    pub snapshot_path: Option<PathBuf>,
    /// Listener workers, one event loop (thread) each. Default: one per core.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Addresses (CIDRs) whose `X-Forwarded-For`/`Forwarded` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Request access log. Default off.
    #[serde(default)]
    pub access_log: AccessLog,
    /// Graceful shutdown.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The listener other regions' gateways call for cross-region failover (mutual TLS).
    /// Absent: this node neither accepts nor sends peer traffic.
    #[serde(default)]
    pub peer: Option<PeerConfig>,
}

/// Gateway-to-gateway traffic: a mutually authenticated TLS listener, and the client identity
/// used to call other regions' peer listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// `ip:port` of the peer listener.
    pub address: String,
    /// PEM certificate of this node (used as server and client certificate).
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM CA that signs every gateway of the deployment; peers must present a certificate
    /// it signed.
    pub ca: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    /// Node id, unique in the deployment, e.g. `gw-us-east-1-a`.
    pub id: String,
    /// The region this node runs in; must be a region of the global config.
    pub region: String,
    /// Source IP for connections this node opens (to endpoints and peers). Default: chosen by
    /// the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<std::net::IpAddr>,
}

/// A listening socket for client traffic: HTTP/1.1 and HTTP/2 on one port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Listener name, unique on the node.
    pub name: String,
    /// `ip:port` to bind.
    pub address: String,
    /// TLS; absent means cleartext (HTTP/1.1 and h2c prior knowledge).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Limits against abuse.
    #[serde(default)]
    pub limits: ListenerLimits,
}

/// TLS on a listener: certificates chosen by SNI, reloaded when the files change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates; the first is the default when SNI matches none.
    pub certificates: Vec<Certificate>,
    /// Lowest TLS version: `1.2` or `1.3`. Default `1.2`.
    #[serde(default = "default_min_tls")]
    pub min_version: String,
}

fn default_min_tls() -> String {
    "1.2".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
    /// Server names this certificate serves (`api.example.com`, `*.example.com`).
    /// Default: the DNS names in the certificate.
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// Per-listener limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerLimits {
    /// Most request headers; more gets 431. Default 100.
    #[serde(default = "default_max_headers")]
    pub max_header_count: usize,
    /// Largest request head (request line and headers), bytes; larger gets 431. Default 65536.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest request body, bytes; larger gets 413. Default 10 MiB; routes may override.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Time a client has to send its request head (slowloris guard). Default 10s.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Dur,
    /// Idle keep-alive connections are closed after this. Default 60s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Most concurrent HTTP/2 streams per connection. Default 256.
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_header_count: default_max_headers(),
            max_header_bytes: default_max_header_bytes(),
            max_body_bytes: default_max_body(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_concurrent_streams: default_max_streams(),
        }
    }
}

fn default_max_headers() -> usize {
    100
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_body() -> u64 {
    10 * 1024 * 1024
}
fn default_header_read_timeout() -> Dur {
    Dur::from_secs(10)
}
fn default_idle_timeout() -> Dur {
    Dur::from_secs(60)
}
fn default_max_streams() -> u32 {
    256
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `ip:port` of the admin endpoints (`/-/live`, `/-/ready`, `/-/config`).
    #[serde(default = "default_admin_address")]
    pub address: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin { address: default_admin_address() }
    }
}

fn default_admin_address() -> String {
    "127.0.0.1:9901".into()
}

/// Where the global config comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "source", rename_all = "snake_case")]
pub enum ConfigSource {
    /// A YAML file, watched for changes and re-read on SIGHUP.
    File {
        /// Path of the global config file.
        path: PathBuf,
        /// How often the file is checked for changes. Default 1s.
        #[serde(default = "default_watch_interval")]
        watch_interval: Dur,
    },
    /// The control plane: a stream of pushed snapshots, acked per kind. The node boots from
    /// its last-known-good snapshot (`snapshot_path`) when no instance is reachable.
    Control {
        /// Base URLs of control instances (`http://host:port`), tried in order; the node
        /// fails over to the next one when a stream dies or a connection fails.
        urls: Vec<String>,
        /// File holding this node's bootstrap token (sent as a bearer token).
        token_file: PathBuf,
    },
}

fn default_watch_interval() -> Dur {
    Dur::from_secs(1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Write one JSON line per request. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// File to append to; absent means standard output.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The longest a line waits in memory before it is written (nginx's `access_log ...
    /// flush=`); 1 MiB of waiting lines is written at once whatever this is. Default 200ms.
    #[serde(default = "default_log_flush_interval")]
    pub flush_interval: Dur,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog { enabled: false, path: None, flush_interval: default_log_flush_interval() }
    }
}

fn default_log_flush_interval() -> Dur {
    Dur::from_millis(200)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After a stop signal, readiness fails and serving continues this long so that load
    /// balancers and DNS move traffic away. Default 5s.
    #[serde(default = "default_drain")]
    pub drain_period: Dur,
    /// After the drain period, in-flight requests get this long to finish. Default 30s.
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { drain_period: default_drain(), grace_period: default_grace() }
    }
}

fn default_drain() -> Dur {
    Dur::from_secs(5)
}
fn default_grace() -> Dur {
    Dur::from_secs(30)
}
