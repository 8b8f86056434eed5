//! Usage and health of a staged or published volume: bytes and inodes from
//! `statvfs(2)` (a raw block volume: its size), and the volume condition
//! from the kernel's view of the device and its NVMe controllers.

use std::path::Path;

use super::{
    error::{NodeError, NodeResult},
    nvme::{self, BlockDevice},
};

/// Usage of a mounted filesystem, as `df` computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub total_bytes: u64,
    /// Free for unprivileged users (`df`'s Available).
    pub available_bytes: u64,
    /// Total minus free (`df`'s Used).
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub available_inodes: u64,
    pub used_inodes: u64,
}

/// `statvfs` of the filesystem mounted at `path`.
pub fn fs_usage(path: &Path) -> NodeResult<FsUsage> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| {
        NodeError::internal(format!(
            "statvfs {}: {}",
            path.display(),
            e.desc().to_lowercase()
        ))
    })?;
    let frag = s.fragment_size();
    let blocks = s.blocks();
    let (files, ffree) = (s.files(), s.files_free());
    Ok(FsUsage {
        total_bytes: blocks.saturating_mul(frag),
        available_bytes: s.blocks_available().saturating_mul(frag),
        used_bytes: blocks.saturating_sub(s.blocks_free()).saturating_mul(frag),
        total_inodes: files,
        available_inodes: s.files_available(),
        used_inodes: files.saturating_sub(ffree),
    })
}

/// The volume's condition: `(abnormal, message)`. Abnormal when its block
/// device is gone, or no controller of its NQN is live (the target is
/// unreachable and the kernel is reconnecting, or gave up).
pub fn condition(device: Option<&BlockDevice>, nqn: &str) -> (bool, String) {
    let Some(dev) = device else {
        return (true, format!("the block device of {nqn} is gone"));
    };
    let ctrls = nvme::controllers(nqn);
    if ctrls.is_empty() {
        return (
            true,
            format!("/dev/{} has no NVMe controller of {nqn} left", dev.name),
        );
    }
    let desc = nvme::describe(&ctrls);
    if !ctrls.iter().any(nvme::Controller::live) {
        return (
            true,
            format!("no live NVMe controller for /dev/{} ({desc})", dev.name),
        );
    }
    (false, format!("/dev/{} is connected ({desc})", dev.name))
}
