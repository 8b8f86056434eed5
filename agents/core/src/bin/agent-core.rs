//! `agent-core`: parses its flags, starts tracing and runs
//! [`agent_core::run`] until SIGTERM or SIGINT (which release the leader
//! lease; exit 0). A holder that loses the lease stops at once, so that two
//! instances never reconcile together: it exits with code 2, or with
//! `--on-lease-loss restart` executes itself again (same PID, fresh state)
//! and waits for the lease like a new instance.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use agent_core::{
    agent::Ended,
    config::{Args, OnLeaseLoss},
};
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
    let on_loss = args.on_lease_loss;
    match agent_core::run(args, stop).await {
        Ok(Ended::Stopped) => Ok(ExitCode::SUCCESS),
        // At once: no destructor may delay the exit (or the new image).
        Ok(Ended::LeaseLost) => {
            if on_loss == OnLeaseLoss::Restart {
                restart_in_place();
            }
            std::process::exit(2)
        }
        // One line, as the other daemons: what went wrong, not a backtrace.
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("agent-core: error: {error:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Replaces this process with the same binary and arguments: every thread,
/// task and open connection of the old leader ends with the old image. It
/// returns only when that fails (the binary was removed, say), and the
/// caller then exits.
fn restart_in_place() {
    use std::os::unix::process::CommandExt;
    let mut argv = std::env::args_os();
    let arg0 = argv.next().unwrap_or_else(|| "agent-core".into());
    tracing::warn!("restarting in place to wait for the lease again");
    // The running image itself, even if its file was replaced meanwhile.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(argv)
        .exec();
    tracing::error!(error = %error, "cannot restart in place: exiting");
}
