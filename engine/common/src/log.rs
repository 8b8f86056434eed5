//! Log output of every binary: `tracing` on stderr, filtered by `RUST_LOG`
//! (default `info`), human-readable or one JSON object per line, colours
//! only on a terminal.

use std::io::IsTerminal;

/// Format of the log lines written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber for `program`. A second call
/// (tests that start a daemon in-process twice) is reported on stderr and
/// otherwise ignored.
pub fn init_tracing(program: &str, format: LogFormat) {
    init_tracing_with_default(program, format, "info");
}

/// [`init_tracing`] with another filter than `info` when `RUST_LOG` is not
/// set (`warn` for a tool whose output is its report).
pub fn init_tracing_with_default(program: &str, format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = installed {
        eprintln!("{program}: logging already initialised: {e}");
    }
}
