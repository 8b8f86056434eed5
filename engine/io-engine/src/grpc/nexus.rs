//! `NexusRpc` and `RebuildRpc`: thin shells over the [`NexusRegistry`].
//!
//! Requests are validated here (clear `INVALID_ARGUMENT` before anything
//! reaches a nexus); nexus errors map to statuses through their stable
//! kind, as pool errors do.

use std::{sync::Arc, time::SystemTime};

use io_engine_api::v1::{self, nexus_rpc_server::NexusRpc, rebuild_rpc_server::RebuildRpc};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{parse_uuid, status_for};
use crate::nexus::{
    ChildAction, ChildState, ChildView, CreateNexusArgs, FaultReason, NexusError, NexusRegistry,
    NexusState, NexusView, PublishArgs, RebuildState, RebuildStats, ReservationArgs,
};

fn nexus_status(e: NexusError) -> Status {
    status_for(e.kind(), e.to_string())
}

fn millis(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn child_message(c: ChildView) -> v1::Child {
    v1::Child {
        uri: c.uri,
        uuid: c.uuid.to_string(),
        state: match c.state {
            ChildState::Online => v1::ChildState::ChildOnline,
            ChildState::Degraded => v1::ChildState::ChildDegraded,
            ChildState::Faulted => v1::ChildState::ChildFaulted,
        }
        .into(),
        reason: match c.reason {
            FaultReason::None => v1::ChildStateReason::ChildReasonNone,
            FaultReason::IoFailure => v1::ChildStateReason::ChildReasonIoFailure,
            FaultReason::TimedOut => v1::ChildStateReason::ChildReasonTimedOut,
            FaultReason::CannotOpen => v1::ChildStateReason::ChildReasonCannotOpen,
            FaultReason::RebuildFailed => v1::ChildStateReason::ChildReasonRebuildFailed,
            FaultReason::NoSpace => v1::ChildStateReason::ChildReasonNoSpace,
            FaultReason::ByClient => v1::ChildStateReason::ChildReasonByClient,
            FaultReason::OutOfSync => v1::ChildStateReason::ChildReasonOutOfSync,
        }
        .into(),
        rebuild_progress: c.rebuild_progress.map_or(-1, |p| p as i32),
        has_dirty_log: c.has_dirty_log,
        faulted_at_ms: millis(c.faulted_at),
    }
}

/// Wire form of a nexus.
pub fn nexus_message(n: NexusView) -> v1::Nexus {
    let (device_uri, allowed_hosts, nqn, min_cntlid, max_cntlid) = match n.published {
        Some(p) => (
            p.uri,
            p.allowed_hosts,
            p.nqn,
            u32::from(p.min_cntlid),
            u32::from(p.max_cntlid),
        ),
        None => (String::new(), Vec::new(), String::new(), 0, 0),
    };
    v1::Nexus {
        uuid: n.uuid.to_string(),
        name: n.name,
        size: n.size_bytes,
        state: match n.state {
            NexusState::Online => v1::NexusState::NexusOnline,
            NexusState::Degraded => v1::NexusState::NexusDegraded,
            NexusState::Faulted => v1::NexusState::NexusFaulted,
            NexusState::Shutdown => v1::NexusState::NexusShutdown,
        }
        .into(),
        children: n.children.into_iter().map(child_message).collect(),
        device_uri,
        rebuilds: n.rebuilds,
        allowed_hosts,
        nqn,
        min_cntlid,
        max_cntlid,
        nexus_info_key: n.info_key,
        resv_key: n.reservation.key,
        resv_type: i32::from(n.reservation.rtype),
    }
}

fn rebuild_message(nexus: &Uuid, s: RebuildStats) -> v1::RebuildStats {
    v1::RebuildStats {
        nexus_uuid: nexus.to_string(),
        progress: s.progress(),
        uri: s.uri,
        src_uri: s.src_uri,
        state: match s.state {
            RebuildState::Init => v1::RebuildJobState::RebuildInit,
            RebuildState::Running => v1::RebuildJobState::RebuildRunning,
            RebuildState::Paused => v1::RebuildJobState::RebuildPaused,
            RebuildState::Stopped => v1::RebuildJobState::RebuildStopped,
            RebuildState::Failed => v1::RebuildJobState::RebuildFailed,
            RebuildState::Completed => v1::RebuildJobState::RebuildCompleted,
        }
        .into(),
        blocks_total: s.blocks_total,
        blocks_recovered: s.blocks_recovered,
        blocks_transferred: s.blocks_transferred,
        block_size: s.block_size,
        bytes_transferred: s.bytes_transferred,
        is_partial: s.is_partial,
        start_time_ms: millis(Some(s.start_time)),
        end_time_ms: millis(s.end_time),
        max_bandwidth: s.max_bandwidth,
    }
}

/// Checks a wire reservation type.
fn resv_type(value: i32) -> Result<u8, Status> {
    v1::NvmeReservation::try_from(value)
        .map(|t| t as u8)
        .map_err(|_| Status::invalid_argument(format!("unknown reservation type {value}")))
}

fn require_uri(uri: &str) -> Result<(), Status> {
    if uri.is_empty() {
        return Err(Status::invalid_argument("child uri must not be empty"));
    }
    Ok(())
}

/// The `NexusRpc` service.
#[derive(Clone)]
pub struct NexusService {
    nexus: Arc<NexusRegistry>,
}

impl NexusService {
    pub fn new(nexus: Arc<NexusRegistry>) -> Self {
        Self { nexus }
    }
}

#[tonic::async_trait]
impl NexusRpc for NexusService {
    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid))]
    async fn create_nexus(
        &self,
        request: Request<v1::CreateNexusRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("nexus uuid", &req.uuid)?;
        if req.size == 0 {
            return Err(Status::invalid_argument(
                "nexus size must be greater than 0",
            ));
        }
        if req.children.is_empty() {
            return Err(Status::invalid_argument("a nexus needs at least one child"));
        }
        for c in &req.children {
            require_uri(c)?;
        }
        if req.name.chars().any(char::is_control) {
            return Err(Status::invalid_argument(
                "nexus name contains control characters",
            ));
        }
        let args = CreateNexusArgs {
            uuid,
            name: Some(req.name).filter(|n| !n.is_empty()),
            size_bytes: req.size,
            children: req.children,
            reservation: ReservationArgs {
                key: req.resv_key,
                preempt_key: req.preempt_key,
                rtype: resv_type(req.resv_type)?,
            },
            info_key: req.nexus_info_key.filter(|k| !k.is_empty()),
        };
        let view = self.nexus.create(args).await.map_err(nexus_status)?;
        Ok(Response::new(nexus_message(view)))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid))]
    async fn destroy_nexus(
        &self,
        request: Request<v1::DestroyNexusRequest>,
    ) -> Result<Response<v1::DestroyNexusResponse>, Status> {
        let uuid = parse_uuid("nexus uuid", &request.get_ref().uuid)?;
        self.nexus.destroy(&uuid).await.map_err(nexus_status)?;
        Ok(Response::new(v1::DestroyNexusResponse {}))
    }

    async fn list_nexus(
        &self,
        request: Request<v1::ListNexusRequest>,
    ) -> Result<Response<v1::ListNexusResponse>, Status> {
        let req = request.into_inner();
        let uuid = match &req.uuid {
            Some(u) => Some(parse_uuid("nexus uuid", u)?),
            None => None,
        };
        let nexus_list = self
            .nexus
            .list()
            .into_iter()
            .filter(|n| uuid.is_none_or(|u| n.uuid == u))
            .filter(|n| req.name.as_ref().is_none_or(|name| &n.name == name))
            .map(nexus_message)
            .collect();
        Ok(Response::new(v1::ListNexusResponse { nexus_list }))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid))]
    async fn shutdown_nexus(
        &self,
        request: Request<v1::ShutdownNexusRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let uuid = parse_uuid("nexus uuid", &request.get_ref().uuid)?;
        let view = self.nexus.shutdown(&uuid).await.map_err(nexus_status)?;
        Ok(Response::new(nexus_message(view)))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid))]
    async fn publish_nexus(
        &self,
        request: Request<v1::PublishNexusRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("nexus uuid", &req.uuid)?;
        let cntlid = |v: Option<u32>, name: &str| -> Result<Option<u16>, Status> {
            v.map(|v| {
                u16::try_from(v)
                    .ok()
                    .filter(|v| (1..=0xffef).contains(v))
                    .ok_or_else(|| {
                        Status::invalid_argument(format!("{name} {v} is not within 1..=65519"))
                    })
            })
            .transpose()
        };
        let min_cntlid = cntlid(req.min_cntlid, "min_cntlid")?;
        let max_cntlid = cntlid(req.max_cntlid, "max_cntlid")?;
        let reservation = match req.resv_key {
            Some(key) => Some(ReservationArgs {
                key,
                preempt_key: req.preempt_key.unwrap_or(0),
                rtype: resv_type(req.resv_type.unwrap_or(0))?,
            }),
            None => None,
        };
        let ana = match req.ana_state {
            None => None,
            Some(v) => Some(match v1::NvmeAnaState::try_from(v) {
                Ok(v1::NvmeAnaState::NvmeAnaOptimized) => nvmf_target::AnaState::Optimized,
                Ok(v1::NvmeAnaState::NvmeAnaInaccessible) => nvmf_target::AnaState::Inaccessible,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "ana_state {v} is not an NvmeAnaState"
                    )))
                }
            }),
        };
        let mut view = self
            .nexus
            .publish(
                &uuid,
                PublishArgs {
                    allowed_hosts: req.allowed_hosts,
                    min_cntlid,
                    max_cntlid,
                    reservation,
                },
            )
            .await
            .map_err(nexus_status)?;
        if let Some(state) = ana {
            view = self
                .nexus
                .set_ana_state(&uuid, state)
                .await
                .map_err(nexus_status)?;
        }
        Ok(Response::new(nexus_message(view)))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid))]
    async fn unpublish_nexus(
        &self,
        request: Request<v1::UnpublishNexusRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let uuid = parse_uuid("nexus uuid", &request.get_ref().uuid)?;
        let view = self.nexus.unpublish(&uuid).await.map_err(nexus_status)?;
        Ok(Response::new(nexus_message(view)))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid, uri = %request.get_ref().uri))]
    async fn add_child_nexus(
        &self,
        request: Request<v1::AddChildNexusRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("nexus uuid", &req.uuid)?;
        require_uri(&req.uri)?;
        let view = self
            .nexus
            .add_child(&uuid, &req.uri, req.norebuild)
            .await
            .map_err(nexus_status)?;
        Ok(Response::new(nexus_message(view)))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().uuid, uri = %request.get_ref().uri))]
    async fn remove_child_nexus(
        &self,
        request: Request<v1::RemoveChildNexusRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("nexus uuid", &req.uuid)?;
        require_uri(&req.uri)?;
        let view = self
            .nexus
            .remove_child(&uuid, &req.uri)
            .await
            .map_err(nexus_status)?;
        Ok(Response::new(nexus_message(view)))
    }

    #[instrument(skip_all, fields(uuid = %request.get_ref().nexus_uuid, uri = %request.get_ref().uri))]
    async fn child_operation(
        &self,
        request: Request<v1::ChildOperationRequest>,
    ) -> Result<Response<v1::Nexus>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("nexus uuid", &req.nexus_uuid)?;
        require_uri(&req.uri)?;
        let action = match v1::ChildAction::try_from(req.action) {
            Ok(v1::ChildAction::Online) => ChildAction::Online,
            Ok(v1::ChildAction::Offline) => ChildAction::Offline,
            Ok(v1::ChildAction::Fault) => ChildAction::Fault,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown child action {}",
                    req.action
                )))
            }
        };
        let view = self
            .nexus
            .child_operation(&uuid, &req.uri, action)
            .await
            .map_err(nexus_status)?;
        Ok(Response::new(nexus_message(view)))
    }
}

