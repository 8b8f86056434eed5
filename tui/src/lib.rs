//! The live terminal dashboard (`kubectl mayastor tui`).

use std::time::Duration;

/// How the dashboard reaches the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// REST endpoint, e.g. `http://127.0.1.254:8081`.
    pub rest: String,
    /// Poll interval.
    pub interval: Duration,
    /// Timeout of one REST request.
    pub timeout: Duration,
}

/// Runs the dashboard until the user quits.
pub fn run(_opts: Options) -> anyhow::Result<()> {
    anyhow::bail!("the dashboard is not available yet")
}
