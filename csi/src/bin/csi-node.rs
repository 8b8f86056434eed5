//! `csi-node`: parses the command line and runs the node plugin
//! ([`csi::node::args::run`]). Errors are one line on stderr and exit
//! code 1.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = csi::node::Args::parse();
    match csi::node::args::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "csi-node: error: {}",
                format!("{error:#}").replace('\n', " ")
            );
            ExitCode::FAILURE
        }
    }
}
