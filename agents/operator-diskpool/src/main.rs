//! `operator-diskpool`: the DiskPool operator. Parses flags, starts
//! tracing, connects to the Kubernetes API (in-cluster, `KUBECONFIG` or
//! `--kube-config-path`) and to the REST API, and runs
//! [`operator_diskpool::controller::run`] until SIGTERM or SIGINT.

#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use mayastor_common::{
    duration::parse_positive as parse_duration, log::LogFormat, signal::shutdown_signal,
};
use openapi::{RestClient, RestClientOptions};
use operator_diskpool::controller::{run, OperatorConfig};

#[derive(Debug, Parser)]
#[command(
    version = mayastor_version::version(),
    name = "operator-diskpool",
    about = "The DiskPool operator: makes the pools of DiskPool resources exist and keeps their status"
)]
struct Args {
    /// REST API endpoint of the control plane.
    #[arg(
        short = 'e',
        long,
        visible_alias = "rest-endpoint",
        value_name = "URL",
        default_value = "http://api-rest:8081"
    )]
    endpoint: String,

    /// Namespace of the DiskPool resources to manage.
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        default_value = "mayastor"
    )]
    namespace: String,

    /// Resync period of each DiskPool's status (e.g. 30s, 1m).
    #[arg(short = 'i', long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    interval: Duration,

    /// Timeout of one REST call (e.g. 5s).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// File holding the bearer token the REST API asks for (or set
    /// REST_BEARER_TOKEN).
    #[arg(long, value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,

    /// Kubeconfig to use [default: in-cluster config, else KUBECONFIG or
    /// ~/.kube/config].
    #[arg(short = 'k', long, value_name = "FILE")]
    kube_config_path: Option<PathBuf>,

    /// Log output on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mayastor_common::log::init_tracing("operator-diskpool", args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("operator-diskpool: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("operator-diskpool: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn bearer_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the bearer token file {}", path.display()))?,
        None => match std::env::var("REST_BEARER_TOKEN") {
            Ok(token) => token,
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the bearer token is empty");
    Ok(Some(token))
}

async fn kube_client(path: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("bad kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (in-cluster, KUBECONFIG or ~/.kube/config)")?,
    };
    kube::Client::try_from(config).context("cannot set up the Kubernetes client")
}

async fn start(args: Args) -> anyhow::Result<()> {
    let rest = RestClient::new(
        &args.endpoint,
        RestClientOptions {
            timeout: args.request_timeout,
            bearer_token: bearer_token(args.bearer_token_file.as_deref())?,
            ..RestClientOptions::default()
        },
    )
    .with_context(|| format!("bad REST endpoint {}", args.endpoint))?;
    let kube = kube_client(args.kube_config_path.as_deref()).await?;
    let shutdown = shutdown_signal()?;
    let config = OperatorConfig {
        kube,
        rest,
        namespace: args.namespace,
        interval: args.interval,
        instance: std::env::var("MY_POD_NAME").ok(),
    };
    run(config, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let args = Args::try_parse_from(["operator-diskpool"]).expect("defaults");
        assert_eq!(args.endpoint, "http://api-rest:8081");
        assert_eq!(args.namespace, "mayastor");
        assert_eq!(args.interval, Duration::from_secs(30));
        let args = Args::try_parse_from([
            "operator-diskpool",
            "-e",
            "http://127.0.0.1:8081",
            "-n",
            "storage",
            "--interval",
            "5s",
        ])
        .expect("flags");
        assert_eq!(args.endpoint, "http://127.0.0.1:8081");
        assert_eq!(args.namespace, "storage");
        assert_eq!(args.interval, Duration::from_secs(5));
        let alias = Args::try_parse_from(["operator-diskpool", "--rest-endpoint", "http://x:1"])
            .expect("alias");
        assert_eq!(alias.endpoint, "http://x:1");
        assert!(Args::try_parse_from(["operator-diskpool", "--interval", "0s"]).is_err());
    }
}
