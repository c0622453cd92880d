//! `meridian schema`: the JSON Schema of the config documents.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print the bootstrap schema instead of the global config schema.
    #[arg(long)]
    bootstrap: bool,
    /// Write both schemas into this directory (global.schema.json, bootstrap.schema.json).
    #[arg(long)]
    write: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let global = serde_json::to_string_pretty(&meridian_model::global_schema())?;
    let bootstrap = serde_json::to_string_pretty(&meridian_model::bootstrap_schema())?;
    if let Some(dir) = a.write {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("global.schema.json"), format!("{global}\n"))?;
        std::fs::write(dir.join("bootstrap.schema.json"), format!("{bootstrap}\n"))?;
        println!("wrote {}/global.schema.json and bootstrap.schema.json", dir.display());
    } else if a.bootstrap {
        println!("{bootstrap}");
    } else {
        println!("{global}");
    }
    Ok(ExitCode::SUCCESS)
}
