//! `kubectl mayastor`: the operator's command line of the cluster.
//!
//! - [`cli`]: the command tree and global flags (clap);
//! - [`discovery`]: where the REST API is (`--rest`, a local cluster's
//!   endpoint file, the kubeconfig's `api-rest` Service);
//! - [`ops`]: the operations, over the REST client only;
//! - [`dump`]: support bundles (the `supportability` crate);
//! - [`views`] and [`table`]: the tables, pure functions of the models;
//! - [`upgrades`]: `upgrade`, `get upgrade-status`, `delete upgrade`.
//!
//! Threading: `tui` runs the dashboard, which builds its own tokio
//! runtime, so it is dispatched before any runtime exists here (a
//! short-lived one may look up the endpoint in Kubernetes first and is
//! dropped before the dashboard starts). Every other command runs on one
//! current-thread runtime.

#![forbid(unsafe_code)]

pub mod cli;
pub mod discovery;
pub mod dump;
pub mod ops;
pub mod table;
pub mod upgrades;
pub mod views;

use std::io::Write;

use anyhow::{anyhow, Context};
use openapi::{RestClient, RestClientOptions};

use cli::{Cli, Command, CordonCommand, DrainCommand, GlobalArgs, LabelCommand, ScaleCommand};
use discovery::{Endpoint, REST_HINT};

/// Runs one command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut command, "kubectl-mayastor", &mut out);
            write_stdout(&String::from_utf8_lossy(&out))
        }
        Command::Tui(args) => {
            let endpoint = resolve_blocking(&cli.global)?;
            let mut bundle = dump::options(
                &cli.global,
                Some(&endpoint),
                supportability::Resource::System,
            );
            bundle.output_dir = args.bundle_dir.clone();
            tui::run(tui::Options {
                rest: endpoint.url,
                interval: args.interval,
                timeout: cli.global.timeout,
                bundle: Some(bundle),
            })
        }
        Command::Dump(args) => dump::run(&cli.global, args),
        _ => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(execute(&cli))
        }
    }
}

/// Finds the endpoint outside any runtime (for `tui`).
fn resolve_blocking(global: &GlobalArgs) -> anyhow::Result<Endpoint> {
    if let Some(endpoint) = discovery::without_kubernetes(global.rest.as_deref())? {
        return Ok(endpoint);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let endpoint = runtime.block_on(resolve_kubernetes(global));
    drop(runtime);
    endpoint
}

async fn resolve(global: &GlobalArgs) -> anyhow::Result<Endpoint> {
    match discovery::without_kubernetes(global.rest.as_deref())? {
        Some(endpoint) => Ok(endpoint),
        None => resolve_kubernetes(global).await,
    }
}

pub(crate) async fn resolve_kubernetes(global: &GlobalArgs) -> anyhow::Result<Endpoint> {
    discovery::from_kubernetes(
        global.kube_config_path.as_deref(),
        &global.namespace,
        global.timeout,
    )
    .await
    .map_err(|e| {
        anyhow!(
            "cannot find the REST endpoint (no --rest, no local cluster, and the kubeconfig gave none: {e:#}); {REST_HINT}"
        )
    })
}

async fn execute(cli: &Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    let endpoint = resolve(global).await?;
    let client = RestClient::new(
        &endpoint.url,
        RestClientOptions {
            timeout: global.timeout,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow!("invalid REST endpoint ({}): {}", endpoint.source, e.message))?;
    let api: &dyn openapi::CoreApi = &client;

    let outcome = match &cli.command {
        Command::Get(what) => ops::get(api, what, global.output).await,
        Command::Scale(ScaleCommand::Volume { id, replica_count }) => {
            ops::scale_volume(api, id, replica_count).await
        }
        Command::Cordon(CordonCommand::Node { id, label }) => ops::cordon(api, id, label).await,
        Command::Uncordon(CordonCommand::Node { id, label }) => ops::uncordon(api, id, label).await,
        Command::Drain(DrainCommand::Node {
            id,
            label,
            drain_timeout,
        }) => {
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            let result = ops::drain(api, id, label, *drain_timeout, &|msg| {
                spinner.set_message(msg.to_string())
            })
            .await;
            spinner.finish_and_clear();
            result
        }
        Command::Label(LabelCommand::Node(args)) => {
            ops::label(api, ops::Labelled::Node, args).await
        }
        Command::Label(LabelCommand::Pool(args)) => {
            ops::label(api, ops::Labelled::Pool, args).await
        }
        Command::Upgrade(args) => upgrades::run(api, global, &endpoint, args).await,
        Command::Delete(upgrade::cli::DeleteCommand::Upgrade(args)) => {
            upgrades::delete(api, args.force).await
        }
        Command::Tui(_) | Command::Completions { .. } | Command::Dump(_) => {
            unreachable!("dispatched before the runtime")
        }
    };
    let outcome = outcome.map_err(|e| with_endpoint_hint(e, &endpoint))?;
    write_stdout(outcome.render(global.output))
}

/// Adds where the endpoint came from to a failure to reach it.
fn with_endpoint_hint(error: anyhow::Error, endpoint: &Endpoint) -> anyhow::Error {
    match error.downcast_ref::<ops::ApiFailure>() {
        Some(failure) if failure.is_transport() => {
            let advice = match endpoint.source {
                discovery::Source::Flag => {
                    "check the address and that the cluster is up".to_string()
                }
                _ => format!("check that the cluster is up or {REST_HINT}"),
            };
            anyhow!(
                "{} (the REST endpoint {} {}); {advice}",
                failure.error.message,
                endpoint.url,
                endpoint.source
            )
        }
        _ => error,
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}

/// An error as the one line printed on stderr.
pub fn error_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let one_line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("error: {}", one_line.join(" "))
}
