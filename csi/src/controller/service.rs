//! The CSI Controller service: every RPC checks its request, takes the
//! volume's guard (a second call on the same volume is ABORTED), then
//! speaks to the cluster through the REST API. REST errors become CSI
//! codes in [`super::errors`] only.

use std::{collections::BTreeMap, sync::Arc};

use openapi::{
    models::{
        CreateVolumeBody, NodeStatus, Protocol, PublishVolumeBody, ResizeVolumeBody, SpecStatus,
        Volume, VolumePolicy,
    },
    CoreApi, ErrorKind,
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{
    errors::{required, rest_status, size_of_range, volume_uuid},
    guard::CreateLimit,
    params::VolumeParams,
    views,
};
use crate::{context, v1::*, volume_guard::VolumeGuards};

/// Size of a volume whose request gives no capacity range.
pub const DEFAULT_VOLUME_BYTES: u64 = 1 << 30;

/// The Controller service (see the module header).
#[derive(Clone)]
pub struct ControllerService {
    rest: Arc<dyn CoreApi>,
    /// Labels a pool needs to take replicas of CSI volumes.
    pool_selector: BTreeMap<String, String>,
    guards: VolumeGuards,
    create_limit: CreateLimit,
}

/// The volume id of a CreateVolume name: the uuid of `pvc-<uuid>`, else a
/// uuid derived from the name (the same name always gives the same id).
pub fn volume_id_of_name(name: &str) -> String {
    if let Some(id) = name.strip_prefix("pvc-").and_then(volume_uuid) {
        return id;
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes())
        .hyphenated()
        .to_string()
}

impl ControllerService {
    pub fn new(
        rest: Arc<dyn CoreApi>,
        pool_selector: BTreeMap<String, String>,
        create_limit: usize,
    ) -> Self {
        Self {
            rest,
            pool_selector,
            guards: VolumeGuards::default(),
            create_limit: CreateLimit::new(create_limit),
        }
    }

    /// The per-volume guards, shared with the PV garbage collector so it
    /// never deletes a volume while a CSI call on it is in flight.
    pub fn guards(&self) -> VolumeGuards {
        self.guards.clone()
    }

    /// The volume, `None` when it does not exist.
    async fn find(&self, id: &str) -> Result<Option<Volume>, Status> {
        match self.rest.get_volume(id).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(rest_status(&format!("volume {id}"), e)),
        }
    }

    /// The volume, NOT_FOUND when the id is malformed or unknown.
    async fn existing(&self, id: &str) -> Result<Volume, Status> {
        let not_found = || Status::not_found(format!("volume {id} not found"));
        let uuid = volume_uuid(id).ok_or_else(not_found)?;
        self.find(&uuid).await?.ok_or_else(not_found)
    }

    /// The node of the target: the CSI node itself when it is an online,
    /// uncordoned storage node and the volume has more than one replica
    /// (or asked to be local); else the core's choice.
    async fn target_node(&self, volume: &Volume, node_id: &str) -> Option<String> {
        let local = views::volume_context(volume)
            .get(context::LOCAL)
            .is_some_and(|v| v == "true");
        if volume.spec.num_replicas <= 1 && !local {
            return None;
        }
        let node = self.rest.get_node(node_id).await.ok()?;
        let online = node.state.as_ref()?.status == NodeStatus::Online;
        let cordoned = node.spec.as_ref()?.cordon_drain_state.is_cordoned();
        (online && !cordoned).then(|| node_id.to_owned())
    }

    fn publish_context(
        volume: &Volume,
        requested: &std::collections::HashMap<String, String>,
    ) -> Result<std::collections::HashMap<String, String>, Status> {
        let uri = volume
            .state
            .target
            .as_ref()
            .map(|t| t.device_uri.clone())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Status::unavailable(format!("volume {} has no target URI yet", volume.spec.uuid))
            })?;
        let stored = views::volume_context(volume);
        let mut ctx = std::collections::HashMap::new();
        ctx.insert(context::URI.to_owned(), uri);
        for key in context::PUBLISHED_TUNING {
            if let Some(v) = stored.get(key).or_else(|| requested.get(key)) {
                ctx.insert(key.to_owned(), v.clone());
            }
        }
        Ok(ctx)
    }
}

fn check_capabilities(caps: &[VolumeCapability]) -> Result<(), Status> {
    if caps.is_empty() {
        return Err(Status::invalid_argument("volume_capabilities is required"));
    }
    for cap in caps {
        if let Some(why) = views::unsupported(cap) {
            return Err(Status::invalid_argument(why));
        }
    }
    Ok(())
}

