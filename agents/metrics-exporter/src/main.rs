//! `metrics-exporter`: parses flags, starts tracing and serves
//! [`metrics_exporter::serve`] until SIGTERM or SIGINT.

#![forbid(unsafe_code)]

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use io_engine_api::names::{IO_ENGINE_GRPC_PORT, METRICS_PORT};
use mayastor_common::{
    duration::parse_positive as parse_duration, log::LogFormat, signal::shutdown_signal,
};
use metrics_exporter::{serve, EngineClient, ExporterConfig};

#[derive(Debug, Parser)]
#[command(
    version = mayastor_version::version(),
    name = "metrics-exporter",
    about = "Serves the pool and I/O statistics of the local io-engine as Prometheus text on GET /metrics"
)]
struct Args {
    /// Value of the `node` label [default: the node name the engine reports].
    #[arg(long, value_name = "NAME", env = "MY_NODE_NAME")]
    node_name: Option<String>,

    /// gRPC endpoint of the local io-engine (IP:PORT or http://HOST:PORT).
    #[arg(long, value_name = "ENDPOINT", default_value_t = format!("127.0.0.1:{IO_ENGINE_GRPC_PORT}"))]
    engine_endpoint: String,

    /// Address the HTTP server listens on.
    #[arg(long, value_name = "IP:PORT", default_value_t = SocketAddr::from(([0, 0, 0, 0], METRICS_PORT)))]
    listen: SocketAddr,

    /// How long one scrape waits for the engine (e.g. 5s); a later answer
    /// gives a page without figures.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    engine_timeout: Duration,

    /// Log output on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mayastor_common::log::init_tracing("metrics-exporter", args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("metrics-exporter: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("metrics-exporter: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(args: Args) -> anyhow::Result<()> {
    let engine = EngineClient::new(&args.engine_endpoint, args.engine_timeout)?;
    let node_name = args.node_name.filter(|n| !n.trim().is_empty());
    let shutdown = shutdown_signal()?;
    serve(args.listen, ExporterConfig { node_name, engine }, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let args = Args::try_parse_from(["metrics-exporter"]).expect("defaults");
        assert_eq!(args.engine_endpoint, "127.0.0.1:10124");
        assert_eq!(args.listen.to_string(), "0.0.0.0:9502");
        assert_eq!(args.engine_timeout, Duration::from_secs(5));
        let args = Args::try_parse_from([
            "metrics-exporter",
            "--node-name",
            "node-1",
            "--engine-endpoint",
            "127.0.145.1:10124",
            "--listen",
            "127.0.145.1:9502",
            "--log-format",
            "json",
        ])
        .expect("flags");
        assert_eq!(args.node_name.as_deref(), Some("node-1"));
        assert_eq!(args.listen.to_string(), "127.0.145.1:9502");
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["metrics-exporter", "--listen", "9502"]).is_err());
        assert!(Args::try_parse_from(["metrics-exporter", "--engine-timeout", "0s"]).is_err());
    }
}
