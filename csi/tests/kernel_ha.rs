//! High availability in the Linux kernel: the nvme-vm guest (Debian's
//! kernel, native NVMe multipath on) runs `csi-node` and `agent-ha-node`;
//! a 3-node local cluster (127.0.156.x) and `agent-ha-cluster` run on the
//! host. A 3-replica volume published on node-1 is staged by csi-node as a
//! raw block device, fio writes it with crc32c checksums and then verifies
//! every block, and node-1's engine is SIGKILLed while fio writes. The
//! node agent sees the path stuck connecting and reports it; the cluster
//! agent has the core republish the volume on another node and the node
//! agent connects the new path through csi-node and deletes the old one.
//!
//! Checked: fio ends with status 0 and no verify error; the guest's path
//! list holds one live controller of the volume, at the new target, and
//! none at the old; the switch-over is Successful. The I/O pause (the
//! longest gap between two completions in fio's per-I/O latency log) is
//! printed.
//!
//! The rig (relays, the agents, the guest) is `node_kit::ha`.

#![allow(clippy::unwrap_used)]

mod common;
mod node_kit;

use std::time::{Duration, Instant};

use common::Cluster;
use node_kit::{ha::*, *};

const PREFIX: &str = "127.0.156";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ha_target_killed_fio_verifies_on_the_new_path() {
    let t0 = Instant::now();
    let cluster = Cluster::up(PREFIX, 3, "256MiB");
    let rest = cluster.rest();
    let (id, _v) = create_published(&rest, 64 * MIB, 3, "node-1").await;
    let nqn = format!("nqn.2019-05.io.openebs:{id}");
    eprintln!("cluster and volume ready in {:.1?}", t0.elapsed());
    let rig = HaRig::start(&cluster).await;
    let g = &rig.guest;

    // Staged as a raw block device through node-1's forward.
    let dev = rig.stage_on_node_1(&id).await;

    // fio: sequential crc32c-checksummed writes of the whole volume, then
    // a verify pass; every completion logged.
    start_fio(g, &dev, "ha", 60, "");
    // fio writes for a few seconds (the multipath head keeps no I/O
    // statistics on this kernel, and fio writes its logs at the end).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_fio_running(g, "ha");
    assert!(cluster.kill_engine(1), "engine 1 was not running");
    let killed = Instant::now();
    eprintln!("engine node-1 SIGKILLed while fio writes");

    // fio finishes through the new path.
    rig.fio_clean(&nqn, "ha").await;
    eprintln!("fio finished clean {:.1?} after the kill", killed.elapsed());

    // The path list: the new target live, the old one gone.
    moved_off_node_1(&rest, g, &id).await;
    assert!(
        !rig.ha.log_lines("switch-over ended").is_empty() && rig.ha.logs().contains("Successful"),
        "{}",
        rig.ha.logs()
    );

    let pause_ms = io_pause_ms(g, "ha");
    eprintln!(
        "HA switch-over after SIGKILL: I/O pause {pause_ms} ms (longest gap between completions), accel {}",
        g.ok("echo ${NVMEVM_ACCEL:-?}").trim()
    );
    assert!(pause_ms > 0);
}
