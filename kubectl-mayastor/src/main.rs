//! `kubectl-mayastor`: parses the command line and runs it (see the
//! library). Errors are one line on stderr and exit code 1; usage errors
//! are clap's, with exit code 2.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = kubectl_mayastor::cli::Cli::parse();
    if let Err(error) = kubectl_mayastor::run(cli) {
        eprintln!("{}", kubectl_mayastor::error_line(&error));
        std::process::exit(1);
    }
}
