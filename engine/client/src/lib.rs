//! `io-engine-client`: the command-line client of the io-engine gRPC API.
//!
//! It manages the pools and replicas of one io-engine (including sharing
//! replicas over NVMe/TCP), its nexuses (volume targets: create, publish,
//! children, online/offline/fault) and their rebuilds, and shows the node's
//! host information, printing upstream's client tables or, with `-o json`,
//! pretty JSON for scripts. Errors are one line on stderr
//! (`error: pool 'x' not found (NotFound)`) and exit code 1; usage errors
//! (including nexus and rebuild arguments refused before any request: a
//! malformed uuid or child URI, a size of 0, an unknown child action) exit 2.
//!
//! Dependency rule: this crate talks to the engine only through the
//! `io-engine-api` contract.
//!
//! Threading model: one current-thread tokio runtime per invocation, one
//! request at a time.

#![forbid(unsafe_code)]

pub mod cli;
mod commands;
pub mod output;
pub mod units;

use std::process::ExitCode;

pub use cli::Cli;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    if let Err(e) = cli.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::execute(&cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
