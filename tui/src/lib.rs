//! The live terminal dashboard (`kubectl mayastor tui`): volumes and their
//! replica topology, rebuild progress, pool capacity, nodes, and the
//! events derived from successive polls, with confirmed actions (scale a
//! volume, cordon, uncordon and drain a node).
//!
//! Structure (ratatui + crossterm):
//! - [`snapshot`]: what one poll of the REST API returns;
//! - [`app`]: the pure state (`apply` a snapshot, `on_key` -> action);
//! - [`events`]: changes between two snapshots, as event lines;
//! - [`ui`]: `draw(frame, &App)`;
//! - [`poller`]: the tokio tasks that poll and run actions;
//! - [`bundle`]: the support-bundle key (a system bundle written in the
//!   background by the `supportability` crate, its gauge and path);
//! - [`terminal`]: raw mode and the alternate screen, restored on exit,
//!   on panic and on SIGTERM/SIGHUP/SIGINT.
//!
//! Threading: [`run`] blocks the calling thread, which draws and reads
//! keys; a private tokio runtime polls the API and runs actions, reporting
//! through a bounded channel the UI thread drains without waiting.
//! The cluster is reached only through the REST client.

#![forbid(unsafe_code)]

pub mod app;
pub mod bundle;
pub mod events;
pub mod format;
pub mod model;
pub mod poller;
pub mod rebuild;
pub mod snapshot;
pub mod stats;
pub mod terminal;
pub mod ui;

use std::time::Duration;

pub use app::{Action, App, Update, View};
pub use snapshot::Snapshot;
pub use ui::draw;

/// How the dashboard reaches the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// REST endpoint, e.g. `http://127.0.1.254:8081`.
    pub rest: String,
    /// Poll interval.
    pub interval: Duration,
    /// Timeout of one REST request.
    pub timeout: Duration,
    /// How the `b` key writes a system support bundle (`None`: the key
    /// says bundles are not available).
    pub bundle: Option<supportability::DumpOptions>,
}

/// Runs the dashboard until the user quits (or SIGTERM, SIGHUP, SIGINT).
pub fn run(opts: Options) -> anyhow::Result<()> {
    terminal::run(opts)
}
