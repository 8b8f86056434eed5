//! The CSI Node gRPC service: checks each request (CSI codes for bad
//! input, never a panic), takes the volume's lock and calls the operation.

use std::{collections::HashMap, path::Path, time::Duration};

use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::volume_guard::VolumeGuards;

use super::{
    config::{ConnectParams, NodeConfig},
    error::{NodeError, NodeResult},
    filesystem, mount, nvme,
    pb::{self, node_server::Node, node_service_capability, volume_usage::Unit},
    publish::{self, PublishRequest},
    stage::{self, StageRequest},
    stats,
    volume::{device_number, required_path, volume_path, Capability, VolumeId},
};

/// How long NodeExpandVolume waits for the kernel to see the new size.
const RESIZE_WAIT: Duration = Duration::from_secs(30);

/// The Node service.
#[derive(Debug, Clone)]
pub struct NodeService {
    cfg: NodeConfig,
    locks: VolumeGuards,
}

impl NodeService {
    pub fn new(cfg: NodeConfig) -> Self {
        NodeService {
            cfg,
            locks: VolumeGuards::default(),
        }
    }
}

fn ok<T>(r: NodeResult<T>) -> Result<Response<T>, Status> {
    match r {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            tracing::warn!(error = %e, "request failed");
            Err(e.into())
        }
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a stats or expand path holds: the device behind it (when the
/// kernel still has it) and whether it is a raw block device.
struct PathDevice {
    device: Option<nvme::BlockDevice>,
    block: bool,
    /// The filesystem type of the mount (empty for a raw device).
    fs_type: String,
}

/// The volume at `path`: NOT_FOUND when the path does not exist, is not a
/// mount, or holds another volume's device.
fn volume_at(volume_id: &str, path: &Path) -> NodeResult<PathDevice> {
    if !path.exists() {
        return Err(NodeError::NotFound(format!(
            "volume path {} does not exist",
            path.display()
        )));
    }
    let all = mount::mounts()?;
    let Some(m) = mount::mount_at(&all, path) else {
        return Err(NodeError::NotFound(format!(
            "volume {volume_id} is not mounted at {}",
            path.display()
        )));
    };
    let (maj, min, block) = device_number(path)?;
    let (maj, min) = if block {
        (maj, min)
    } else {
        (m.major, m.minor)
    };
    let device = nvme::block_device(maj, min);
    let want = VolumeId::parse(volume_id).ok().map(|v| v.nqn);
    match &device {
        Some(d) if d.nqn.is_none() || d.nqn != want => {
            return Err(NodeError::NotFound(format!(
                "{} holds /dev/{}, not volume {volume_id}",
                path.display(),
                d.name
            )))
        }
        // The device is gone: the mount must have been of an NVMe
        // namespace, and a malformed id cannot be at this path.
        None if want.is_none()
            || !(m.source.starts_with("/dev/nvme") || m.root.starts_with("/nvme")) =>
        {
            return Err(NodeError::NotFound(format!(
                "volume {volume_id} is not at {}",
                path.display()
            )))
        }
        _ => {}
    }
    Ok(PathDevice {
        device,
        block,
        fs_type: if block { String::new() } else { m.fs_type },
    })
}

fn capability(t: node_service_capability::rpc::Type) -> pb::NodeServiceCapability {
    pb::NodeServiceCapability {
        r#type: Some(node_service_capability::Type::Rpc(
            node_service_capability::Rpc { r#type: t as i32 },
        )),
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn node_stage_volume(
        &self,
        request: Request<pb::NodeStageVolumeRequest>,
    ) -> Result<Response<pb::NodeStageVolumeResponse>, Status> {
        let r = request.into_inner();
        ok(async {
            let volume = VolumeId::parse(&r.volume_id)?;
            let staging = required_path("staging_target_path", &r.staging_target_path)?;
            let capability = Capability::parse(r.volume_capability.as_ref())?;
            let params = ConnectParams::from_context(
                &volume.uuid,
                &r.publish_context,
                &r.volume_context,
                &self.cfg.nvme,
            )?;
            let _guard = self.locks.take(&r.volume_id)?;
            stage::stage(
                &self.cfg,
                StageRequest {
                    volume,
                    staging,
                    capability,
                    params,
                },
            )
            .await?;
            Ok(pb::NodeStageVolumeResponse {})
        }
        .await)
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn node_unstage_volume(
        &self,
        request: Request<pb::NodeUnstageVolumeRequest>,
    ) -> Result<Response<pb::NodeUnstageVolumeResponse>, Status> {
        let r = request.into_inner();
        ok(async {
            let volume = VolumeId::parse(&r.volume_id)?;
            let staging = required_path("staging_target_path", &r.staging_target_path)?;
            let _guard = self.locks.take(&r.volume_id)?;
            stage::unstage(&self.cfg, &volume, &staging).await?;
            Ok(pb::NodeUnstageVolumeResponse {})
        }
        .await)
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn node_publish_volume(
        &self,
        request: Request<pb::NodePublishVolumeRequest>,
    ) -> Result<Response<pb::NodePublishVolumeResponse>, Status> {
        let r = request.into_inner();
        ok(async {
            let volume = VolumeId::parse(&r.volume_id)?;
            let target = required_path("target_path", &r.target_path)?;
            let capability = Capability::parse(r.volume_capability.as_ref())?;
            if r.staging_target_path.is_empty() {
                // The spec's code: STAGE_UNSTAGE_VOLUME is offered.
                return Err(NodeError::FailedPrecondition(
                    "staging_target_path is missing (this plugin stages volumes first)".into(),
                ));
            }
            let staging = required_path("staging_target_path", &r.staging_target_path)?;
            let _guard = self.locks.take(&r.volume_id)?;
            publish::publish(PublishRequest {
                volume,
                staging,
                target,
                capability,
                read_only: r.readonly,
            })
            .await?;
            Ok(pb::NodePublishVolumeResponse {})
        }
        .await)
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn node_unpublish_volume(
        &self,
        request: Request<pb::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<pb::NodeUnpublishVolumeResponse>, Status> {
        let r = request.into_inner();
        ok(async {
            let volume = VolumeId::parse(&r.volume_id)?;
            let target = required_path("target_path", &r.target_path)?;
            let _guard = self.locks.take(&r.volume_id)?;
            publish::unpublish(&volume, &target).await?;
            Ok(pb::NodeUnpublishVolumeResponse {})
        }
        .await)
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn node_get_volume_stats(
        &self,
        request: Request<pb::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<pb::NodeGetVolumeStatsResponse>, Status> {
        let r = request.into_inner();
        ok(async {
            if r.volume_id.is_empty() {
                return Err(NodeError::invalid("volume id is missing"));
            }
            let path = volume_path(&r.volume_id, &r.volume_path)?;
            let at = volume_at(&r.volume_id, &path)?;
            let nqn = VolumeId::parse(&r.volume_id)?.nqn;
            let usage = if at.block {
                let total = at
                    .device
                    .as_ref()
                    .and_then(|d| nvme::size_bytes(&d.name))
                    .unwrap_or(0);
                vec![pb::VolumeUsage {
                    available: 0,
                    total: i64_of(total),
                    used: 0,
                    unit: Unit::Bytes as i32,
                }]
            } else {
                let p = path.clone();
                let u = stage::blocking(move || stats::fs_usage(&p)).await?;
                vec![
                    pb::VolumeUsage {
                        available: i64_of(u.available_bytes),
                        total: i64_of(u.total_bytes),
                        used: i64_of(u.used_bytes),
                        unit: Unit::Bytes as i32,
                    },
                    pb::VolumeUsage {
                        available: i64_of(u.available_inodes),
                        total: i64_of(u.total_inodes),
                        used: i64_of(u.used_inodes),
                        unit: Unit::Inodes as i32,
                    },
                ]
            };
            let (abnormal, message) = stats::condition(at.device.as_ref(), &nqn);
            if abnormal {
                tracing::warn!(%message, "volume condition abnormal");
            }
            Ok(pb::NodeGetVolumeStatsResponse {
                usage,
                volume_condition: Some(pb::VolumeCondition { abnormal, message }),
            })
        }
        .await)
    }

    #[instrument(skip_all, fields(volume = %request.get_ref().volume_id))]
    async fn node_expand_volume(
        &self,
        request: Request<pb::NodeExpandVolumeRequest>,
    ) -> Result<Response<pb::NodeExpandVolumeResponse>, Status> {
        let r = request.into_inner();
        ok(async {
            if r.volume_id.is_empty() {
                return Err(NodeError::invalid("volume id is missing"));
            }
            let path = volume_path(&r.volume_id, &r.volume_path)?;
            if let Some(c) = &r.volume_capability {
                Capability::parse(Some(c))?;
            }
            let at = volume_at(&r.volume_id, &path)?;
            let volume = VolumeId::parse(&r.volume_id)?;
            let _guard = self.locks.take(&r.volume_id)?;
            let Some(dev) = at.device else {
                return Err(NodeError::FailedPrecondition(format!(
                    "the block device of volume {} is gone",
                    volume.uuid
                )));
            };
            let required = r
                .capacity_range
                .as_ref()
                .map_or(0, |c| u64::try_from(c.required_bytes).unwrap_or(0));
            nvme::rescan(&volume.nqn);
            let start = std::time::Instant::now();
            let size = loop {
                let size = nvme::size_bytes(&dev.name).unwrap_or(0);
                if size >= required || start.elapsed() >= RESIZE_WAIT {
                    break size;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if size < required {
                return Err(NodeError::DeadlineExceeded(format!(
                    "/dev/{} is still {size} bytes after {RESIZE_WAIT:?}, {required} required",
                    dev.name
                )));
            }
            if !at.block {
                let device = Path::new("/dev").join(&dev.name);
                filesystem::grow(&at.fs_type, &device, &path).await?;
            }
            tracing::info!(volume = %volume.uuid, size_bytes = size, "expanded");
            Ok(pb::NodeExpandVolumeResponse {
                capacity_bytes: i64_of(size),
            })
        }
        .await)
    }

    async fn node_get_capabilities(
        &self,
        _request: Request<pb::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<pb::NodeGetCapabilitiesResponse>, Status> {
        use node_service_capability::rpc::Type;
        Ok(Response::new(pb::NodeGetCapabilitiesResponse {
            capabilities: vec![
                capability(Type::StageUnstageVolume),
                capability(Type::GetVolumeStats),
                capability(Type::ExpandVolume),
                capability(Type::VolumeCondition),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _request: Request<pb::NodeGetInfoRequest>,
    ) -> Result<Response<pb::NodeGetInfoResponse>, Status> {
        let segments = HashMap::from([(
            crate::NODE_TOPOLOGY_KEY.to_owned(),
            self.cfg.node_name.clone(),
        )]);
        Ok(Response::new(pb::NodeGetInfoResponse {
            node_id: self.cfg.node_name.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(pb::Topology { segments }),
        }))
    }
}
