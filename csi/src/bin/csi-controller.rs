//! `csi-controller`: parses the command line and runs the controller plugin
//! ([`csi::controller::run`]). Errors are one line on stderr and exit
//! code 1.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = csi::controller::Args::parse();
    match csi::controller::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "csi-controller: error: {}",
                format!("{error:#}").replace('\n', " ")
            );
            ExitCode::FAILURE
        }
    }
}
