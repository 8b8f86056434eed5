//! NodeStageVolume and NodeUnstageVolume: connect the volume's target with
//! the kernel NVMe/TCP host and mount its filesystem at the staging path
//! (made first when the device has none), or bind the raw block device onto
//! a file in the staging directory; and undo exactly that.
//!
//! The staging location of a volume is its device's first mount in mount
//! order (publishing only adds bind mounts after it), so a volume staged at
//! one path is recognised, and refused, at another, also by a restarted
//! plugin.

use std::path::{Path, PathBuf};

use super::{
    config::{ConnectParams, NodeConfig},
    error::{NodeError, NodeResult},
    filesystem::{self, Signature},
    mount::{self, MountEntry},
    nvme,
    volume::{block_staging_file, device_number, Access, Capability, VolumeId},
};

/// A checked NodeStageVolume request.
#[derive(Debug)]
pub struct StageRequest {
    pub volume: VolumeId,
    pub staging: PathBuf,
    pub capability: Capability,
    pub params: ConnectParams,
}

/// Where the volume's device is staged, if it is: the first mount of its
/// filesystem, or the first bind of its device node.
fn staged_at(all: &[MountEntry], access: &Access, dev: &Path) -> NodeResult<Option<MountEntry>> {
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(match access {
        Access::Mount { .. } => {
            let (maj, min, _) = device_number(dev)?;
            mount::mounts_of_device(all, maj, min)
                .into_iter()
                .find(|m| m.root == "/")
        }
        Access::Block => mount::binds_of_device_node(all, &name).into_iter().next(),
    })
}

/// Stages the volume (idempotent).
pub async fn stage(cfg: &NodeConfig, req: StageRequest) -> NodeResult<()> {
    let StageRequest {
        volume,
        staging,
        capability,
        params,
    } = req;
    let target = match &capability.access {
        Access::Mount { .. } => staging.clone(),
        Access::Block => block_staging_file(&staging, &volume),
    };
    let all = mount::mounts()?;
    // Already connected: staged here (done), or elsewhere (refused).
    if let Some(dev) = nvme::find_device(&volume.nqn).map(|n| Path::new("/dev").join(n)) {
        if dev.exists() {
            if let Some(m) = staged_at(&all, &capability.access, &dev)? {
                if m.mount_point == target {
                    tracing::info!(volume = %volume.uuid, staging = %staging.display(), "already staged");
                    return Ok(());
                }
                return Err(NodeError::AlreadyExists(format!(
                    "volume {} is already staged at {}, not {}",
                    volume.uuid,
                    m.mount_point.display(),
                    staging.display()
                )));
            }
        }
    }
    if let Some(m) = mount::mount_at(&all, &target) {
        return Err(NodeError::AlreadyExists(format!(
            "{} already holds a mount of {} ({})",
            target.display(),
            m.source,
            m.fs_type
        )));
    }
    if !nvme::ensure_nvme_tcp().await {
        return Err(NodeError::FailedPrecondition(nvme::NO_NVME_TCP.to_owned()));
    }
    std::fs::create_dir_all(&staging)
        .map_err(|e| NodeError::internal(format!("cannot create {}: {e}", staging.display())))?;

    let connected_before = nvme::connected(&volume.nqn);
    if connected_before {
        tracing::info!(volume = %volume.uuid, nqn = %volume.nqn, "already connected; not connecting again");
    } else {
        tracing::info!(volume = %volume.uuid, target = %format!("{}:{}", params.host, params.port), "connecting");
        nvme::connect(&params, &cfg.host_nqn()).await?;
    }
    let done = attach(cfg, &volume, &params, &capability, &target).await;
    if let Err(e) = &done {
        if !connected_before {
            tracing::warn!(volume = %volume.uuid, error = %e, "staging failed; disconnecting");
            if let Err(e) = nvme::disconnect(&volume.nqn, cfg.nvme.device_wait).await {
                tracing::warn!(volume = %volume.uuid, error = %e, "disconnect after a failed stage");
            }
        }
    }
    done
}

