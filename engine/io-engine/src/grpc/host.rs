//! `HostRpc`: who this engine is and which block devices the node has.
//!
//! Block devices come from sysfs (`/sys/block`), read on a blocking thread.
//! Whatever is missing or odd there (no sysfs in a container, unreadable
//! attributes) is skipped or reported as unknown: the call never fails
//! because of it.

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use io_engine_api::v1::{self, host_rpc_server::HostRpc};
use tonic::{Request, Response, Status};
use tracing::{debug, instrument};

use super::HostIdentity;
use crate::pool::PoolRegistry;

/// The `HostRpc` service.
#[derive(Clone)]
pub struct HostService {
    registry: Arc<PoolRegistry>,
    host: HostIdentity,
}

impl HostService {
    pub fn new(registry: Arc<PoolRegistry>, host: HostIdentity) -> Self {
        Self { registry, host }
    }
}

#[tonic::async_trait]
impl HostRpc for HostService {
    #[instrument(skip_all, fields(node = %self.host.node_name))]
    async fn get_host_info(
        &self,
        _request: Request<v1::GetHostInfoRequest>,
    ) -> Result<Response<v1::HostInfo>, Status> {
        let pool_disks: Vec<String> = self
            .registry
            .list_pools()
            .into_iter()
            .flat_map(|p| p.disks)
            .collect();
        let block_devices = tokio::task::spawn_blocking(move || {
            let mut busy = devices_in_use("/proc/self/mounts", "/proc/swaps");
            busy.extend(pool_disks.iter().filter_map(|uri| devname_of_uri(uri)));
            scan_block_devices(Path::new("/sys/block"), &busy)
        })
        .await
        .unwrap_or_else(|e| {
            debug!(error = %e, "block device scan failed");
            Vec::new()
        });
        Ok(Response::new(v1::HostInfo {
            version: mayastor_version::version().to_string(),
            node_name: self.host.node_name.clone(),
            grpc_endpoint: self.host.grpc_endpoint.to_string(),
            block_devices,
        }))
    }
}

/// Lists the block devices under `sys_block` (normally `/sys/block`) and
/// their partitions, sorted by name. `busy` holds kernel names of devices
/// known to be in use (mounted, swap, pool disks).
///
/// Loop devices with no backing file (size 0) are left out.
pub fn scan_block_devices(sys_block: &Path, busy: &HashSet<String>) -> Vec<v1::BlockDevice> {
    let mut out = Vec::new();
    for (name, dir) in sub_dirs(sys_block) {
        let size_bytes = read_sectors(&dir);
        let devtype = if name.starts_with("loop") {
            "loop"
        } else {
            "disk"
        };
        if devtype == "loop" && size_bytes == 0 {
            continue;
        }
        let partitions: Vec<(String, PathBuf)> = sub_dirs(&dir)
            .into_iter()
            .filter(|(_, p)| p.join("partition").exists())
            .collect();
        let model = read_attr(&dir.join("device/model")).filter(|m| !m.is_empty());
        let available = partitions.is_empty() && is_free(&name, &dir, size_bytes, busy);
        out.push(v1::BlockDevice {
            devname: name,
            devtype: devtype.to_string(),
            size_bytes,
            model: model.clone(),
            available,
        });
        for (part, part_dir) in partitions {
            let size_bytes = read_sectors(&part_dir);
            let available = is_free(&part, &part_dir, size_bytes, busy);
            out.push(v1::BlockDevice {
                devname: part,
                devtype: "partition".to_string(),
                size_bytes,
                model: model.clone(),
                available,
            });
        }
    }
    out.sort_by(|a, b| a.devname.cmp(&b.devname));
    out
}

/// Whether a device without partitions could take a new pool.
fn is_free(name: &str, dir: &Path, size_bytes: u64, busy: &HashSet<String>) -> bool {
    let read_only = read_attr(&dir.join("ro")).is_some_and(|ro| ro == "1");
    let has_holders = !sub_entries(&dir.join("holders")).is_empty();
    size_bytes > 0 && !read_only && !has_holders && !busy.contains(name)
}

/// Kernel names of the devices mounted or used as swap, from the given
/// mount table and swap list.
fn devices_in_use(mounts: impl AsRef<Path>, swaps: impl AsRef<Path>) -> HashSet<String> {
    let mut busy = HashSet::new();
    let tables = [mounts.as_ref(), swaps.as_ref()];
    for table in tables {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines() {
            if let Some(source) = line.split_whitespace().next() {
                busy.extend(devname_of_path(source));
            }
        }
    }
    busy
}

