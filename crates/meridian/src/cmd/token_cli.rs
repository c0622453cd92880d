//! `meridian token create|list|revoke`: admin-API and node tokens on the control plane.

use std::process::ExitCode;

use super::client::{Client, ServerArgs, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TokenCommand,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// Create a token; prints its plaintext once (only its hash is stored).
    Create {
        /// A unique name, shown in the audit log.
        name: String,
        /// For the admin API: `viewer`, `operator` or `admin`.
        #[arg(long, conflicts_with_all = ["node", "region"], required_unless_present = "node")]
        role: Option<String>,
        /// For a node: its id (with `--region`); the token can only stream and ack as it.
        #[arg(long, requires = "region")]
        node: Option<String>,
        #[arg(long, requires = "node")]
        region: Option<String>,
    },
    /// List tokens (names and kinds; never a secret).
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    match a.command {
        TokenCommand::Create { name, role, node, region } => {
            let body = match role {
                Some(role) => serde_json::json!({"name": name, "role": role}),
                None => serde_json::json!({"name": name, "node": node, "region": region}),
            };
            let v = c.call("POST", "/v1/tokens", &[], Some(serde_json::to_vec(&body)?))?.ok()?;
            println!("{}", v["token"].as_str().unwrap_or(""));
        }
        TokenCommand::List => {
            let v = c.get("/v1/tokens")?;
            let rows: Vec<Vec<String>> = v["tokens"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|t| {
                    let k = &t["kind"];
                    let what = match k["type"].as_str() {
                        Some("node") => format!(
                            "node {} in {}",
                            k["node"].as_str().unwrap_or(""),
                            k["region"].as_str().unwrap_or("")
                        ),
                        _ => k["role"].as_str().unwrap_or("").to_string(),
                    };
                    vec![t["name"].as_str().unwrap_or("").to_string(), what]
                })
                .collect();
            print!("{}", table(&["NAME", "KIND"], &rows));
        }
        TokenCommand::Revoke { name } => {
            c.call("DELETE", &format!("/v1/tokens/{name}"), &[], None)?.ok()?;
            println!("revoked {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