fn rpc_capability(t: controller_service_capability::rpc::Type) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(controller_service_capability::Type::Rpc(
            controller_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl controller_server::Controller for ControllerService {
    #[instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = request.into_inner();
        let name = required("name", &req.name)?;
        check_capabilities(&req.volume_capabilities)?;
        if req.volume_content_source.is_some() {
            return Err(Status::invalid_argument(
                "volume content sources (snapshots, clones) are not supported",
            ));
        }
        let params = VolumeParams::parse(&req.parameters)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let size = size_of_range(req.capacity_range.as_ref(), DEFAULT_VOLUME_BYTES)?;
        let id = volume_id_of_name(name);
        let context = params.volume_context();
        let body = CreateVolumeBody {
            size,
            replicas: params.replicas,
            thin: params.thin,
            policy: VolumePolicy::default(),
            topology: params.topology(&self.pool_selector),
            labels: Some(views::volume_labels(&context)),
            affinity_group: params.affinity(),
        };

        let _guard = self.guards.take(&id)?;
        let _permit = self.create_limit.take()?;
        let volume = match self.find(&id).await? {
            Some(existing) => {
                let spec = &existing.spec;
                let same = spec.size == body.size
                    && spec.num_replicas == body.replicas
                    && spec.thin == body.thin
                    && spec.labels == body.labels
                    && spec.topology == body.topology
                    && spec.affinity_group == body.affinity_group;
                if !same {
                    return Err(Status::already_exists(format!(
                        "volume {name} ({id}) exists with other parameters or size"
                    )));
                }
                if spec.status != SpecStatus::Created {
                    return Err(Status::aborted(format!(
                        "volume {name} ({id}) is {:?}; retry",
                        spec.status
                    )));
                }
                existing
            }
            None => self
                .rest
                .put_volume(&id, body)
                .await
                .map_err(|e| rest_status(&format!("creating volume {name} ({id})"), e))?,
        };
        tracing::info!(volume = %id, size, replicas = params.replicas, "volume ready");
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(crate::v1::Volume {
                volume_context: context,
                ..views::csi_volume(&volume)
            }),
        }))
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = required("volume_id", &req.volume_id)?;
        // A malformed id names no volume: there is nothing to delete.
        let Some(id) = volume_uuid(id) else {
            return Ok(Response::new(DeleteVolumeResponse {}));
        };
        let _guard = self.guards.take(&id)?;
        match self.rest.del_volume(&id).await {
            Ok(()) => tracing::info!(volume = %id, "volume deleted"),
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(rest_status(&format!("deleting volume {id}"), e)),
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id, node = %request.get_ref().node_id))]
    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = required("volume_id", &req.volume_id)?;
        let node_id = required("node_id", &req.node_id)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        check_capabilities(std::slice::from_ref(cap))?;
        let _guard = self.guards.take(id)?;
        let volume = self.existing(id).await?;
        let volume = match &volume.spec.target {
            Some(t) if t.frontend_nodes.iter().any(|n| n == node_id) => volume,
            Some(t) => {
                return Err(Status::failed_precondition(format!(
                    "volume {id} is published for node(s) {:?}",
                    t.frontend_nodes
                )))
            }
            None => {
                let node = self.target_node(&volume, node_id).await;
                let body = |node: Option<String>| PublishVolumeBody {
                    node,
                    frontend_node: Some(node_id.to_owned()),
                    protocol: Protocol::Nvmf,
                };
                let first = self.rest.put_volume_target(id, body(node.clone())).await;
                match first {
                    Ok(v) => v,
                    // The CSI node was only a preference: let the core choose.
                    Err(e) if node.is_some() && e.kind != ErrorKind::NotFound => {
                        tracing::warn!(volume = %id, error = %e, "cannot place the target on the CSI node; letting the core choose");
                        self.rest
                            .put_volume_target(id, body(None))
                            .await
                            .map_err(|e| rest_status(&format!("publishing volume {id}"), e))?
                    }
                    Err(e) => return Err(rest_status(&format!("publishing volume {id}"), e)),
                }
            }
        };
        let publish_context = Self::publish_context(&volume, &req.volume_context)?;
        tracing::info!(volume = %id, node = %node_id, uri = %publish_context[context::URI], "volume published");
        Ok(Response::new(ControllerPublishVolumeResponse {
            publish_context,
        }))
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id, node = %request.get_ref().node_id))]
    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = required("volume_id", &req.volume_id)?;
        let done = || Ok(Response::new(ControllerUnpublishVolumeResponse {}));
        let Some(id) = volume_uuid(id) else {
            return done();
        };
        let _guard = self.guards.take(&id)?;
        let Some(volume) = self.find(&id).await? else {
            return done();
        };
        let Some(target) = &volume.spec.target else {
            return done();
        };
        if !req.node_id.is_empty()
            && !target.frontend_nodes.is_empty()
            && !target.frontend_nodes.contains(&req.node_id)
        {
            return done();
        }
        match self.rest.del_volume_target(&id, false).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::NotPublished) => {}
            Err(e) => {
                // The target's node may be gone: the target is forgotten
                // all the same.
                tracing::warn!(volume = %id, error = %e, "unpublish failed; forcing");
                self.rest
                    .del_volume_target(&id, true)
                    .await
                    .map_err(|e| rest_status(&format!("unpublishing volume {id}"), e))?;
            }
        }
        tracing::info!(volume = %id, "volume unpublished");
        done()
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        let id = required("volume_id", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument("volume_capabilities is required"));
        }
        self.existing(id).await?;
        let why = req
            .volume_capabilities
            .iter()
            .find_map(views::unsupported)
            .or_else(|| {
                VolumeParams::parse(&req.parameters)
                    .err()
                    .map(|e| e.to_string())
            });
        Ok(Response::new(match why {
            Some(message) => ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message,
            },
            None => ValidateVolumeCapabilitiesResponse {
                confirmed: Some(validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                }),
                message: String::new(),
            },
        }))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let req = request.into_inner();
        let max_entries = u64::try_from(req.max_entries)
            .map_err(|_| Status::invalid_argument("max_entries must not be negative"))?;
        let token = match req.starting_token.as_str() {
            "" => None,
            t => Some(t.parse::<u64>().map_err(|_| {
                Status::aborted(format!("starting_token {t:?} is not a token of ours"))
            })?),
        };
        let page = self
            .rest
            .get_volumes(max_entries, token)
            .await
            .map_err(|e| rest_status("listing volumes", e))?;
        let entries = page
            .entries
            .iter()
            .map(|v| list_volumes_response::Entry {
                volume: Some(views::csi_volume(v)),
                status: Some(list_volumes_response::VolumeStatus {
                    published_node_ids: views::published_nodes(v),
                    volume_condition: Some(views::condition(v)),
                }),
            })
            .collect();
        Ok(Response::new(ListVolumesResponse {
            entries,
            next_token: page.next_token.map(|t| t.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        let req = request.into_inner();
        let params = VolumeParams::parse(&req.parameters)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req
            .volume_capabilities
            .iter()
            .any(|c| views::unsupported(c).is_some())
        {
            return Ok(Response::new(GetCapacityResponse {
                available_capacity: 0,
                maximum_volume_size: None,
                minimum_volume_size: None,
            }));
        }
        let (nodes, pools) = tokio::try_join!(self.rest.get_nodes(), self.rest.get_pools())
            .map_err(|e| rest_status("reading nodes and pools", e))?;
        let free = views::free_capacity(
            &nodes,
            &pools,
            params.replicas,
            params.thin,
            params.topology(&self.pool_selector).as_ref(),
        );
        let free = i64::try_from(free).unwrap_or(i64::MAX);
        Ok(Response::new(GetCapacityResponse {
            available_capacity: free,
            maximum_volume_size: Some(free),
            minimum_volume_size: None,
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        use controller_service_capability::rpc::Type;
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: [
                Type::CreateDeleteVolume,
                Type::PublishUnpublishVolume,
                Type::ListVolumes,
                Type::GetCapacity,
                Type::ExpandVolume,
                Type::GetVolume,
                Type::VolumeCondition,
            ]
            .into_iter()
            .map(rpc_capability)
            .collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        _request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn delete_snapshot(
        &self,
        _request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn list_snapshots(
        &self,
        _request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = required("volume_id", &req.volume_id)?;
        let range = req
            .capacity_range
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("capacity_range is required"))?;
        if range.required_bytes <= 0 && range.limit_bytes <= 0 {
            return Err(Status::invalid_argument("capacity_range sets no size"));
        }
        if let Some(cap) = &req.volume_capability {
            check_capabilities(std::slice::from_ref(cap))?;
        }
        let _guard = self.guards.take(id)?;
        let volume = self.existing(id).await?;
        let wanted = size_of_range(Some(range), volume.spec.size)?;
        let size = if wanted > volume.spec.size {
            let grown = self
                .rest
                .put_volume_size(id, ResizeVolumeBody { size: wanted })
                .await
                .map_err(|e| rest_status(&format!("expanding volume {id}"), e))?;
            tracing::info!(volume = %id, from = volume.spec.size, to = grown.spec.size, "volume expanded");
            grown.spec.size
        } else {
            volume.spec.size
        };
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            node_expansion_required: !views::is_block(req.volume_capability.as_ref()),
        }))
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        let id = required("volume_id", &req.volume_id)?;
        let volume = self.existing(id).await?;
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(views::csi_volume(&volume)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: views::published_nodes(&volume),
                volume_condition: Some(views::condition(&volume)),
            }),
        }))
    }
}
