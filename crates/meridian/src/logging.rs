//! Process logging: human text by default, JSON lines for machines. `MERIDIAN_LOG` (or
//! `RUST_LOG`) sets the filter, default `info`.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn init(format: Format) {
    let filter = std::env::var("MERIDIAN_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        Format::Text => b.init(),
        Format::Json => b.json().flatten_event(true).init(),
    }
}
