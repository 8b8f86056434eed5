//! Configuration and lifecycle of the `io-engine` process.
//!
//! Start-up: bind the gRPC listener first (a bad or busy address is a clear
//! error and a non-zero exit), then log `io-engine listening` and serve.
//! Shutdown: SIGTERM or SIGINT cancels a [`CancellationToken`]; the server
//! stops accepting connections and lets in-flight calls finish, then every
//! pool is flushed and exported ([`PoolRegistry::shutdown`]) and the process
//! exits 0. A second signal during that sequence exits at once (code 130).
//!
//! Nothing here needs hugepages or busy polling: the engine is an ordinary
//! tokio program.

use std::{io::IsTerminal, net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    grpc::{self, HostIdentity},
    pool::PoolRegistry,
};

/// Default gRPC endpoint: all addresses, port 10124 (as upstream).
pub const DEFAULT_GRPC_ENDPOINT: &str = "0.0.0.0:10124";

/// Format of the log lines written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Command line of the `io-engine` daemon.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "io-engine",
    version,
    about = "The io-engine storage node daemon: pools and replicas, managed over gRPC."
)]
pub struct Config {
    /// IP:PORT the gRPC API listens on.
    #[arg(short = 'g', long, value_name = "IP:PORT", default_value = DEFAULT_GRPC_ENDPOINT)]
    pub grpc_endpoint: SocketAddr,

    /// Name of this node (default: the host name).
    #[arg(short = 'N', long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Format of the log lines (stderr). Filter with RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Installs the global tracing subscriber: stderr, `RUST_LOG` filter
/// (default `info`), colours only on a terminal.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        eprintln!("io-engine: logging already initialised: {e}");
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    run_until(config, shutdown).await
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run_until(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.grpc_endpoint)
        .await
        .with_context(|| format!("cannot listen on gRPC endpoint {}", config.grpc_endpoint))?;
    let endpoint = listener
        .local_addr()
        .context("cannot read the bound gRPC address")?;
    let node_name = config.node_name.clone().unwrap_or_else(host_name);
    let registry = Arc::new(PoolRegistry::new(blockdev::OpenOptions::default()));

    info!(
        endpoint = %endpoint,
        node = %node_name,
        version = crate::VERSION,
        "io-engine listening"
    );

    let router = grpc::router(
        registry.clone(),
        HostIdentity {
            node_name,
            grpc_endpoint: endpoint,
        },
    );
    let served = router
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.clone().cancelled_owned(),
        )
        .await;

    info!("gRPC server stopped; exporting pools");
    registry.shutdown().await;
    served.context("gRPC server failed")?;
    info!("io-engine stopped");
    Ok(())
}

/// Cancels `shutdown` on the first SIGTERM/SIGINT and exits the process on
/// the second.
fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        let mut received = 0u32;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            received += 1;
            if received == 1 {
                info!(signal = name, "shutting down");
                shutdown.cancel();
            } else {
                warn!(signal = name, "second signal during shutdown; exiting now");
                std::process::exit(130);
            }
        }
    });
    Ok(())
}

/// The host name, from the kernel (no libc here), or `localhost`.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_and_flags() {
        let c = Config::parse_from(["io-engine"]);
        assert_eq!(c.grpc_endpoint.to_string(), DEFAULT_GRPC_ENDPOINT);
        assert_eq!(c.node_name, None);
        assert_eq!(c.log_format, LogFormat::Pretty);
        let c = Config::parse_from([
            "io-engine",
            "--grpc-endpoint",
            "127.0.1.2:4000",
            "--node-name",
            "n1",
            "--log-format",
            "json",
        ]);
        assert_eq!(c.grpc_endpoint.to_string(), "127.0.1.2:4000");
        assert_eq!(c.node_name.as_deref(), Some("n1"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(Config::try_parse_from(["io-engine", "-g", "nonsense"]).is_err());
    }

    #[test]
    fn host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }

    #[tokio::test]
    async fn busy_endpoint_is_a_clear_error() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let config = Config::parse_from(["io-engine", "-g", &addr.to_string()]);
        let err = run_until(config, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").starts_with(&format!("cannot listen on gRPC endpoint {addr}")));
    }
}
