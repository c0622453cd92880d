//! `meridian routing-control list|set`: routing controls on the control plane (manual failover,
//! as Route 53 ARC). A change the config's safety rules forbid is refused, naming the rule.

use std::process::ExitCode;

use super::client::{Client, ServerArgs, ago, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Every routing control of the current config: state, the version of its last change, when.
    List(ListArgs),
    /// Switch a routing control on or off.
    Set(SetArgs),
}

#[derive(clap::Args)]
struct ListArgs {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct SetArgs {
    /// The control's name (`dns.routing_controls.controls[].name`).
    name: String,
    state: State,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum State {
    On,
    Off,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        Sub::List(l) => list(l),
        Sub::Set(s) => set(s),
    }
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let v = c.get("/v1/routing-controls")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = meridian_control::unix_ms(std::time::SystemTime::now());
    let rows: Vec<Vec<String>> = v["controls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let switches = match (c["region"].as_str(), c["record_set"].as_str()) {
                (Some(r), Some(rs)) => format!("{r} in {rs}"),
                (Some(r), None) => r.to_string(),
                _ => "-".into(),
            };
            let changed = c["changed_at_ms"].as_u64().unwrap_or(0);
            vec![
                c["name"].as_str().unwrap_or("").to_string(),
                if c["on"].as_bool().unwrap_or(true) { "on" } else { "OFF" }.to_string(),
                c["version"].to_string(),
                if changed == 0 { "never".into() } else { ago(now, changed) },
                switches,
            ]
        })
        .collect();
    println!("controls version {}", v["version"]);
    print!("{}", table(&["NAME", "STATE", "VERSION", "LAST CHANGED", "SWITCHES"], &rows));
    Ok(ExitCode::SUCCESS)
}

fn set(a: SetArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let state = match a.state {
        State::On => "on",
        State::Off => "off",
    };
    let body = serde_json::to_vec(&serde_json::json!({ "state": state }))?;
    let path = format!("/v1/routing-controls/{}", a.name);
    let v = c.call("PUT", &path, &[("content-type", "application/json".into())], Some(body))?.ok()?;
    if v["changed"].as_bool() == Some(true) {
        println!("{} {state} (controls version {})", a.name, v["version"]);
    } else {
        println!("{} already {state} (controls version {})", a.name, v["version"]);
    }
    Ok(ExitCode::SUCCESS)
}
