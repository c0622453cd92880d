//! `meridian rollout status|promote|pin`: staged rollout, a target config version per region.
//! A staged change itself is `meridian apply --regions` / `meridian rollback --regions`.

use std::process::ExitCode;

use meridian_control::control::{RolloutChange, RolloutStatus};

use super::client::{Client, ServerArgs, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: RolloutCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand)]
enum RolloutCommand {
    /// Per region: the config version it gets (pinned or the newest), its nodes on it, lag.
    Status {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unpin regions: they follow the newest config version (every region without --regions).
    Promote {
        /// Comma-separated regions.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// Hold REGION on config VERSION (not below the version it is on: nodes refuse a lower
    /// version; take a region back with `meridian rollback VERSION --regions REGION`).
    Pin {
        region: String,
        /// (Not named `version`: that id is `--version`'s.)
        #[arg(value_name = "VERSION", id = "target_version")]
        target_version: u64,
    },
}

/// The current rollout version, so a change is compared on what the operator's command read.
fn rollout_version(c: &Client) -> anyhow::Result<u64> {
    Ok(c.get("/v1/rollout")?["rollout_version"].as_u64().unwrap_or(0))
}

fn changed(c: &Client, method: &str, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<ExitCode> {
    let h = [("x-meridian-expected-version", rollout_version(c)?.to_string())];
    let ans = c.call(method, path, &h, body)?;
    if ans.status == 409 && ans.body["current_rollout_version"].is_u64() {
        eprintln!("conflict: the rollout changed meanwhile; run `meridian rollout status` and try again");
        return Ok(ExitCode::FAILURE);
    }
    let ch: RolloutChange = serde_json::from_value(ans.ok()?)?;
    let pins: Vec<String> = ch.pins.iter().map(|(r, v)| format!("{r} at {v}")).collect();
    let pins = if pins.is_empty() { "none: every region follows the newest".into() } else { pins.join(", ") };
    if ch.changed {
        println!("rollout version {}; pinned: {pins}", ch.rollout_version);
    } else {
        println!("no change (rollout version {}); pinned: {pins}", ch.rollout_version);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    match a.command {
        RolloutCommand::Status { json: true } => {
            println!("{}", serde_json::to_string_pretty(&c.get("/v1/rollout")?)?);
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Status { json: false } => {
            let st: RolloutStatus = serde_json::from_value(c.get("/v1/rollout")?)?;
            println!("newest config version {}, rollout version {}", st.latest, st.rollout_version);
            let rows: Vec<Vec<String>> = st
                .regions
                .iter()
                .map(|r| {
                    vec![
                        r.region.clone(),
                        r.target.to_string(),
                        r.pinned.map_or("- (newest)".into(), |p| format!("pinned at {p}")),
                        format!("{}/{}", r.on_target, r.nodes),
                        r.lag.to_string(),
                    ]
                })
                .collect();
            print!("{}", table(&["REGION", "TARGET", "PIN", "ON TARGET", "LAG"], &rows));
            Ok(ExitCode::SUCCESS)
        }
        RolloutCommand::Promote { regions } => {
            let path = if regions.is_empty() {
                "/v1/rollout/promote".to_string()
            } else {
                format!("/v1/rollout/promote?regions={}", regions.join(","))
            };
            changed(&c, "POST", &path, None)
        }
        RolloutCommand::Pin { region, target_version } => {
            let body = serde_json::to_vec(&serde_json::json!({ "version": target_version }))?;
            changed(&c, "PUT", &format!("/v1/rollout/pins/{region}"), Some(body))
        }
    }
}
