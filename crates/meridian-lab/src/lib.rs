//! Layer 3: the local multi-region lab behind `meridian up` and `meridian lab ...`.
//!
//! A [`LabConfig`] (regions on loopback addresses 127.0.N.x, demo services) is turned into real
//! config files ([`generate`]): one global config, one bootstrap per gateway, a lab CA and a
//! peer certificate per gateway. The [`supervisor`] runs every gateway and service instance as a
//! child process, puts a delay relay ([`relay`]) in front of every service instance, serves the
//! lab control API ([`control_api`]) and injects faults ([`faults`]: kill, stop, blackhole with
//! nftables, slow). [`client`] is the other side: what the `meridian lab` commands call.

pub mod certs;
pub mod client;
pub mod config;
pub mod control_api;
pub mod dns;
pub mod drill;
pub mod faults;
pub mod generate;
pub mod http1;
pub mod nft;
pub mod plane;
pub mod procs;
pub mod relay;
pub mod state;
pub mod status;
pub mod supervisor;

pub use config::{LabConfig, LabRegion, LabService, Target};
pub use generate::{Generated, generate};

/// Everything that can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab config is unusable.
    #[error("lab config: {0}")]
    Config(String),
    /// A file or socket operation failed; the message includes the cause.
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    /// The generated global config or a bootstrap did not validate (a bug in the generator).
    #[error("generated config is invalid:\n{0}")]
    Generated(String),
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A child process could not be started or did not become ready.
    #[error("{0}")]
    Process(String),
    /// An nftables command failed.
    #[error("nft: {0}")]
    Nft(String),
    /// A fault request names no known target or cannot be applied.
    #[error("{0}")]
    Fault(String),
    /// Talking to the lab control API failed.
    #[error("{0}")]
    Control(String),
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io { context: context.into(), error: source }
    }
}
