//! `mayastor-store`: parses the command line, starts logging and runs
//! [`store::daemon`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use store::daemon;

#[tokio::main]
async fn main() -> ExitCode {
    let config = daemon::Config::parse();
    daemon::init_tracing(config.log_format);
    match daemon::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "mayastor-store failed");
            ExitCode::FAILURE
        }
    }
}
