//! `agent-ha-cluster`: parses its flags, starts tracing and runs
//! [`agent_ha_cluster::agent::run`] until SIGTERM or SIGINT (exit 0). A
//! holder that loses the store lease exits with code 2 at once.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use agent_ha_cluster::{agent::Ended, config::Args};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    mayastor_common::log::init_tracing("agent-ha-cluster", args.log_format);
    let stop = CancellationToken::new();
    mayastor_common::signal::cancel_on_signal(stop.clone())?;
    match agent_ha_cluster::agent::run(args, stop).await {
        Ok(Ended::Stopped) => Ok(ExitCode::SUCCESS),
        Ok(Ended::LeaseLost) => std::process::exit(2),
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("agent-ha-cluster: error: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
