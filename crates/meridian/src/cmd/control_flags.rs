//! The flags with which a node that is not a gateway (director, checker) follows the control
//! plane instead of a file; gateways name the same things in their bootstrap file.

use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Clone)]
pub struct ControlArgs {
    /// Take the config from the control plane instead of a file: its URLs, comma-separated,
    /// tried in order, e.g. `http://127.0.0.1:9800,http://10.0.2.5:9800`.
    #[arg(long, value_delimiter = ',')]
    pub control: Vec<String>,
    /// With `--control`: the file holding this node's token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// With `--control`: this node's id (its token is bound to it); for a checker, one
    /// vantage point.
    #[arg(long)]
    pub node_id: Option<String>,
    /// With `--control`: this node's region (its token is bound to it); a checker probes from
    /// it.
    #[arg(long)]
    pub region: Option<String>,
    /// With `--control`: prefix of the last-known-good files (`PATH.config`; a director also
    /// keeps `PATH.controls`); the node starts from them when no control instance answers.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// With `--control`: how long to wait at start for a config from the control plane before
    /// starting from the last-known-good snapshot, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = meridian_core::parse_duration)]
    pub initial_wait: Duration,
}

impl ControlArgs {
    /// Whether `--control` was given.
    pub fn given(&self) -> bool {
        !self.control.is_empty()
    }

    /// The settings, when `--control` is given with every flag it needs (the director's
    /// [`ControlSpec`](meridian_director::ControlSpec), which the checker reads too).
    pub fn required(&self) -> anyhow::Result<meridian_director::ControlSpec> {
        let (Some(token_file), Some(node_id), Some(region), Some(snapshot)) =
            (self.token_file.clone(), self.node_id.clone(), self.region.clone(), self.snapshot.clone())
        else {
            anyhow::bail!("--control needs --token-file, --node-id, --region and --snapshot");
        };
        let mut spec =
            meridian_director::ControlSpec::new(self.control.clone(), token_file, node_id, region, snapshot);
        spec.initial_wait = self.initial_wait;
        Ok(spec)
    }
}
