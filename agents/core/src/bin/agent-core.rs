//! `agent-core`: parses its flags, starts tracing and runs
//! [`agent_core::run`] until SIGTERM or SIGINT (which release the leader
//! lease; exit 0). A holder that loses the lease exits at once with code 2,
//! so that two instances never reconcile together.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use agent_core::{agent::Ended, config::Args};
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    mayastor_common::log::init_tracing("agent-core", args.log_format);
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            stop.cancel();
        });
    }
    match agent_core::run(args, stop).await {
        Ok(Ended::Stopped) => Ok(ExitCode::SUCCESS),
        // At once: no destructor may delay the exit.
        Ok(Ended::LeaseLost) => std::process::exit(2),
        // One line, as the other daemons: what went wrong, not a backtrace.
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("agent-core: error: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}
