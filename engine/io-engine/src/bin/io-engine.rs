//! The `io-engine` daemon: parses the command line, starts logging and runs
//! [`io_engine::daemon`].

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use io_engine::daemon;

#[tokio::main]
async fn main() -> ExitCode {
    let config = daemon::Config::parse();
    daemon::init_tracing(config.log_format);
    match daemon::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "io-engine failed");
            ExitCode::FAILURE
        }
    }
}
