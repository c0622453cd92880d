//! Config lifecycle against the control plane: `diff`, `apply`, `history`, `rollback`,
//! `export`, `import`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::client::{Client, ServerArgs, ago, table};

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The global config file.
    #[arg(short = 'f', long)]
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The global config file.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// A comment stored with the version.
    #[arg(short = 'm', long, default_value = "")]
    message: String,
    /// Staged rollout: only these regions (comma-separated) get the new version; every other
    /// region is pinned at the version it is on (`meridian rollout promote` releases them).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Wait until every expected (and every live) node the version goes to has acked it.
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = meridian_core::parse_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// `config` or `drains`.
    #[arg(long, default_value = "config")]
    kind: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The version whose content becomes a new version.
    #[arg(value_name = "VERSION", id = "target_version")]
    target_version: u64,
    /// Only these regions (comma-separated) get the new version; the others stay where they are.
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A backup written by `meridian export`.
    file: PathBuf,
    /// Write the backup's content as new versions instead of restoring its history (needed
    /// when the backup is older than the control plane's current versions).
    #[arg(long)]
    as_new_version: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `?regions=…` of a staged write (empty: every region).
fn regions_query(regions: &[String]) -> String {
    if regions.is_empty() { String::new() } else { format!("?regions={}", regions.join(",")) }
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

/// Plans a file; prints every error with its path when it is invalid.
fn plan(c: &Client, file: &PathBuf) -> anyhow::Result<Option<Value>> {
    let a = c.call("POST", "/v1/config/plan", &[], Some(read(file)?.into_bytes()))?;
    if a.status == 422 {
        let errors = a.body["errors"].as_array().cloned().unwrap_or_default();
        eprintln!("{}: {} error(s)", file.display(), errors.len());
        for e in errors {
            let (p, m) = (e["path"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""));
            if p.is_empty() { eprintln!("  {m}") } else { eprintln!("  {p}: {m}") }
        }
        return Ok(None);
    }
    a.ok().map(Some)
}

pub fn diff(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let Some(p) = plan(&c, &a.file)? else { return Ok(ExitCode::FAILURE) };
    println!("against version {}:", p["current_version"]);
    print!("{}", p["text"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}

pub fn apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let Some(p) = plan(&c, &a.file)? else { return Ok(ExitCode::FAILURE) };
    print!("{}", p["text"].as_str().unwrap_or(""));
    let expected = p["current_version"].as_u64().unwrap_or(0);
    let headers =
        [("x-meridian-expected-version", expected.to_string()), ("x-meridian-comment", a.message.clone())];
    let path = format!("/v1/config{}", regions_query(&a.regions));
    let ans = c.call("POST", &path, &headers, Some(read(&a.file)?.into_bytes()))?;
    if ans.status == 409 && ans.body["current_rollout_version"].is_u64() {
        eprintln!(
            "conflict: the rollout changed meanwhile (see `meridian rollout status`); nothing applied, try again"
        );
        return Ok(ExitCode::FAILURE);
    }
    if ans.status == 409 {
        eprintln!(
            "conflict: the config changed since the plan (planned against version {expected}, now {}); run `meridian diff` again",
            ans.body["current_version"]
        );
        return Ok(ExitCode::FAILURE);
    }
    let v = ans.ok()?;
    let version = v["version"].as_u64().unwrap_or(0);
    if v["changed"] == false {
        println!("no changes: version {version} is current");
    } else {
        println!("applied version {version} (hash {})", v["hash"].as_str().unwrap_or(""));
        if let Some(r) = v["regions"].as_array() {
            let r: Vec<&str> = r.iter().filter_map(|x| x.as_str()).collect();
            println!(
                "to regions {} only; the others stay where they were (`meridian rollout status`, `meridian rollout promote`)",
                r.join(", ")
            );
        }
    }
    if a.wait {
        return super::fleet_cli::wait_for(&c, "config", version, a.timeout);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let h = c.get(&format!("/v1/config/history?kind={}", a.kind))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let rows: Vec<Vec<String>> = h["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            vec![
                r["version"].to_string(),
                r["hash"].as_str().unwrap_or("").chars().take(12).collect(),
                ago(now, r["created_at_ms"].as_u64().unwrap_or(0)),
                r["author"].as_str().unwrap_or("").to_string(),
                r["comment"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    print!("{}", table(&["VERSION", "HASH", "CREATED", "AUTHOR", "COMMENT"], &rows));
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(a: RollbackArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let path = format!("/v1/config/rollback/{}{}", a.target_version, regions_query(&a.regions));
    let v = c.call("POST", &path, &[], None)?.ok()?;
    if v["changed"] == false {
        println!(
            "no changes: version {} already has the content of version {}",
            v["version"], a.target_version
        );
    } else {
        println!("rolled back: version {} has the content of version {}", v["version"], a.target_version);
        if !a.regions.is_empty() {
            println!("to regions {} only", a.regions.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    println!("{}", serde_json::to_string_pretty(&c.get("/v1/export")?)?);
    Ok(ExitCode::SUCCESS)
}

pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.server)?;
    let mode = if a.as_new_version { "new_version" } else { "restore" };
    let v =
        c.call("POST", &format!("/v1/import?mode={mode}"), &[], Some(read(&a.file)?.into_bytes()))?.ok()?;
    println!(
        "imported: config version {}, drains version {}",
        v["versions"]["config"], v["versions"]["drains"]
    );
    Ok(ExitCode::SUCCESS)
}