/// After the connect: the device, its I/O timeout, then the filesystem or
/// the bind of the raw device.
async fn attach(
    cfg: &NodeConfig,
    volume: &VolumeId,
    params: &ConnectParams,
    capability: &Capability,
    target: &Path,
) -> NodeResult<()> {
    let dev = nvme::wait_device(&volume.nqn, cfg.nvme.device_wait).await?;
    if let Some(secs) = params.io_timeout_s {
        nvme::set_io_timeout(&volume.nqn, secs)?;
    }
    match &capability.access {
        Access::Block => {
            if !target.exists() {
                std::fs::File::create(target).map_err(|e| {
                    NodeError::internal(format!("cannot create {}: {e}", target.display()))
                })?;
            }
            let (dev, target) = (dev.clone(), target.to_owned());
            blocking(move || mount::bind(&dev, &target, false, &[])).await?;
        }
        Access::Mount { fs, flags } => {
            match filesystem::probe(&dev).await? {
                Signature::Empty => {
                    tracing::info!(volume = %volume.uuid, device = %dev.display(), fs = fs.name(), "formatting (no filesystem found)");
                    filesystem::make(&dev, *fs).await?;
                }
                Signature::Filesystem { fs_type, .. } if fs_type == fs.name() => {
                    tracing::info!(volume = %volume.uuid, device = %dev.display(), fs = %fs_type, "existing filesystem kept");
                }
                Signature::Filesystem { fs_type, .. } => {
                    return Err(NodeError::FailedPrecondition(format!(
                        "volume {} holds a {fs_type} filesystem, not the {} requested; it is never reformatted",
                        volume.uuid,
                        fs.name()
                    )))
                }
                Signature::Other(what) => {
                    return Err(NodeError::FailedPrecondition(format!(
                        "volume {} holds {what}; it is never formatted",
                        volume.uuid
                    )))
                }
            }
            let mut opts: Vec<String> =
                fs.mount_options().iter().map(|s| (*s).to_owned()).collect();
            opts.extend(flags.iter().cloned());
            if capability.read_only_mode {
                opts.push("ro".to_owned());
            }
            let (dev, target, fs) = (dev.clone(), target.to_owned(), fs.name());
            blocking(move || mount::mount_fs(&dev, &target, fs, &opts)).await?;
        }
    }
    tracing::info!(volume = %volume.uuid, device = %dev.display(), staging = %target.display(), "staged");
    Ok(())
}

/// Unstages the volume (idempotent): unmounts the staging path (or the
/// raw device's bind), then deletes every controller of its NQN.
pub async fn unstage(cfg: &NodeConfig, volume: &VolumeId, staging: &Path) -> NodeResult<()> {
    let all = mount::mounts()?;
    let device = nvme::find_device(&volume.nqn);
    let block_file = block_staging_file(staging, volume);
    for target in [staging.to_owned(), block_file.clone()] {
        let Some(m) = mount::mount_at(&all, &target) else {
            continue;
        };
        // Only our volume's mount is taken down: its device belongs to the
        // NQN, or is gone (the controller was deleted under the mount).
        let (maj, min) = if target == block_file {
            device_number(&target)
                .map(|(a, b, _)| (a, b))
                .unwrap_or((m.major, m.minor))
        } else {
            (m.major, m.minor)
        };
        if let Some(d) = nvme::block_device(maj, min) {
            if d.nqn.as_deref() != Some(volume.nqn.as_str()) {
                return Err(NodeError::FailedPrecondition(format!(
                    "{} holds /dev/{}, not volume {}",
                    target.display(),
                    d.name,
                    volume.uuid
                )));
            }
            let others: Vec<_> = if target == block_file {
                mount::binds_of_device_node(&all, &d.name)
            } else {
                mount::mounts_of_device(&all, maj, min)
            }
            .into_iter()
            .filter(|o| o.mount_point != target)
            .map(|o| o.mount_point.display().to_string())
            .collect();
            if !others.is_empty() {
                return Err(NodeError::FailedPrecondition(format!(
                    "volume {} is still published at {}",
                    volume.uuid,
                    others.join(", ")
                )));
            }
        }
        let t = target.clone();
        blocking(move || mount::unmount(&t)).await?;
        tracing::info!(volume = %volume.uuid, path = %target.display(), "unmounted");
    }
    if block_file.exists() {
        std::fs::remove_file(&block_file).map_err(|e| {
            NodeError::internal(format!("cannot remove {}: {e}", block_file.display()))
        })?;
    }
    let ctrls = nvme::controllers(&volume.nqn);
    if !ctrls.is_empty() {
        tracing::info!(volume = %volume.uuid, controllers = %nvme::describe(&ctrls), device = ?device, "disconnecting");
        nvme::disconnect(&volume.nqn, cfg.nvme.device_wait).await?;
    }
    tracing::info!(volume = %volume.uuid, staging = %staging.display(), "unstaged");
    Ok(())
}

/// Runs a blocking system call off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> NodeResult<T> + Send + 'static,
) -> NodeResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::internal(format!("blocking task failed: {e}")))?
}
