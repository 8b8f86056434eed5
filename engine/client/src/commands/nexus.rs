//! `nexus` commands.

use std::process::ExitCode;

use anyhow::bail;
use io_engine_api::v1::{self, nexus_rpc_client::NexusRpcClient};
use tonic::transport::Channel;

use super::{print, print_created, print_json, rpc_error};
use crate::{
    cli::{NexusCommand, Output, ReservationArgs},
    output,
};

pub(super) async fn run(
    mut client: NexusRpcClient<Channel>,
    cmd: &NexusCommand,
    format: Output,
) -> anyhow::Result<ExitCode> {
    match cmd {
        NexusCommand::Create {
            uuid,
            size,
            name,
            reservation,
            nexus_info_key,
            children,
        } => {
            let nexus = client
                .create_nexus(create_request(
                    uuid,
                    *size,
                    name.as_deref(),
                    reservation,
                    nexus_info_key.as_deref(),
                    children,
                ))
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::NexusView::from(&nexus))?;
        }
        NexusCommand::List { show_children } => {
            let mut nexuses = client
                .list_nexus(v1::ListNexusRequest::default())
                .await
                .map_err(rpc_error)?
                .into_inner()
                .nexus_list;
            nexuses.sort_by(|a, b| (&a.name, &a.uuid).cmp(&(&b.name, &b.uuid)));
            match format {
                Output::Json => print_json(
                    &nexuses
                        .iter()
                        .map(output::NexusView::from)
                        .collect::<Vec<_>>(),
                )?,
                Output::Table => print(&output::nexus_table(&nexuses, *show_children)),
                Output::Wide => print(&output::nexus_table(&nexuses, true)),
            }
        }
        NexusCommand::Children(target) => {
            let nexus = find(&mut client, &target.uuid).await?;
            match format {
                Output::Json => print_json(
                    &nexus
                        .children
                        .iter()
                        .map(output::ChildView::from)
                        .collect::<Vec<_>>(),
                )?,
                Output::Table => print(&output::child_table(&nexus.children, false)),
                Output::Wide => print(&output::child_table(&nexus.children, true)),
            }
        }
        NexusCommand::Publish {
            nexus,
            allowed_hosts,
            min_cntlid,
            max_cntlid,
            reservation,
        } => {
            let request = v1::PublishNexusRequest {
                uuid: nexus.uuid.clone(),
                allowed_hosts: allowed_hosts.clone(),
                min_cntlid: *min_cntlid,
                max_cntlid: *max_cntlid,
                resv_key: reservation.resv_key,
                resv_type: reservation
                    .resv_type
                    .map(|t| v1::NvmeReservation::from(t).into()),
                preempt_key: reservation.preempt_key,
                ana_state: None,
            };
            let nexus = client
                .publish_nexus(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            match format {
                Output::Json => print_json(&output::NexusView::from(&nexus))?,
                Output::Table | Output::Wide => print(&format!("{}\n", nexus.device_uri)),
            }
        }
        NexusCommand::Unpublish(target) => {
            let nexus = client
                .unpublish_nexus(v1::UnpublishNexusRequest {
                    uuid: target.uuid.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::NexusView::from(&nexus))?;
        }
        NexusCommand::Shutdown(target) => {
            let nexus = client
                .shutdown_nexus(v1::ShutdownNexusRequest {
                    uuid: target.uuid.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::NexusView::from(&nexus))?;
        }
        NexusCommand::Destroy(target) => {
            client
                .destroy_nexus(v1::DestroyNexusRequest {
                    uuid: target.uuid.clone(),
                })
                .await
                .map_err(rpc_error)?;
        }
        NexusCommand::Add { child, norebuild } => {
            let nexus = client
                .add_child_nexus(v1::AddChildNexusRequest {
                    uuid: child.uuid.clone(),
                    uri: child.uri.clone(),
                    norebuild: *norebuild,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::NexusView::from(&nexus))?;
        }
        NexusCommand::Remove(child) => {
            let nexus = client
                .remove_child_nexus(v1::RemoveChildNexusRequest {
                    uuid: child.uuid.clone(),
                    uri: child.uri.clone(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::NexusView::from(&nexus))?;
        }
        NexusCommand::ChildOp { child, action } => {
            let nexus = client
                .child_operation(v1::ChildOperationRequest {
                    nexus_uuid: child.uuid.clone(),
                    uri: child.uri.clone(),
                    action: v1::ChildAction::from(*action).into(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_created(format, &output::NexusView::from(&nexus))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The wire request of `nexus create`.
fn create_request(
    uuid: &str,
    size: u64,
    name: Option<&str>,
    reservation: &ReservationArgs,
    nexus_info_key: Option<&str>,
    children: &[String],
) -> v1::CreateNexusRequest {
    v1::CreateNexusRequest {
        uuid: uuid.to_string(),
        name: name.unwrap_or(uuid).to_string(),
        size,
        children: children.to_vec(),
        resv_key: reservation.resv_key.unwrap_or(0),
        preempt_key: reservation.preempt_key.unwrap_or(0),
        resv_type: reservation
            .resv_type
            .map_or(v1::NvmeReservation::ReservationNone, Into::into)
            .into(),
        nexus_info_key: nexus_info_key.map(str::to_string),
    }
}

/// The nexus with this uuid.
async fn find(client: &mut NexusRpcClient<Channel>, uuid: &str) -> anyhow::Result<v1::Nexus> {
    let found = client
        .list_nexus(v1::ListNexusRequest {
            uuid: Some(uuid.to_string()),
            name: None,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .nexus_list;
    match found.into_iter().find(|n| n.uuid == uuid) {
        Some(nexus) => Ok(nexus),
        None => bail!("nexus '{uuid}' not found (NotFound)"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    const U: &str = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";
    const V: &str = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";

    fn request(args: &[&str]) -> v1::CreateNexusRequest {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Nexus(NexusCommand::Create {
                uuid,
                size,
                name,
                reservation,
                nexus_info_key,
                children,
            }) => create_request(
                &uuid,
                size,
                name.as_deref(),
                &reservation,
                nexus_info_key.as_deref(),
                &children,
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_request_defaults() {
        let r = request(&[
            "c",
            "nexus",
            "create",
            U,
            "--size",
            "64",
            "bdev:///r1?uuid=r1",
        ]);
        assert_eq!(r.uuid, U);
        assert_eq!(r.name, U);
        assert_eq!(r.size, 64 << 20);
        assert_eq!(r.children, ["bdev:///r1?uuid=r1"]);
        assert_eq!(r.resv_key, 0);
        assert_eq!(r.preempt_key, 0);
        assert_eq!(r.resv_type, i32::from(v1::NvmeReservation::ReservationNone));
        assert_eq!(r.nexus_info_key, None);
    }

    #[test]
    fn create_request_with_everything() {
        let r = request(&[
            "c",
            "nexus",
            "create",
            U,
            "--size=1GiB",
            "--name",
            V,
            "--resv-key=7",
            "--preempt-key=6",
            "--resv-type=exclusive-access",
            "--nexus-info-key=/k",
            "bdev:///r1?uuid=r1",
            "nvmf://10.0.0.2:8420/nqn.2019-05.io.openebs:r2?uuid=r2",
        ]);
        assert_eq!(r.name, V);
        assert_eq!(r.size, 1 << 30);
        assert_eq!(r.children.len(), 2);
        assert_eq!(r.resv_key, 7);
        assert_eq!(r.preempt_key, 6);
        assert_eq!(r.resv_type, i32::from(v1::NvmeReservation::ExclusiveAccess));
        assert_eq!(r.nexus_info_key.as_deref(), Some("/k"));
    }
}
