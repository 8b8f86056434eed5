//! `stats` commands: the engine's I/O counters of pools, replicas and
//! nexuses.

use std::process::ExitCode;

use io_engine_api::v1::{self, stats_rpc_client::StatsRpcClient};
use tonic::transport::Channel;

use super::{print, print_json, rpc_error};
use crate::{
    cli::{Output, StatsCommand},
    output::{self, IoStatsView},
};

pub(super) async fn run(
    mut client: StatsRpcClient<Channel>,
    cmd: &StatsCommand,
    format: Output,
) -> anyhow::Result<ExitCode> {
    let filter = |name: &Option<String>| v1::ListStatsOption { name: name.clone() };
    match cmd {
        StatsCommand::Pool { name } => {
            let stats = client
                .get_pool_io_stats(filter(name))
                .await
                .map_err(rpc_error)?
                .into_inner()
                .stats;
            show(
                format,
                &stats,
                output::io_stats_table(&stats, "No pools found"),
            )?;
        }
        StatsCommand::Nexus { name } => {
            let stats = client
                .get_nexus_io_stats(filter(name))
                .await
                .map_err(rpc_error)?
                .into_inner()
                .stats;
            show(
                format,
                &stats,
                output::io_stats_table(&stats, "No nexuses found"),
            )?;
        }
        StatsCommand::Replica { name } => {
            let stats = client
                .get_replica_io_stats(filter(name))
                .await
                .map_err(rpc_error)?
                .into_inner()
                .stats;
            match format {
                Output::Json => print_json(
                    &stats
                        .iter()
                        .map(IoStatsView::of_replica)
                        .collect::<Vec<_>>(),
                )?,
                Output::Table | Output::Wide => print(&output::replica_io_stats_table(&stats)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(format: Output, stats: &[v1::IoStats], table: String) -> anyhow::Result<()> {
    match format {
        Output::Json => print_json(&stats.iter().map(IoStatsView::from).collect::<Vec<_>>()),
        Output::Table | Output::Wide => {
            print(&table);
            Ok(())
        }
    }
}
