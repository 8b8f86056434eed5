//! `agent-ha-node`: parses its flags, starts tracing and runs
//! [`agent_ha_node::agent::run`] until SIGTERM or SIGINT.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use agent_ha_node::config::Args;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    mayastor_common::log::init_tracing("agent-ha-node", args.log_format);
    let stop = CancellationToken::new();
    mayastor_common::signal::cancel_on_signal(stop.clone())?;
    match agent_ha_node::agent::run(args, stop).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("agent-ha-node: error: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
