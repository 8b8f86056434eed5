//! `csi-node` in the Linux kernel: the plugin runs inside the nvme-vm guest
//! (Debian's kernel, nvme-cli, mkfs, busybox) and stages volumes published
//! by a 3-node local cluster on the host (127.0.110.x), through the
//! kernel's NVMe/TCP host. The test drives the plugin's gRPC from the host
//! through a forwarded port and checks the guest with a shell on another.
//!
//! One guest boot for the whole scenario (TCG is slow):
//!
//! 1. ext4 (3 replicas): stage (twice at the same path: OK; at another:
//!    ALREADY_EXISTS), publish, files written with checksums, stats equal
//!    to `df`; unpublish, unstage (no controller of the NQN left); stage
//!    and publish again: the files read back intact and the filesystem
//!    uuid is unchanged (no reformat); the volume grown through REST and
//!    NodeExpandVolume: `df` shows the new size, stats still equal `df`;
//!    the target's engine SIGKILLed: stats report an abnormal condition;
//!    the engine restarted and the target recreated: the same mount reads
//!    the files back and takes new writes (no remount); unpublish, unstage.
//! 2. xfs (300 MiB): stage, publish, files, unstage, stage again: files
//!    intact, same filesystem uuid.
//! 3. raw block: stage, publish onto a file, a checksummed pattern written
//!    and read back through the device, unstage, stage again: the pattern
//!    reads back; stats give the device size.
//!
//! The publish context is what the controller gives, with the target's
//! address replaced by the guest's forward (10.0.2.100:4420, relayed on
//! the host to the target engine's listener).

#![allow(clippy::unwrap_used)]

mod common;
mod node_kit;

use std::time::{Duration, Instant};

use common::{block_cap, rwo_fs, Cluster};
use csi::v1::{
    node_client::NodeClient, volume_usage::Unit, CapacityRange, NodeExpandVolumeRequest,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodeStageVolumeRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, VolumeCapability,
};
use node_kit::*;
use openapi::{models::ResizeVolumeBody, CoreApi};
use tonic::{transport::Channel, Code};

const PREFIX: &str = "127.0.110";

struct Vol {
    id: String,
    nqn: String,
    ctx: std::collections::HashMap<String, String>,
    cap: VolumeCapability,
    staging: String,
    target: String,
}

impl Vol {
    async fn stage_at(
        &self,
        node: &mut NodeClient<Channel>,
        staging: &str,
    ) -> Result<(), tonic::Status> {
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: self.id.clone(),
            publish_context: self.ctx.clone(),
            staging_target_path: staging.to_owned(),
            volume_capability: Some(self.cap.clone()),
            secrets: Default::default(),
            volume_context: Default::default(),
        })
        .await
        .map(drop)
    }

    async fn stage(&self, node: &mut NodeClient<Channel>) {
        let t = Instant::now();
        self.stage_at(node, &self.staging).await.unwrap();
        eprintln!("NodeStageVolume {} in {:.1?}", self.id, t.elapsed());
    }

    async fn publish(&self, node: &mut NodeClient<Channel>) {
        node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: self.id.clone(),
            publish_context: self.ctx.clone(),
            staging_target_path: self.staging.clone(),
            target_path: self.target.clone(),
            volume_capability: Some(self.cap.clone()),
            readonly: false,
            secrets: Default::default(),
            volume_context: Default::default(),
        })
        .await
        .unwrap();
    }

    async fn unpublish(&self, node: &mut NodeClient<Channel>) {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: self.id.clone(),
            target_path: self.target.clone(),
        })
        .await
        .unwrap();
    }

    async fn unstage(&self, node: &mut NodeClient<Channel>) {
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: self.id.clone(),
            staging_target_path: self.staging.clone(),
        })
        .await
        .unwrap();
    }

    async fn stats(&self, node: &mut NodeClient<Channel>) -> NodeGetVolumeStatsResponse {
        node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: self.id.clone(),
            volume_path: self.target.clone(),
            staging_target_path: self.staging.clone(),
        })
        .await
        .unwrap()
        .into_inner()
    }

    /// Controllers of the volume's NQN in the guest.
    fn controllers(&self, g: &Guest) -> usize {
        let out = g.ok(&format!(
            "grep -lx '{}' /sys/class/nvme/*/subsysnqn 2>/dev/null | wc -l",
            self.nqn
        ));
        out.trim().parse().unwrap()
    }

    /// The filesystem uuid of the device mounted at the target.
    fn fs_uuid(&self, g: &Guest) -> String {
        let out = g.ok(&format!(
            "dev=$(awk '$2==\"{}\" {{print $1}}' /proc/mounts | head -1); blkid -p -o value -s UUID $dev",
            self.target
        ));
        let u = out.trim().to_owned();
        assert!(!u.is_empty(), "no filesystem uuid at {}", self.target);
        u
    }
}

