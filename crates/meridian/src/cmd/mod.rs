pub mod checker;
pub mod client;
pub mod config_cli;
pub mod control;
pub mod control_flags;
pub mod director;
pub mod drill;
pub mod fleet_cli;
pub mod gateway;
pub mod lab;
pub mod lab_dig;
pub mod rollout_cli;
pub mod routing_control_cli;
pub mod schema;
pub mod token_cli;
pub mod up;
pub mod validate;

/// A tokio runtime with `workers` worker threads (default: one per core). One worker gets a
/// current-thread runtime: no work-stealing overhead.
pub fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let n = workers.unwrap_or_else(cores);
    let rt = if n <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?
    };
    Ok(rt)
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
