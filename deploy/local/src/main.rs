//! `mayastor-local`: parses the command line and runs the launcher
//! ([`mayastor_local::run`]). Errors are one line on stderr and exit code 1.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use mayastor_local::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match mayastor_local::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mayastor-local: error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}