/// The `RebuildRpc` service.
#[derive(Clone)]
pub struct RebuildService {
    nexus: Arc<NexusRegistry>,
}

impl RebuildService {
    pub fn new(nexus: Arc<NexusRegistry>) -> Self {
        Self { nexus }
    }
}

fn rebuild_target(req: &v1::RebuildRequest) -> Result<Uuid, Status> {
    let uuid = parse_uuid("nexus uuid", &req.nexus_uuid)?;
    require_uri(&req.uri)?;
    Ok(uuid)
}

#[tonic::async_trait]
impl RebuildRpc for RebuildService {
    #[instrument(skip_all, fields(uuid = %request.get_ref().nexus_uuid, uri = %request.get_ref().uri))]
    async fn start_rebuild(
        &self,
        request: Request<v1::StartRebuildRequest>,
    ) -> Result<Response<v1::RebuildStats>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("nexus uuid", &req.nexus_uuid)?;
        require_uri(&req.uri)?;
        let stats = self
            .nexus
            .start_rebuild(&uuid, &req.uri, req.max_bandwidth)
            .await
            .map_err(nexus_status)?;
        Ok(Response::new(rebuild_message(&uuid, stats)))
    }

    async fn stop_rebuild(
        &self,
        request: Request<v1::RebuildRequest>,
    ) -> Result<Response<v1::RebuildStats>, Status> {
        let req = request.into_inner();
        let uuid = rebuild_target(&req)?;
        let stats = self
            .nexus
            .stop_rebuild(&uuid, &req.uri)
            .await
            .map_err(nexus_status)?;
        Ok(Response::new(rebuild_message(&uuid, stats)))
    }

    async fn pause_rebuild(
        &self,
        request: Request<v1::RebuildRequest>,
    ) -> Result<Response<v1::RebuildStats>, Status> {
        let req = request.into_inner();
        let uuid = rebuild_target(&req)?;
        let stats = self
            .nexus
            .pause_rebuild(&uuid, &req.uri)
            .map_err(nexus_status)?;
        Ok(Response::new(rebuild_message(&uuid, stats)))
    }

    async fn resume_rebuild(
        &self,
        request: Request<v1::RebuildRequest>,
    ) -> Result<Response<v1::RebuildStats>, Status> {
        let req = request.into_inner();
        let uuid = rebuild_target(&req)?;
        let stats = self
            .nexus
            .resume_rebuild(&uuid, &req.uri)
            .map_err(nexus_status)?;
        Ok(Response::new(rebuild_message(&uuid, stats)))
    }

    async fn get_rebuild_stats(
        &self,
        request: Request<v1::RebuildRequest>,
    ) -> Result<Response<v1::RebuildStats>, Status> {
        let req = request.into_inner();
        let uuid = rebuild_target(&req)?;
        let stats = self
            .nexus
            .rebuild_stats(&uuid, &req.uri)
            .map_err(nexus_status)?;
        Ok(Response::new(rebuild_message(&uuid, stats)))
    }

    async fn get_rebuild_history(
        &self,
        request: Request<v1::RebuildHistoryRequest>,
    ) -> Result<Response<v1::RebuildHistoryResponse>, Status> {
        let uuid = parse_uuid("nexus uuid", &request.get_ref().nexus_uuid)?;
        let records = self
            .nexus
            .rebuild_history(&uuid)
            .map_err(nexus_status)?
            .into_iter()
            .map(|s| rebuild_message(&uuid, s))
            .collect();
        Ok(Response::new(v1::RebuildHistoryResponse {
            nexus_uuid: uuid.to_string(),
            records,
        }))
    }
}
