//! Configuration and lifecycle of the `mayastor-store` process: an
//! [`EmbeddedStore`] served over the etcd API ([`serve_embedded`]), so that
//! the agents and engines of one machine can share it as they would share
//! an etcd.
//!
//! Start-up: open (and recover) the store, bind the listener (a bad or busy
//! address is a clear error and exit code 1), log `mayastor-store
//! listening`. Shutdown: SIGTERM or SIGINT ends every watch and keep-alive
//! stream, lets unary calls finish, then closes the store (final flush)
//! and exits 0. A second signal exits at once (code 130); nothing
//! acknowledged is lost either way, since every write is fsynced before it
//! is acknowledged.

pub use mayastor_common::log::LogFormat;
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{serve_embedded, EmbeddedOptions, EmbeddedStore};

/// Default listen address: etcd's client port, on loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2379";

/// Command line of `mayastor-store`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    version = mayastor_version::version(),
    name = "mayastor-store",
    about = "The embedded control-plane store, served over the etcd v3 API (KV, Watch, Lease)."
)]
pub struct Config {
    /// IP:PORT the etcd API listens on.
    #[arg(long, value_name = "IP:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Directory holding the store's log and snapshot (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Compact the log into a snapshot once it holds this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = EmbeddedOptions::default().snapshot_threshold_bytes)]
    pub snapshot_threshold_bytes: u64,

    /// Format of the log lines (stderr). Filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Installs the global tracing subscriber (stderr, `RUST_LOG`, colours
/// only on a terminal).
pub fn init_tracing(format: LogFormat) {
    mayastor_common::log::init_tracing("mayastor-store", format);
}

/// Runs the store until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    mayastor_common::signal::cancel_on_signal(shutdown.clone())
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    run_until(config, shutdown).await
}

/// Runs the store until `shutdown` is cancelled.
pub async fn run_until(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let options = EmbeddedOptions {
        snapshot_threshold_bytes: config.snapshot_threshold_bytes,
        ..EmbeddedOptions::default()
    };
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || EmbeddedStore::open_with(&dir, options))
        .await
        .context("store open task failed")?
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let endpoint = listener
        .local_addr()
        .context("cannot read the bound address")?;
    info!(
        endpoint = %endpoint,
        data_dir = %config.data_dir.display(),
        "mayastor-store listening"
    );
    let served = serve_embedded(store.clone(), listener, shutdown.cancelled_owned()).await;
    // Closing joins the log writer thread after its final flush.
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .context("store close task failed")?;
    served.context("gRPC server failed")?;
    info!("mayastor-store stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_and_flags() {
        let c = Config::parse_from(["mayastor-store", "--data-dir", "/tmp/x"]);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.log_format, LogFormat::Pretty);
        assert!(Config::try_parse_from(["mayastor-store"]).is_err());
        let c = Config::parse_from([
            "mayastor-store",
            "--listen",
            "127.0.1.1:0",
            "--data-dir",
            "d",
            "--snapshot-threshold-bytes",
            "4096",
            "--log-format",
            "json",
        ]);
        assert_eq!(c.snapshot_threshold_bytes, 4096);
        assert_eq!(c.log_format, LogFormat::Json);
    }
}