/// Kernel name of the device a disk URI (`aio:///dev/sdb?...`, `/dev/sdb`)
/// refers to, when it is a device node.
fn devname_of_uri(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("aio://")
        .or_else(|| uri.strip_prefix("uring://"))
        .unwrap_or(uri);
    let path = rest.split('?').next().unwrap_or(rest);
    devname_of_path(path)
}

/// Kernel name of a `/dev/...` path, following symlinks
/// (`/dev/disk/by-id/...`, `/dev/mapper/...`).
fn devname_of_path(path: &str) -> Option<String> {
    if !path.starts_with("/dev/") {
        return None;
    }
    let resolved = fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    resolved
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
}

/// Subdirectories (following symlinks) of `dir` with UTF-8 names.
fn sub_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    sub_entries(dir)
        .into_iter()
        .filter(|(_, p)| p.is_dir())
        .collect()
}

/// Entries of `dir` with UTF-8 names; empty when it cannot be read.
fn sub_entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

/// A trimmed sysfs attribute.
fn read_attr(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Size of a block device in bytes (sysfs counts 512-byte sectors).
fn read_sectors(dir: &Path) -> u64 {
    read_attr(&dir.join("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0, |sectors| sectors.saturating_mul(512))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    #[test]
    fn scans_a_fake_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        write(&sys.join("sda/size"), "2048\n");
        write(&sys.join("sda/ro"), "0\n");
        write(&sys.join("sda/device/model"), "QEMU HARDDISK   \n");
        write(&sys.join("sda/sda1/size"), "1024\n");
        write(&sys.join("sda/sda1/partition"), "1\n");
        fs::create_dir_all(sys.join("sda/holders")).unwrap();
        write(&sys.join("sdb/size"), "4096\n");
        write(&sys.join("sdb/ro"), "0\n");
        write(&sys.join("sdc/size"), "4096\n");
        write(&sys.join("sdc/ro"), "1\n");
        write(&sys.join("sdd/size"), "4096\n");
        write(&sys.join("sdd/holders/dm-0"), "");
        write(&sys.join("loop0/size"), "0\n");
        write(&sys.join("loop1/size"), "8\n");
        fs::create_dir_all(sys.join("odd")).unwrap();
        write(&sys.join("not-a-dir"), "x");

        let busy: HashSet<String> = ["sdb".to_string()].into();
        let devs = scan_block_devices(sys, &busy);
        let summary: Vec<_> = devs
            .iter()
            .map(|d| {
                (
                    d.devname.as_str(),
                    d.devtype.as_str(),
                    d.size_bytes,
                    d.available,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("loop1", "loop", 4096, true),
                ("odd", "disk", 0, false),
                ("sda", "disk", 1 << 20, false),
                ("sda1", "partition", 512 << 10, true),
                ("sdb", "disk", 2 << 20, false),
                ("sdc", "disk", 2 << 20, false),
                ("sdd", "disk", 2 << 20, false),
            ]
        );
        assert_eq!(devs[2].model.as_deref(), Some("QEMU HARDDISK"));
        assert_eq!(devs[4].model, None);
    }

    #[test]
    fn odd_or_missing_sysfs_is_empty() {
        let busy = HashSet::new();
        assert!(scan_block_devices(Path::new("/nonexistent/sys/block"), &busy).is_empty());
    }

    #[test]
    fn devices_in_use_from_tables() {
        let root = tempfile::tempdir().unwrap();
        let mounts = root.path().join("mounts");
        let swaps = root.path().join("swaps");
        write(
            &mounts,
            "/dev/nonexistent-sdz1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n",
        );
        write(
            &swaps,
            "Filename Type Size Used Priority\n/dev/nonexistent-sdy2 partition 10 0 -2\n",
        );
        let busy = devices_in_use(&mounts, &swaps);
        assert!(busy.contains("nonexistent-sdz1"));
        assert!(busy.contains("nonexistent-sdy2"));
        assert_eq!(busy.len(), 2);
        assert!(devices_in_use(root.path().join("none"), root.path().join("none")).is_empty());
    }

    #[test]
    fn devname_of_disk_uris() {
        assert_eq!(
            devname_of_uri("aio:///dev/nonexistent-sdq?blk_size=4096").as_deref(),
            Some("nonexistent-sdq")
        );
        assert_eq!(
            devname_of_uri("/dev/nonexistent-sdq").as_deref(),
            Some("nonexistent-sdq")
        );
        assert_eq!(devname_of_uri("aio:///tmp/disk.img"), None);
        assert_eq!(devname_of_uri("malloc:///malloc0?size_mb=64"), None);
    }
}
