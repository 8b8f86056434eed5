//! NodePublishVolume and NodeUnpublishVolume: bind the staged filesystem
//! onto the pod's target directory (read-only when asked), or bind the raw
//! block device node onto the target file; and undo exactly that.

use std::path::{Path, PathBuf};

use super::{
    error::{NodeError, NodeResult},
    mount::{self, MountEntry},
    nvme,
    stage::blocking,
    volume::{block_staging_file, device_number, Access, Capability, VolumeId},
};

/// A checked NodePublishVolume request.
#[derive(Debug)]
pub struct PublishRequest {
    pub volume: VolumeId,
    pub staging: PathBuf,
    pub target: PathBuf,
    pub capability: Capability,
    pub read_only: bool,
}

/// The NQN of the device behind mount `m` (or behind the bound device node
/// at `path`), when the kernel still has it.
fn nqn_behind(m: &MountEntry, path: &Path, block: bool) -> Option<String> {
    let (maj, min) = if block {
        device_number(path).ok().map(|(a, b, _)| (a, b))?
    } else {
        (m.major, m.minor)
    };
    nvme::block_device(maj, min)?.nqn
}

/// Publishes the staged volume at the target (idempotent).
pub async fn publish(req: PublishRequest) -> NodeResult<()> {
    let PublishRequest {
        volume,
        staging,
        target,
        capability,
        read_only,
    } = req;
    let block = capability.access == Access::Block;
    let read_only = read_only || capability.read_only_mode;
    let all = mount::mounts()?;
    let source = if block {
        block_staging_file(&staging, &volume)
    } else {
        staging.clone()
    };
    let staged = mount::mount_at(&all, &source)
        .filter(|m| nqn_behind(m, &source, block).as_deref() == Some(volume.nqn.as_str()));
    if staged.is_none() {
        return Err(NodeError::FailedPrecondition(format!(
            "volume {} is not staged at {}",
            volume.uuid,
            staging.display()
        )));
    }
    if let Some(m) = mount::mount_at(&all, &target) {
        if nqn_behind(&m, &target, block).as_deref() != Some(volume.nqn.as_str()) {
            return Err(NodeError::AlreadyExists(format!(
                "{} already holds another mount ({} {})",
                target.display(),
                m.fs_type,
                m.source
            )));
        }
        if m.read_only() != read_only {
            return Err(NodeError::AlreadyExists(format!(
                "volume {} is already published at {} {}",
                volume.uuid,
                target.display(),
                if m.read_only() {
                    "read-only"
                } else {
                    "read-write"
                }
            )));
        }
        tracing::info!(volume = %volume.uuid, target = %target.display(), "already published");
        return Ok(());
    }
    let create = if block {
        target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                if target.exists() {
                    Ok(())
                } else {
                    std::fs::File::create(&target).map(drop)
                }
            })
    } else {
        std::fs::create_dir_all(&target)
    };
    create.map_err(|e| NodeError::internal(format!("cannot create {}: {e}", target.display())))?;
    let flags = match &capability.access {
        Access::Mount { flags, .. } => flags.clone(),
        Access::Block => Vec::new(),
    };
    let (s, t) = (source.clone(), target.clone());
    blocking(move || mount::bind(&s, &t, read_only, &flags)).await?;
    tracing::info!(volume = %volume.uuid, target = %target.display(), read_only, block, "published");
    Ok(())
}

/// Unpublishes the volume from the target (idempotent): unmounts it and
/// removes the directory or file.
pub async fn unpublish(volume: &VolumeId, target: &Path) -> NodeResult<()> {
    let all = mount::mounts()?;
    if let Some(m) = mount::mount_at(&all, target) {
        let block = !target.is_dir();
        if let Some(nqn) = nqn_behind(&m, target, block) {
            if nqn != volume.nqn {
                return Err(NodeError::FailedPrecondition(format!(
                    "{} holds another volume ({nqn}), not {}",
                    target.display(),
                    volume.uuid
                )));
            }
        }
        let t = target.to_owned();
        blocking(move || mount::unmount(&t)).await?;
        tracing::info!(volume = %volume.uuid, target = %target.display(), "unmounted");
    }
    let removed = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(md) if md.is_dir() => std::fs::remove_dir(target),
        Ok(_) => std::fs::remove_file(target),
    };
    removed.map_err(|e| NodeError::internal(format!("cannot remove {}: {e}", target.display())))?;
    tracing::info!(volume = %volume.uuid, target = %target.display(), "unpublished");
    Ok(())
}
