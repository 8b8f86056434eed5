//! Split brain in the Linux kernel: the HA rig of `kernel_ha` (nvme-vm
//! guest with native multipath running `csi-node` and `agent-ha-node`, a
//! 3-node local cluster on 127.0.161.x and `agent-ha-cluster` on the host;
//! see `node_kit::ha`), but node-1's engine, the volume's target, is
//! frozen with SIGSTOP instead of killed while fio writes.
//!
//! 1. fio `sb1` (crc32c-checksummed sequential writes of 32 MiB, then a
//!    verify pass) runs; node-1's engine is frozen. The node agent sees the
//!    path stuck and reports it, the volume is republished on another node
//!    (its nexus's reservation preempts the old target's on every replica
//!    it opens, its own local replica included), the path is replaced, and
//!    fio ends clean.
//! 2. While node-1 stays frozen: its replica is not a child of the new
//!    target (nothing can reach it, so it cannot be fenced: it is left
//!    out), and fio `sb2` overwrites the same 32 MiB with other data
//!    (another seed), verified, so that any write of `sb1` the old target
//!    still holds would be visible if it landed. The guest's SHA-256 of
//!    the volume is taken.
//! 3. node-1's engine is resumed (SIGCONT) with `sb1`'s writes still
//!    queued in its sockets. Checked afterwards: the guest reads the
//!    SHA-256 it read after `sb2` verified, node-1's replica came back
//!    only through a full rebuild (every rebuild record of it is a full
//!    one, none partial), the old target is destroyed, and every replica,
//!    read directly from its own engine over NVMe/TCP (as the target
//!    node's host, the reservation holder), has exactly the guest's
//!    SHA-256.
//!
//! Not shown here: that the old target's queued writes did run after the
//! resume (the kernel may have ended those connections before); the
//! engine test `nexus_cluster::a_new_target_fences_the_old_one_on_its_own_local_replica`
//! shows such writes end with a reservation conflict.

#![allow(clippy::unwrap_used)]

mod common;
mod node_kit;

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use blockdev::{dynamic::SharedDevice, DmaBuf};
use common::Cluster;
use node_kit::{ha::*, *};
use nvmf_host::{ConnectOptions, Controller};
use openapi::{
    models::{ChildState, NodeStatus, Volume, VolumeStatus},
    CoreApi, RestClient,
};

const PREFIX: &str = "127.0.161";
const SIZE: u64 = 64 * MIB;
/// What each fio job writes and verifies (the first MiBs of the volume).
const FIO_MIB: u32 = 32;

/// Sends `signal` to a process.
fn signal(pid: i32, signal: &str) {
    let st = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{signal} {pid}");
}

/// A frozen engine, resumed when dropped (also when the test fails).
struct Frozen(Option<i32>);

impl Frozen {
    fn resume(&mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, "CONT");
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.resume();
    }
}

/// SHA-256 (hex) of `data`, by `sha256sum`.
fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The guest's SHA-256 of the first `SIZE` bytes of `dev` (direct reads
/// through the volume's live path).
fn guest_sha256(g: &Guest, dev: &str) -> String {
    g.ok(&format!(
        "dd if={dev} bs=1M count={} iflag=direct 2>/dev/null | sha256sum",
        SIZE / MIB
    ))
    .split_whitespace()
    .next()
    .unwrap()
    .to_owned()
}

async fn volume(rest: &RestClient, id: &uuid::Uuid) -> Volume {
    rest.get_volume(&id.to_string()).await.unwrap()
}

