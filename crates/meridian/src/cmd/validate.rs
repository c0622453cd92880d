//! `meridian validate -f FILE`: every error with its path; exit 1 when there is any.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The file to check: a global config, or a bootstrap (recognised by its `node:` key).
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Treat the file as a bootstrap even without a `node:` key.
    #[arg(long)]
    bootstrap: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.file.display()))?;
    let is_bootstrap = a.bootstrap || text.lines().any(|l| l.starts_with("node:"));
    let result = if is_bootstrap {
        meridian_model::parse_bootstrap(&text).map(|_| "bootstrap".to_string())
    } else {
        meridian_model::parse_global(&text).map(|v| format!("global config, hash {}", v.hash()))
    };
    match result {
        Ok(what) => {
            println!("{}: valid {what}", a.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", a.file.display(), errors.0.len());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
