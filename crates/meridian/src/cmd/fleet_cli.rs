//! The fleet from the control plane: `status`, `drain`, `undrain`, and `apply --wait`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use meridian_control::control::Status;
use meridian_sync::protocol::Kind;

use super::client::{Client, ServerArgs, ago, table};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct DrainArgs {
    /// `REGION` or `SERVICE@REGION`.
    target: String,
    #[command(flatten)]
    server: ServerArgs,
}

fn status_of(c: &Client) -> anyhow::Result<Status> {
    Ok(serde_json::from_value(c.get("/v1/status")?)?)
}

pub fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c.get("/v1/status")?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let st = status_of(&c)?;
    let cur = |k: Kind| st.current.get(&k).map_or("-".to_string(), |c| c.version.to_string());
    println!(
        "deployment {}: config version {}, drains version {}",
        st.deployment,
        cur(Kind::Config),
        cur(Kind::Drains)
    );
    if !st.pins.is_empty() {
        let pins: Vec<String> = st.pins.iter().map(|(r, v)| format!("{r} at {v}")).collect();
        println!("staged rollout: pinned {} (other regions follow the newest)", pins.join(", "));
    }
    let latest = st.current.get(&Kind::Config).map_or(0, |c| c.version);
    let rows: Vec<Vec<String>> = st
        .nodes
        .iter()
        .map(|n| {
            // Lag is against the node's target: for config, its region's rollout target.
            let kind = |k: Kind| {
                n.kinds.get(&k).map_or("-".to_string(), |s| {
                    let held = if k == Kind::Config && s.target < latest {
                        format!("target {}, ", s.target)
                    } else {
                        String::new()
                    };
                    match &s.nack {
                        Some(x) => {
                            format!("{} ({held}lag {}, nack {}: {})", s.applied, s.lag, x.version, x.error)
                        }
                        None => format!("{} ({held}lag {})", s.applied, s.lag),
                    }
                })
            };
            let state = if n.missing {
                "MISSING"
            } else if !n.live {
                "gone"
            } else if n.stale {
                "stale"
            } else {
                "ok"
            };
            vec![
                n.region.clone(),
                n.id.clone(),
                if n.role.is_empty() { "-".into() } else { n.role.clone() },
                state.to_string(),
                kind(Kind::Config),
                kind(Kind::Drains),
                n.last_seen_ms.map_or("never".to_string(), |t| ago(st.now_ms, t)),
            ]
        })
        .collect();
    print!("{}", table(&["REGION", "NODE", "ROLE", "STATE", "CONFIG", "DRAINS", "LAST SEEN"], &rows));
    Ok(ExitCode::SUCCESS)
}

fn set_drain(a: DrainArgs, method: &str) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let v = c.call(method, &format!("/v1/drains/{}", a.target), &[], None)?.ok()?;
    let what = if method == "PUT" { "drained" } else { "undrained" };
    if v["changed"] == true {
        println!("{} {what} (drains version {})", a.target, v["version"]);
    } else {
        println!("{} already {what} (drains version {})", a.target, v["version"]);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn drain(a: DrainArgs) -> anyhow::Result<ExitCode> {
    set_drain(a, "PUT")
}

pub fn undrain(a: DrainArgs) -> anyhow::Result<ExitCode> {
    set_drain(a, "DELETE")
}

/// Polls the status until every expected or live node that `version` of `kind` goes to (for a
/// staged config: the nodes of the regions whose target it is) acked it; fails on a nack of that
/// version (or later) or at the timeout.
pub fn wait_for(c: &Client, kind: &str, version: u64, timeout: Duration) -> anyhow::Result<ExitCode> {
    let kind: Kind = serde_json::from_value(serde_json::Value::String(kind.into()))?;
    let start = Instant::now();
    loop {
        let st = status_of(c)?;
        let nodes: Vec<_> = st
            .nodes
            .iter()
            .filter(|n| n.expected || n.live)
            .filter(|n| n.kinds.get(&kind).is_none_or(|k| k.target >= version))
            .collect();
        for n in &nodes {
            if let Some(x) = n.kinds.get(&kind).and_then(|k| k.nack.as_ref()).filter(|x| x.version >= version)
            {
                eprintln!("node {} ({}) refused version {}: {}", n.id, n.region, x.version, x.error);
                return Ok(ExitCode::FAILURE);
            }
        }
        let behind: Vec<String> = nodes
            .iter()
            .filter(|n| n.kinds.get(&kind).is_none_or(|k| k.applied < version))
            .map(|n| format!("{} ({})", n.id, n.region))
            .collect();
        if behind.is_empty() {
            println!(
                "version {version} acked by {} node(s) in {} ms",
                nodes.len(),
                start.elapsed().as_millis()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if start.elapsed() >= timeout {
            eprintln!("timeout after {:?}: not yet on version {version}: {}", timeout, behind.join(", "));
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
