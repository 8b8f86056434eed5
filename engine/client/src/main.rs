//! The `io-engine-client` binary: parses the command line and runs
//! [`io_engine_client::run`].

#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    io_engine_client::run(io_engine_client::Cli::parse())
}
