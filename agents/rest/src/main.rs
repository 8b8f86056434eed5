//! `api-rest`: the public REST API of the control plane (8081 http, 8080
//! https by convention), forwarding to the core agent. Parses flags, starts
//! tracing and runs [`api_rest::server::run`] until SIGTERM or SIGINT.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use api_rest::server::{self, ServerConfig, TlsEndpoint};
use clap::Parser;
use mayastor_common::{
    duration::parse_positive as parse_duration, log::LogFormat, signal::shutdown_signal,
};

#[derive(Debug, Parser)]
#[command(
    version = mayastor_version::version(),
    name = "api-rest",
    about = "The control plane's REST API server (/v0, OpenAPI at /v0/api/spec)"
)]
struct Args {
    /// REST endpoint of the core agent, where every call is forwarded.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50051")]
    core_endpoint: String,

    /// Plain http listen address.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:8081")]
    http: SocketAddr,

    /// https listen address (needs --cert and --key); none by default.
    #[arg(long, value_name = "IP:PORT", requires_all = ["cert", "key"])]
    https: Option<SocketAddr>,

    /// PEM certificate chain for https.
    #[arg(long, value_name = "FILE", requires = "https")]
    cert: Option<PathBuf>,

    /// PEM private key for https.
    #[arg(long, value_name = "FILE", requires = "https")]
    key: Option<PathBuf>,

    /// File holding the bearer token clients must present (or set
    /// REST_BEARER_TOKEN); without either, no token is required.
    #[arg(long, value_name = "FILE")]
    bearer_token_file: Option<PathBuf>,

    /// Timeout of one call forwarded to the core agent (e.g. 500ms, 10s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// Log output on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mayastor_common::log::init_tracing("api-rest", args.log_format);
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("api-rest: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let config = ServerConfig {
        bearer_token: api_rest::token::load_bearer_token(args.bearer_token_file.as_deref())?,
        core_endpoint: args.core_endpoint,
        http: args.http,
        https: match (args.https, args.cert, args.key) {
            (Some(addr), Some(cert), Some(key)) => Some(TlsEndpoint { addr, cert, key }),
            (None, ..) => None,
            _ => anyhow::bail!("--https needs --cert and --key"),
        },
        request_timeout: args.request_timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        server::run(config, shutdown).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "0s", "s", "10w", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
        let args = Args::try_parse_from(["api-rest"]).expect("defaults");
        assert_eq!(args.http, "0.0.0.0:8081".parse().expect("addr"));
        assert!(Args::try_parse_from(["api-rest", "--https", "127.0.0.1:8080"]).is_err());
        assert!(Args::try_parse_from(["api-rest", "--cert", "c.pem"]).is_err());
    }
}