fn new_vol(id: uuid::Uuid, v: &openapi::models::Volume, cap: VolumeCapability, name: &str) -> Vol {
    Vol {
        id: id.to_string(),
        nqn: format!("nqn.2019-05.io.openebs:{id}"),
        ctx: publish_context(v),
        cap,
        staging: format!("/var/lib/kubelet/plugins/csi/{name}/globalmount"),
        target: format!("/var/lib/kubelet/pods/{name}/volumes/mount"),
    }
}

/// Writes `n` files of 1 MiB of random data under `dir`; their sha256sum
/// lines.
fn write_files(g: &Guest, dir: &str, prefix: &str, n: u32) -> String {
    let files: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}")).collect();
    g.ok(&format!(
        "cd {dir} && for f in {0}; do dd if=/dev/urandom of=$f bs=64k count=16 2>/dev/null || exit 1; done; sync; sha256sum {0}",
        files.join(" ")
    ))
}

fn sums(g: &Guest, dir: &str, files: &str) -> String {
    g.ok(&format!("cd {dir} && sha256sum {files}"))
}

/// `df -k` of `dir`: (1K-blocks, used, available).
fn df(g: &Guest, dir: &str) -> (u64, u64, u64) {
    let out = g.ok(&format!("df -k {dir} | tail -1"));
    let f: Vec<u64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(f.len() >= 3, "df: {out}");
    (f[0], f[1], f[2])
}

/// NodeGetVolumeStats equals `df` (KiB, rounded as busybox df does) and
/// the inode counts of `stat -f`.
fn assert_stats_match_df(g: &Guest, dir: &str, s: &NodeGetVolumeStatsResponse) {
    let (blocks, used, avail) = df(g, dir);
    let bytes = s
        .usage
        .iter()
        .find(|u| u.unit == Unit::Bytes as i32)
        .unwrap();
    let kib = |b: i64| (b as u64 + 512) / 1024;
    assert_eq!(
        (kib(bytes.total), kib(bytes.used), kib(bytes.available)),
        (blocks, used, avail),
        "NodeGetVolumeStats bytes vs df -k {dir}"
    );
    let out = g.ok(&format!("stat -f -c '%c %d' {dir}"));
    let f: Vec<i64> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
    let inodes = s
        .usage
        .iter()
        .find(|u| u.unit == Unit::Inodes as i32)
        .unwrap();
    assert_eq!(
        (inodes.total, inodes.total - inodes.used),
        (f[0], f[1]),
        "inodes vs stat -f"
    );
}