/// Polls `check` every 500 ms for up to `secs`.
async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reads replica `uuid` straight from its engine over NVMe/TCP, as the
/// engine of `holder` (whose nexus holds the replica's exclusive-access
/// reservation: nobody else may read): it is shared with that host first,
/// keeping the hosts it allows. Its SHA-256 over `SIZE` bytes.
async fn replica_sha256(rest: &RestClient, uuid: &str, holder: &str) -> String {
    let r = rest
        .get_replicas()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.uuid == uuid)
        .unwrap_or_else(|| panic!("replica {uuid} not listed"));
    let engine = rest.get_node(&r.node).await.unwrap();
    let grpc = engine.state.unwrap().grpc_endpoint;
    let holder_nqn = format!("nqn.2019-05.io.openebs:node-name:{holder}");
    let mut hosts = r.allowed_hosts.clone();
    if !hosts.contains(&holder_nqn) {
        hosts.push(holder_nqn.clone());
    }
    let mut cmd = Command::new(testkit::bin("io-engine-client", "io-engine-client"));
    cmd.args(["--endpoint", &grpc, "replica", "share", "--uuid", uuid]);
    for h in &hosts {
        cmd.args(["--allowed-host", h]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "replica share: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut opts = ConnectOptions::from_uri(&uri).unwrap();
    opts.hostid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, holder_nqn.as_bytes());
    opts.hostnqn = holder_nqn;
    opts.io_timeout_ms = 30_000;
    let ctrl = Controller::connect(opts).await.unwrap();
    let dev: SharedDevice = Arc::new(ctrl.namespace(1).await.unwrap());
    let mut data = Vec::with_capacity(SIZE as usize);
    let mut buf = DmaBuf::new(MIB as usize);
    for off in (0..SIZE).step_by(MIB as usize) {
        dev.read_at(off, &mut buf)
            .await
            .unwrap_or_else(|e| panic!("read replica {uuid} on {} at {off}: {e}", r.node));
        data.extend_from_slice(&buf);
    }
    let _ = ctrl.disconnect().await;
    sha256(&data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ha_split_brain_a_frozen_target_resumed_writes_nothing() {
    let t0 = Instant::now();
    let cluster = Cluster::up(PREFIX, 3, "256MiB");
    let rest = cluster.rest();
    let (id, _v) = create_published(&rest, SIZE, 3, "node-1").await;
    let nqn = format!("nqn.2019-05.io.openebs:{id}");
    let v = volume(&rest, &id).await;
    let old_replica = v
        .state
        .replica_topology
        .iter()
        .find(|(_, t)| t.node.as_deref() == Some("node-1"))
        .map(|(u, _)| u.clone())
        .expect("a replica on node-1");
    eprintln!("cluster and volume ready in {:.1?}", t0.elapsed());
    let rig = HaRig::start(&cluster).await;
    let g = &rig.guest;
    let dev = rig.stage_on_node_1(&id).await;

    // 1. Frozen under fio.
    start_fio(g, &dev, "sb1", FIO_MIB, "");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_fio_running(g, "sb1");
    let pid = cluster.engine_pid(1).expect("engine 1 runs");
    signal(pid, "STOP");
    let mut frozen = Frozen(Some(pid));
    let stopped = Instant::now();
    eprintln!("engine node-1 frozen (SIGSTOP) while fio writes");
    rig.fio_clean(&nqn, "sb1").await;
    eprintln!(
        "fio sb1 finished clean {:.1?} after the freeze, I/O pause {} ms",
        stopped.elapsed(),
        io_pause_ms(g, "sb1")
    );
    let new_node = moved_off_node_1(&rest, g, &id).await;
    let v = volume(&rest, &id).await;

    // 2. node-1 still frozen: its replica is out of the new target.
    let target = v.state.target.as_ref().expect("published");
    assert!(
        target
            .children
            .iter()
            .all(|c| !c.uri.contains(&old_replica)),
        "the frozen node's replica is a child of the new target: {:?}",
        target.children
    );
    start_fio(g, &dev, "sb2", FIO_MIB, "--randseed=4242");
    rig.fio_clean(&nqn, "sb2").await;
    let before = guest_sha256(g, &dev);

    // 3. Resumed with sb1's writes queued.
    frozen.resume();
    let resumed = Instant::now();
    eprintln!(
        "engine node-1 resumed (SIGCONT) after {:.1?} frozen",
        stopped.elapsed()
    );
    wait_until("node-1 online again", 60, || async {
        let n = rest.get_node("node-1").await.map_err(|e| e.to_string())?;
        match n.state.map(|s| s.status) {
            Some(NodeStatus::Online) => Ok(()),
            s => Err(format!("{s:?}")),
        }
    })
    .await;
    // The old target's replica comes back (full rebuild) and the volume
    // is whole again.
    wait_until("the volume online with 3 replicas in sync", 180, || async {
        let v = volume(&rest, &id).await;
        let t = v.state.target.as_ref().ok_or("no target")?;
        let online = t
            .children
            .iter()
            .filter(|c| c.state == ChildState::Online)
            .count();
        if v.state.status == VolumeStatus::Online && online == 3 {
            Ok(())
        } else {
            Err(format!("{:?}: {:?}", v.state.status, t.children))
        }
    })
    .await;
    eprintln!(
        "volume whole again {:.1?} after the resume",
        resumed.elapsed()
    );
    // The old target itself is gone once its engine answers again.
    wait_until("the old target destroyed", 60, || async {
        let left: Vec<String> = rest
            .get_nexuses()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|n| n.node == "node-1")
            .map(|n| n.uuid)
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("nexuses left on node-1: {left:?}"))
        }
    })
    .await;
    let history = rest.get_rebuild_history(&id.to_string()).await.unwrap();
    let back: Vec<_> = history
        .records
        .iter()
        .filter(|r| r.child_uri.contains(&old_replica))
        .collect();
    assert!(
        back.iter().any(|r| r.rebuild_job_state == "completed"),
        "no completed rebuild of the old target's replica: {history:?}"
    );
    assert!(
        back.iter().all(|r| !r.is_partial),
        "the old target's replica came back through a partial rebuild: {history:?}"
    );

    for r in &back {
        eprintln!(
            "rebuild of the old target's replica: {} partial={} {} of {} blocks transferred",
            r.rebuild_job_state, r.is_partial, r.blocks_transferred, r.blocks_total
        );
    }

    // What the host verified is what it reads and what every replica
    // holds.
    assert_eq!(guest_sha256(g, &dev), before, "the host's data changed");
    let v = volume(&rest, &id).await;
    let mut sums = Vec::new();
    for (uuid, t) in &v.state.replica_topology {
        let sum = replica_sha256(&rest, uuid, &new_node).await;
        eprintln!("replica {uuid} on {:?}: sha256 {sum}", t.node);
        sums.push((t.node.clone(), sum));
    }
    assert_eq!(sums.len(), 3);
    for (node, sum) in &sums {
        assert_eq!(
            sum, &before,
            "replica on {node:?} differs from the host's data"
        );
    }
    let old_log =
        std::fs::read_to_string(cluster.logs_dir().join("io-engine-1.log")).unwrap_or_default();
    eprintln!(
        "split brain: old target frozen {:.1?}; after its resume its log shows {} reservation conflict line(s)",
        resumed.duration_since(stopped),
        old_log.matches("reservation conflict").count()
    );
}
