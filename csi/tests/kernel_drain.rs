//! A drain with HA in the Linux kernel: the nvme-vm guest (Debian's
//! kernel, native NVMe multipath on) runs `csi-node` and `agent-ha-node`
//! (which registers with the cluster agent); a 3-node local cluster
//! (127.0.165.x) and `agent-ha-cluster` run on the host. A 3-replica
//! volume published on node-1 is staged by csi-node as a raw block
//! device, fio writes it with crc32c checksums and then verifies every
//! block, and node-1 is drained through the REST API while fio writes.
//!
//! The cluster agent moves the target make before break: the core sets
//! the old target ANA inaccessible (the kernel queues the I/O instead of
//! failing it, the old path staying live) and publishes the new one; the
//! node agent connects the new path through csi-node (the queued I/O goes
//! there) and deletes the old one; then the old target is destroyed and
//! the node is Drained.
//!
//! Checked: fio ends with status 0, no I/O error and no verify failure;
//! the guest's path list holds one live controller of the volume, at the
//! new target, and none at the old; the switch-over is a Successful drain
//! switch-over; node-1 is Drained. The I/O pause (longest gap between two
//! completions) is printed.

#![allow(clippy::unwrap_used)]

mod common;
mod node_kit;

use std::time::{Duration, Instant};

use common::Cluster;
use node_kit::{ha::*, *};
use openapi::{models::DrainStatus, CoreApi};

const PREFIX: &str = "127.0.165";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ha_drain_moves_the_target_while_fio_verifies() {
    let t0 = Instant::now();
    let cluster = Cluster::up(PREFIX, 3, "256MiB");
    let rest = cluster.rest();
    let rig = HaRig::start(&cluster).await;
    let g = &rig.guest;
    let (id, _v) = create_published(&rest, 64 * MIB, 3, "node-1").await;
    let nqn = format!("nqn.2019-05.io.openebs:{id}");
    let dev = rig.stage_on_node_1(&id).await;
    eprintln!(
        "cluster, guest and staged volume ready in {:.1?}",
        t0.elapsed()
    );

    start_fio(g, &dev, "drain", 16, "");
    // fio writes for a few seconds (it writes its logs at the end).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_fio_running(g, "drain");
    let drain_requested = std::time::SystemTime::now();
    rest.put_node_drain("node-1", "upgrade").await.unwrap();
    let drained_at = Instant::now();
    eprintln!("node-1 draining while fio writes");

    if rig.wait_fio(&nqn, "drain").await != "0" {
        eprintln!("guest kernel log:\n{}", g.ok("dmesg | tail -80"));
    }
    rig.fio_clean(&nqn, "drain").await;
    eprintln!(
        "fio finished clean {:.1?} after the drain began",
        drained_at.elapsed()
    );

    // The path list: the new target live, the old one gone.
    moved_off_node_1(&rest, g, &id).await;
    let started = rig.ha.log_lines("drain: switch-over started");
    let ended = rig.ha.log_lines("switch-over ended");
    if let (Some((s, _)), Some((e, _))) = (started.first(), ended.last()) {
        eprintln!(
            "drain switch-over took {:?} (started {:?} after the drain request)",
            e.duration_since(*s).unwrap_or_default(),
            s.duration_since(drain_requested).unwrap_or_default()
        );
    }
    assert!(
        ended.iter().any(|(_, l)| l.contains("Successful")),
        "{}",
        rig.ha.logs()
    );
    assert!(
        !rig.ha.log_lines("drain: switch-over started").is_empty(),
        "{}",
        rig.ha.logs()
    );

    // The node is drained: no target of any volume is left on it.
    testkit::eventually("node-1 Drained", 60, || {
        let rest = rest.clone();
        async move {
            let s = rest
                .get_node("node-1")
                .await
                .map_err(|e| e.to_string())?
                .spec
                .and_then(|s| s.cordon_drain_state.drain_status);
            (s == Some(DrainStatus::Drained))
                .then_some(())
                .ok_or(format!("{s:?}"))
        }
    })
    .await;

    let pause_ms = io_pause_ms(g, "drain");
    eprintln!(
        "HA drain: I/O pause {pause_ms} ms (longest gap between completions), accel {}",
        g.ok("echo ${NVMEVM_ACCEL:-?}").trim()
    );
    assert!(pause_ms > 0);
}
