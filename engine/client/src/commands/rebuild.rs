//! `rebuild` commands.

use std::process::ExitCode;

use io_engine_api::v1::{self, rebuild_rpc_client::RebuildRpcClient};
use tonic::transport::Channel;

use super::{print, print_created, print_json, rpc_error};
use crate::{
    cli::{ChildRef, Output, RebuildCommand},
    output,
};

pub(super) async fn run(
    mut client: RebuildRpcClient<Channel>,
    cmd: &RebuildCommand,
    format: Output,
) -> anyhow::Result<ExitCode> {
    match cmd {
        RebuildCommand::Start {
            child,
            max_bandwidth,
        } => {
            let stats = client
                .start_rebuild(v1::StartRebuildRequest {
                    nexus_uuid: child.uuid.clone(),
                    uri: child.uri.clone(),
                    max_bandwidth: *max_bandwidth,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::RebuildStatsView::from(&stats))?;
        }
        RebuildCommand::Stop(child) => {
            let stats = client
                .stop_rebuild(request(child))
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::RebuildStatsView::from(&stats))?;
        }
        RebuildCommand::Pause(child) => {
            let stats = client
                .pause_rebuild(request(child))
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::RebuildStatsView::from(&stats))?;
        }
        RebuildCommand::Resume(child) => {
            let stats = client
                .resume_rebuild(request(child))
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::RebuildStatsView::from(&stats))?;
        }
        RebuildCommand::Progress(child) | RebuildCommand::Stats(child) => {
            let stats = client
                .get_rebuild_stats(request(child))
                .await
                .map_err(rpc_error)?
                .into_inner();
            match (format, cmd) {
                (Output::Json, _) => print_json(&output::RebuildStatsView::from(&stats))?,
                (_, RebuildCommand::Progress(_)) => print(&output::progress_table(&stats)),
                _ => print(&output::stats_table(&stats)),
            }
        }
        RebuildCommand::History(nexus) => {
            let history = client
                .get_rebuild_history(v1::RebuildHistoryRequest {
                    nexus_uuid: nexus.uuid.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            match format {
                Output::Json => print_json(&output::RebuildHistoryView::from(&history))?,
                Output::Table | Output::Wide => print(&output::history_table(&history)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn request(child: &ChildRef) -> v1::RebuildRequest {
    v1::RebuildRequest {
        nexus_uuid: child.uuid.clone(),
        uri: child.uri.clone(),
    }
}