async fn wait_condition(
    vol: &Vol,
    node: &mut NodeClient<Channel>,
    abnormal: bool,
    limit: Duration,
) -> NodeGetVolumeStatsResponse {
    let start = Instant::now();
    loop {
        let s = vol.stats(node).await;
        let c = s.volume_condition.clone().unwrap();
        if c.abnormal == abnormal {
            eprintln!(
                "condition abnormal={abnormal} after {:.1?}: {}",
                start.elapsed(),
                c.message
            );
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "condition still abnormal={} after {limit:?}: {}",
            c.abnormal,
            c.message
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_stage_publish_expand_and_target_loss() {
    let t0 = Instant::now();
    let cluster = Cluster::up(PREFIX, 3, "1GiB");
    let rest = cluster.rest();
    let relay = Relay::start(cluster.engine_nvmf(1));
    let (ext4_id, v) = create_published(&rest, 64 * MIB, 3, "node-1").await;
    let ext4 = new_vol(ext4_id, &v, rwo_fs("ext4"), "ext4");
    let (xfs_id, v) = create_published(&rest, 300 * MIB, 1, "node-1").await;
    let xfs = new_vol(xfs_id, &v, rwo_fs("xfs"), "xfs");
    let (blk_id, v) = create_published(&rest, 32 * MIB, 1, "node-1").await;
    let mut blk = new_vol(blk_id, &v, block_cap(), "block");
    blk.target = "/var/lib/kubelet/plugins/csi/volumeDevices/publish/block/pod".into();
    eprintln!("cluster and volumes ready in {:.1?}", t0.elapsed());

    let g = Guest::start(GuestSetup {
        guest_forwards: vec![(4420, relay.port)],
        ..Default::default()
    })
    .await;
    let mut node = g.node().await;

    // ---- ext4: stage, idempotence, another path refused.
    let t = Instant::now();
    ext4.stage(&mut node).await;
    ext4.stage(&mut node).await;
    let other = ext4
        .stage_at(&mut node, "/var/lib/kubelet/plugins/csi/other/globalmount")
        .await;
    assert_eq!(other.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(ext4.controllers(&g), 1);
    ext4.publish(&mut node).await;
    ext4.publish(&mut node).await;
    let mounts = g.ok("cat /proc/mounts");
    assert!(
        mounts.contains(&format!(" {} ext4 ", ext4.staging))
            && mounts.contains(&format!(" {} ext4 ", ext4.target)),
        "{mounts}"
    );
    let written = write_files(&g, &ext4.target, "f", 4);
    let uuid = ext4.fs_uuid(&g);
    let s = ext4.stats(&mut node).await;
    assert!(!s.volume_condition.clone().unwrap().abnormal, "{s:?}");
    assert_stats_match_df(&g, &ext4.target, &s);

    // Unpublish, unstage (twice each: idempotent): no controller left.
    ext4.unpublish(&mut node).await;
    ext4.unpublish(&mut node).await;
    ext4.unstage(&mut node).await;
    ext4.unstage(&mut node).await;
    assert_eq!(ext4.controllers(&g), 0, "a controller of the NQN is left");
    let mounts = g.ok("cat /proc/mounts");
    assert!(
        !mounts.contains(&ext4.staging) && !mounts.contains(&ext4.target),
        "{mounts}"
    );

    // Again: the files are intact and the filesystem was not remade.
    ext4.stage(&mut node).await;
    ext4.publish(&mut node).await;
    assert_eq!(sums(&g, &ext4.target, "f1 f2 f3 f4"), written);
    assert_eq!(ext4.fs_uuid(&g), uuid, "the filesystem was remade");
    eprintln!("ext4 stage/publish/restage in {:.1?}", t.elapsed());

    // ---- Expansion: the volume grown through REST, then the node.
    let t = Instant::now();
    let (before, _, _) = df(&g, &ext4.target);
    rest.put_volume_size(&ext4.id, ResizeVolumeBody { size: 96 * MIB })
        .await
        .unwrap();
    let r = node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: ext4.id.clone(),
            volume_path: ext4.target.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: (96 * MIB) as i64,
                limit_bytes: 0,
            }),
            staging_target_path: ext4.staging.clone(),
            volume_capability: Some(ext4.cap.clone()),
            secrets: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, (96 * MIB) as i64);
    let (after, _, _) = df(&g, &ext4.target);
    assert!(
        after >= before + 28 * 1024,
        "df: {before} KiB before, {after} KiB after growing by 32 MiB"
    );
    let s = wait_condition(&ext4, &mut node, false, Duration::from_secs(60)).await;
    assert_stats_match_df(&g, &ext4.target, &s);
    assert_eq!(sums(&g, &ext4.target, "f1 f2 f3 f4"), written);
    eprintln!("expansion in {:.1?}", t.elapsed());

    // ---- The target's engine SIGKILLed under the mount.
    let t = Instant::now();
    assert!(cluster.kill_engine(1), "io-engine-1 was not running");
    wait_condition(&ext4, &mut node, true, Duration::from_secs(60)).await;
    // Restarted; the core agent recreates the target on it.
    let out = cluster.run(&["up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_condition(&ext4, &mut node, false, Duration::from_secs(180)).await;
    assert_eq!(sums(&g, &ext4.target, "f1 f2 f3 f4"), written);
    let more = write_files(&g, &ext4.target, "g", 2);
    g.ok("echo 3 > /proc/sys/vm/drop_caches");
    assert_eq!(sums(&g, &ext4.target, "g1 g2"), more);
    assert_eq!(sums(&g, &ext4.target, "f1 f2 f3 f4"), written);
    eprintln!("target loss and recovery in {:.1?}", t.elapsed());
    ext4.unpublish(&mut node).await;
    ext4.unstage(&mut node).await;
    assert_eq!(ext4.controllers(&g), 0);

    // ---- xfs.
    let t = Instant::now();
    xfs.stage(&mut node).await;
    xfs.publish(&mut node).await;
    let mounts = g.ok("cat /proc/mounts");
    assert!(
        mounts.contains(&format!(" {} xfs ", xfs.staging)),
        "{mounts}"
    );
    assert!(
        mounts.contains("nouuid"),
        "xfs mounted without nouuid: {mounts}"
    );
    let written = write_files(&g, &xfs.target, "x", 3);
    let uuid = xfs.fs_uuid(&g);
    let s = xfs.stats(&mut node).await;
    assert_stats_match_df(&g, &xfs.target, &s);
    xfs.unpublish(&mut node).await;
    xfs.unstage(&mut node).await;
    assert_eq!(xfs.controllers(&g), 0);
    xfs.stage(&mut node).await;
    xfs.publish(&mut node).await;
    assert_eq!(sums(&g, &xfs.target, "x1 x2 x3"), written);
    assert_eq!(xfs.fs_uuid(&g), uuid, "the filesystem was remade");
    xfs.unpublish(&mut node).await;
    xfs.unstage(&mut node).await;
    assert_eq!(xfs.controllers(&g), 0);
    eprintln!("xfs in {:.1?}", t.elapsed());

    // ---- Raw block: a pattern through the device.
    let t = Instant::now();
    blk.stage(&mut node).await;
    blk.stage(&mut node).await;
    blk.publish(&mut node).await;
    let dev = &blk.target;
    let out = g.ok(&format!("[ -b {dev} ] && echo block"));
    assert!(out.contains("block"), "{dev} is not a block device: {out}");
    let pattern = g.ok(&format!(
        "dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null && \
         dd if=/tmp/pattern of={dev} bs=1M oflag=direct conv=fsync 2>/dev/null && \
         sha256sum < /tmp/pattern"
    ));
    let read = |g: &Guest| {
        g.ok(&format!(
            "dd if={dev} bs=1M count=8 iflag=direct 2>/dev/null | sha256sum"
        ))
    };
    assert_eq!(read(&g), pattern);
    let s = blk.stats(&mut node).await;
    let bytes = s
        .usage
        .iter()
        .find(|u| u.unit == Unit::Bytes as i32)
        .unwrap();
    assert_eq!(bytes.total, (32 * MIB) as i64);
    assert!(!s.volume_condition.unwrap().abnormal);
    blk.unpublish(&mut node).await;
    blk.unstage(&mut node).await;
    assert_eq!(blk.controllers(&g), 0);
    g.ok(&format!("[ ! -e {dev} ]"));
    blk.stage(&mut node).await;
    blk.publish(&mut node).await;
    assert_eq!(
        read(&g),
        pattern,
        "the pattern did not survive unstage and stage"
    );
    blk.unpublish(&mut node).await;
    blk.unstage(&mut node).await;
    assert_eq!(blk.controllers(&g), 0);
    eprintln!("raw block in {:.1?}", t.elapsed());
    eprintln!("whole scenario in {:.1?}", t0.elapsed());
}
