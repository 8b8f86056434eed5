//! Three real engines on 127.0.1.x, real etcd: a 3-child nexus (one local
//! replica, two remote ones over NVMe/TCP) published over NVMe/TCP, a
//! verifying writer through our initiator, and SIGKILLs.
//!
//! - A remote child's engine dies under the writer: the writer sees no
//!   error, the child is FAULTED with a reason, the nexus DEGRADED, and
//!   every acknowledged block reads back from every healthy child.
//! - The nexus's own engine dies (unclean): the recreated nexus starts from
//!   one child the nexus info in etcd records as healthy and rebuilds the
//!   others from it; the stale child is never a rebuild source (it is
//!   listed first on purpose) and all children end identical and correct.
//! - Fencing (127.0.1.3x and 127.0.160.x): a new target of the volume
//!   preempts the old one's reservation on every replica, also on a replica
//!   of its own engine that it uses directly (a local child), so the old
//!   target, which reaches that replica over NVMe/TCP, cannot write to it.

#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use blockdev::dynamic::SharedDevice;
use common::{child_of, etcd::Etcd, free_port, ok, verify::checksum, verify::Writer, Engine};
use nvmf_host::{ConnectOptions, Controller};
use serde_json::Value;
use uuid::Uuid;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 64 * MIB;
const TEST_HOST: &str = "nqn.2019-05.io.openebs:node-name:test-host";
const CHILD_TIMEOUT_MS: u64 = 3000;

fn node_nqn(node: &str) -> String {
    format!("nqn.2019-05.io.openebs:node-name:{node}")
}

/// Runs a client command without stalling the runtime's workers.
fn run(engine: &Engine, args: &[&str]) -> String {
    tokio::task::block_in_place(|| ok(engine.client(args)))
}

fn start_engine(ip: &str, node: &str, etcd: &Etcd) -> Engine {
    let nvmf = format!("{ip}:{}", free_port(ip));
    let timeout = CHILD_TIMEOUT_MS.to_string();
    let reconnect = (CHILD_TIMEOUT_MS / 2).to_string();
    Engine::start(
        ip,
        0,
        node,
        &[
            "--nvmf-endpoint",
            &nvmf,
            "--ps-endpoint",
            &etcd.endpoint,
            "--child-io-timeout-ms",
            &timeout,
            "--child-reconnect-timeout-ms",
            &reconnect,
        ],
    )
}

/// A pool on a file in RAM and one replica; returns the replica uuid.
fn make_replica(engine: &Engine, dir: &std::path::Path, name: &str) -> Uuid {
    let disk = dir.join(format!("{name}.img"));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(SIZE + 32 * MIB)
        .unwrap();
    run(
        engine,
        &["pool", "create", name, &format!("aio://{}", disk.display())],
    );
    let uuid = Uuid::new_v4();
    run(
        engine,
        &[
            "replica",
            "create",
            "--uuid",
            &uuid.to_string(),
            "--size",
            &format!("{}MiB", SIZE / MIB),
            name,
            &format!("{name}-r"),
        ],
    );
    uuid
}

fn share(engine: &Engine, replica: &Uuid, hosts: &[&str]) -> String {
    let id = replica.to_string();
    let mut cmd: Vec<String> = vec!["replica".into(), "share".into(), "--uuid".into(), id];
    for h in hosts {
        cmd.push("--allowed-host".into());
        cmd.push((*h).into());
    }
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    run(engine, &refs).trim().to_owned()
}

fn nexus_json(engine: &Engine, nexus: &Uuid) -> Value {
    tokio::task::block_in_place(|| common::nexus_json(engine, nexus))
}

async fn open(uri: &str) -> (Controller, SharedDevice) {
    let mut opts = ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = TEST_HOST.into();
    opts.io_timeout_ms = 60_000;
    opts.reconnect_timeout_ms = 30_000;
    opts.io_queues = 2;
    let ctrl = Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    (ctrl, Arc::new(ns))
}

async fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_child_death_and_nexus_engine_death_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let etcd = Etcd::start("127.0.1.10");
    let mut e1 = start_engine("127.0.1.11", "node-1", &etcd);
    let e2 = start_engine("127.0.1.12", "node-2", &etcd);
    let mut e3 = start_engine("127.0.1.13", "node-3", &etcd);
    let r1 = make_replica(&e1, dir.path(), "p1");
    let r2 = make_replica(&e2, dir.path(), "p2");
    let r3 = make_replica(&e3, dir.path(), "p3");
    let n1 = node_nqn("node-1");
    let u2 = share(&e2, &r2, &[&n1, TEST_HOST]);
    let u3 = share(&e3, &r3, &[&n1, TEST_HOST]);
    let u1 = format!("bdev:///{r1}?uuid={r1}");
    let volume = Uuid::new_v4();
    let nexus = Uuid::new_v4();
    let size_mib = (SIZE / MIB).to_string();
    run(
        &e1,
        &[
            "nexus",
            "create",
            &nexus.to_string(),
            "--name",
            &volume.to_string(),
            "--size",
            &size_mib,
            &u1,
            &u2,
            &u3,
        ],
    );
    let uri = run(
        &e1,
        &[
            "nexus",
            "publish",
            &nexus.to_string(),
            "--allowed-host",
            TEST_HOST,
        ],
    )
    .trim()
    .to_owned();
    assert!(
        uri.starts_with("nvmf://127.0.1.11:") && uri.contains(&format!(":{volume}")),
        "{uri}"
    );
    let n = nexus_json(&e1, &nexus);
    assert_eq!(n["state"], "online", "{n}");

    // --- a remote child's engine dies under the writer ---------------------
    let (ctrl, dev) = open(&uri).await;
    let writer = Writer::new(dev.clone(), SIZE / 4096, 16);
    writer.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    e3.kill9();
    wait_for("child 3 to be faulted", 20, || {
        let n = nexus_json(&e1, &nexus);
        child_of(&n, &r3)["state"] == "faulted"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer.stop().await;
    let n = nexus_json(&e1, &nexus);
    assert_eq!(n["state"], "degraded", "{n}");
    let c3 = child_of(&n, &r3);
    assert!(
        ["io_failure", "timed_out"].contains(&c3["reason"].as_str().unwrap()),
        "{c3}"
    );
    assert_eq!(child_of(&n, &r1)["state"], "online");
    assert_eq!(child_of(&n, &r2)["state"], "online");
    assert_eq!(writer.error_count(), 0, "{:?}", writer.errors.lock());
    assert!(
        writer.max_latency() < Duration::from_millis(CHILD_TIMEOUT_MS + 2000),
        "a write took {:?}",
        writer.max_latency()
    );
    println!(
        "{} writes acknowledged, slowest {:?}",
        writer.acked.load(std::sync::atomic::Ordering::Relaxed),
        writer.max_latency()
    );
    writer.verify(&dev).await.unwrap();
    // Every healthy child holds every acknowledged block.
    let u1_shared = share(&e1, &r1, &[TEST_HOST]);
    for u in [&u1_shared, &u2] {
        let (c, d) = open(u).await;
        writer.verify(&d).await.unwrap();
        c.disconnect().await.unwrap();
    }
    // More writes that the dead child misses.
    writer.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.stop().await;
    assert_eq!(writer.error_count(), 0);
    let _ = ctrl.disconnect().await;

    // --- the nexus's engine dies: the info in etcd decides -----------------
    e1.kill9();
    e1.restart();
    e3.restart();
    // Pools come back through import; replicas keep their shares.
    for (e, name) in [(&e1, "p1"), (&e3, "p3")] {
        let disk = dir.path().join(format!("{name}.img"));
        run(
            e,
            &["pool", "import", name, &format!("aio://{}", disk.display())],
        );
    }
    // The stale child is listed first: it must still not be the source.
    run(
        &e1,
        &[
            "nexus",
            "create",
            &nexus.to_string(),
            "--name",
            &volume.to_string(),
            "--size",
            &size_mib,
            &u3,
            &u1,
            &u2,
        ],
    );
    let n = nexus_json(&e1, &nexus);
    assert_eq!(child_of(&n, &r1)["state"], "online", "{n}");
    assert_ne!(child_of(&n, &r2)["state"], "online", "{n}");
    assert_ne!(child_of(&n, &r3)["state"], "online", "{n}");
    wait_for("both rebuilds", 60, || {
        nexus_json(&e1, &nexus)["state"] == "online"
    })
    .await;
    let history: Value = serde_json::from_str(&run(
        &e1,
        &["-o", "json", "rebuild", "history", &nexus.to_string()],
    ))
    .unwrap();
    let records = history["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{history}");
    for r in records {
        assert_eq!(r["state"], "completed", "{r}");
        assert_eq!(r["src_uri"], u1, "{r}");
        assert_eq!(r["is_partial"], false, "{r}");
    }
    // Every child now holds exactly what was acknowledged.
    let uri = run(
        &e1,
        &[
            "nexus",
            "publish",
            &nexus.to_string(),
            "--allowed-host",
            TEST_HOST,
        ],
    )
    .trim()
    .to_owned();
    let (ctrl, dev) = open(&uri).await;
    writer.verify(&dev).await.unwrap();
    let mut sums = Vec::new();
    let u1_shared = share(&e1, &r1, &[TEST_HOST]);
    for u in [&u1_shared, &u2, &u3] {
        let (c, d) = open(u).await;
        writer.verify(&d).await.unwrap();
        sums.push(checksum(&d, SIZE).await.unwrap());
        c.disconnect().await.unwrap();
    }
    assert!(sums.windows(2).all(|w| w[0] == w[1]), "{sums:x?}");
    let _ = ctrl.disconnect().await;
    run(&e1, &["nexus", "destroy", &nexus.to_string()]);
}

/// A nexus of `volume` over the one child `child` on `engine`, with an
/// exclusive-access reservation under `key` (preempting `preempt`),
/// published for [`TEST_HOST`]: its uuid and URI.
fn fenced_target(
    engine: &Engine,
    volume: &str,
    child: &str,
    key: &str,
    preempt: Option<&str>,
) -> (Uuid, String) {
    let nexus = Uuid::new_v4();
    let id = nexus.to_string();
    let size_mib = (SIZE / MIB).to_string();
    let mut args = vec![
        "nexus",
        "create",
        &id,
        "--name",
        volume,
        "--size",
        &size_mib,
        "--resv-key",
        key,
        "--resv-type",
        "exclusive-access",
    ];
    if let Some(p) = preempt {
        args.extend(["--preempt-key", p]);
    }
    args.push(child);
    run(engine, &args);
    let uri = run(
        engine,
        &["nexus", "publish", &id, "--allowed-host", TEST_HOST],
    )
    .trim()
    .to_owned();
    (nexus, uri)
}

/// The new target of a volume preempts the old one's reservation on the
/// replicas: the old nexus's writes fail from then on (it is fenced), and
/// the new nexus's writes succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_target_fences_the_old_one_with_a_reservation_preempt() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let etcd = Etcd::start("127.0.1.30");
    let old = start_engine("127.0.1.31", "node-old", &etcd);
    let storage = start_engine("127.0.1.32", "node-storage", &etcd);
    let new = start_engine("127.0.1.33", "node-new", &etcd);
    let r = make_replica(&storage, dir.path(), "pf");
    let u = share(
        &storage,
        &r,
        &[&node_nqn("node-old"), &node_nqn("node-new")],
    );
    let volume = Uuid::new_v4().to_string();
    let create = |engine: &Engine, key: &str, preempt: Option<&str>| {
        fenced_target(engine, &volume, &u, key, preempt)
    };
    let (_old_nexus, old_uri) = create(&old, "1", None);
    let (c_old, d_old) = open(&old_uri).await;
    let block = blockdev::DmaBuf::from_slice(&[7u8; 4096]);
    d_old.write_at(0, &block).await.unwrap();

    let (_new_nexus, new_uri) = create(&new, "2", Some("1"));
    let (c_new, d_new) = open(&new_uri).await;
    d_new.write_at(4096, &block).await.unwrap();
    // The old target is fenced: its only child refuses its writes.
    let fenced = d_old.write_at(8192, &block).await;
    assert!(fenced.is_err(), "the old target could still write");
    let mut buf = blockdev::DmaBuf::new(4096);
    d_new.read_at(0, &mut buf).await.unwrap();
    assert_eq!(&buf[..], &block[..]);
    let _ = c_old.disconnect().await;
    let _ = c_new.disconnect().await;
}

/// The status a fenced or handed-over target answers: "ANA inaccessible"
/// (SCT 3, SC 2, DNR clear), which a multipath host retries on another
/// path instead of failing the I/O.
fn is_ana_inaccessible(e: &blockdev::BlockDevError) -> bool {
    nvmf_host::HostError::from_blockdev(e)
        .and_then(nvmf_host::HostError::status)
        .is_some_and(|s| (s.sct, s.sc, s.dnr) == (3, 2, false))
}

/// Sets a published nexus's ANA state through the engine's gRPC.
async fn set_ana(engine: &Engine, nexus: &Uuid, state: io_engine_api::v1::NvmeAnaState) {
    let mut c = io_engine_api::v1::nexus_rpc_client::NexusRpcClient::connect(format!(
        "http://{}",
        engine.endpoint()
    ))
    .await
    .unwrap();
    c.publish_nexus(io_engine_api::v1::PublishNexusRequest {
        uuid: nexus.to_string(),
        allowed_hosts: vec![TEST_HOST.into()],
        ana_state: Some(state.into()),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A target handed over (set INACCESSIBLE) or fenced off by a newer one
/// (its child answers "reservation conflict") answers its host's I/O
/// with "ANA inaccessible", never with an error a multipath host would
/// pass to the application; set OPTIMIZED again it serves again. The
/// fenced nexus does not fault its child (the child is not at fault).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_or_fenced_targets_answer_ana_inaccessible() {
    use io_engine_api::v1::NvmeAnaState;
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let etcd = Etcd::start("127.0.163.30");
    let old = start_engine("127.0.163.31", "node-old", &etcd);
    let storage = start_engine("127.0.163.32", "node-storage", &etcd);
    let new = start_engine("127.0.163.33", "node-new", &etcd);
    let r = make_replica(&storage, dir.path(), "pa");
    let u = share(
        &storage,
        &r,
        &[&node_nqn("node-old"), &node_nqn("node-new")],
    );
    let volume = Uuid::new_v4().to_string();
    let create = |engine: &Engine, key: &str, preempt: Option<&str>| {
        fenced_target(engine, &volume, &u, key, preempt)
    };
    let (old_nexus, old_uri) = create(&old, "1", None);
    let (c_old, d_old) = open(&old_uri).await;
    let block = blockdev::DmaBuf::from_slice(&[7u8; 4096]);
    d_old.write_at(0, &block).await.unwrap();

    // Handed over: every command is refused with the path status.
    set_ana(&old, &old_nexus, NvmeAnaState::NvmeAnaInaccessible).await;
    let e = d_old.write_at(4096, &block).await.unwrap_err();
    assert!(is_ana_inaccessible(&e), "{e}");
    let mut buf = blockdev::DmaBuf::new(4096);
    let e = d_old.read_at(0, &mut buf).await.unwrap_err();
    assert!(is_ana_inaccessible(&e), "{e}");
    set_ana(&old, &old_nexus, NvmeAnaState::NvmeAnaOptimized).await;
    d_old.write_at(4096, &block).await.unwrap();

    // Fenced by a newer target: the child's reservation conflict becomes
    // "ANA inaccessible" for the host, and stays so.
    let (_new_nexus, new_uri) = create(&new, "2", Some("1"));
    let (c_new, d_new) = open(&new_uri).await;
    d_new.write_at(8192, &block).await.unwrap();
    for _ in 0..2 {
        let e = d_old.write_at(8192, &block).await.unwrap_err();
        assert!(is_ana_inaccessible(&e), "{e}");
    }
    let n = nexus_json(&old, &old_nexus);
    assert_eq!(child_of(&n, &r)["state"], "online", "{n}");
    d_new.read_at(4096, &mut buf).await.unwrap();
    assert_eq!(&buf[..], &block[..]);
    let _ = c_old.disconnect().await;
    let _ = c_new.disconnect().await;
}

/// Opens `uri` as the engine of `node` would (its host NQN and the host
/// identifier it derives from it): the old target's own connection.
async fn open_as_node(uri: &str, node: &str) -> (Controller, SharedDevice) {
    let mut opts = ConnectOptions::from_uri(uri).unwrap();
    opts.hostnqn = node_nqn(node);
    opts.hostid = io_engine::nexus::child::host_id(&opts.hostnqn);
    opts.io_timeout_ms = 10_000;
    opts.reconnect_timeout_ms = 5_000;
    let ctrl = Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    (ctrl, Arc::new(ns))
}

/// The new target lands on the node of a replica and uses that replica
/// directly (`bdev:///`): it still takes the reservation on the replica's
/// NVMe/TCP subsystem (in-process, as its own host), so the old target,
/// which holds the reservation there over NVMe/TCP, is preempted: its
/// writes end with a reservation conflict, through its nexus and on its
/// own connection, while the new target's writes land. A replica added
/// later that the old target never reserved is held by the new target too
/// (its preempt found no holder, so it also acquires).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_target_fences_the_old_one_on_its_own_local_replica() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let etcd = Etcd::start("127.0.160.30");
    let old = start_engine("127.0.160.31", "node-old", &etcd);
    let new = start_engine("127.0.160.32", "node-new", &etcd);
    // The replica lives on the new target's node; the old target reached
    // it over NVMe/TCP.
    let r = make_replica(&new, dir.path(), "pl");
    let remote_uri = share(&new, &r, &[&node_nqn("node-old")]);
    let local_uri = format!("bdev:///{r}?uuid={r}");
    let volume = Uuid::new_v4().to_string();
    let create = |engine: &Engine, child: &str, key: &str, preempt: Option<&str>| {
        let (id, uri) = fenced_target(engine, &volume, child, key, preempt);
        (id.to_string(), uri)
    };
    let (_, old_uri) = create(&old, &remote_uri, "1", None);
    let (c_old, d_old) = open(&old_uri).await;
    let a = blockdev::DmaBuf::from_slice(&[0xa5u8; 4096]);
    let b = blockdev::DmaBuf::from_slice(&[0x5au8; 4096]);
    d_old.write_at(0, &a).await.unwrap();
    // The old target's engine holds the reservation: its own connection
    // to the replica writes (the check below can fail).
    let (c_holder, ns_holder) = open_as_node(&remote_uri, "node-old").await;
    ns_holder.write_at(4096, &a).await.unwrap();

    let (new_id, new_uri) = create(&new, &local_uri, "2", Some("1"));
    let (c_new, d_new) = open(&new_uri).await;
    d_new.write_at(8192, &b).await.unwrap();

    // Fenced: a write of the old holder over NVMe/TCP is refused with a
    // reservation conflict, and so is a read (exclusive access) ...
    let e = ns_holder.write_at(12288, &a).await.unwrap_err();
    let host_err = nvmf_host::HostError::from_blockdev(&e)
        .unwrap_or_else(|| panic!("not an NVMe status error: {e}"));
    assert!(host_err.is_reservation_conflict(), "{host_err}");
    let mut buf = blockdev::DmaBuf::new(4096);
    let e = ns_holder.read_at(0, &mut buf).await.unwrap_err();
    assert!(
        nvmf_host::HostError::from_blockdev(&e).is_some_and(|h| h.is_reservation_conflict()),
        "{e}"
    );
    // ... and the old nexus cannot complete a write either.
    assert!(
        d_old.write_at(12288, &a).await.is_err(),
        "the old target could still write"
    );
    // Only what was written before the switch and by the new target is
    // there.
    for (off, want) in [(0u64, &a), (4096, &a), (8192, &b)] {
        d_new.read_at(off, &mut buf).await.unwrap();
        assert_eq!(&buf[..], &want[..], "block at {off}");
    }
    d_new.read_at(12288, &mut buf).await.unwrap();
    assert!(buf.iter().all(|&x| x == 0), "a fenced write landed");
    assert!(
        new.logs()
            .contains("reservation taken on the local replica's subsystem"),
        "{}",
        new.logs()
    );

    // A replica the old target never reserved (the preempt unregisters
    // nobody), added to the new target over NVMe/TCP: the new target
    // still holds it, so the old target's engine cannot write there.
    let r2 = make_replica(&old, dir.path(), "pm");
    let r2_uri = share(&old, &r2, &[&node_nqn("node-old"), &node_nqn("node-new")]);
    run(&new, &["nexus", "add", &new_id, &r2_uri, "--norebuild"]);
    let (c_old2, ns_old2) = open_as_node(&r2_uri, "node-old").await;
    let e = ns_old2.write_at(0, &a).await.unwrap_err();
    assert!(
        nvmf_host::HostError::from_blockdev(&e).is_some_and(|h| h.is_reservation_conflict()),
        "{e}"
    );
    let _ = c_old2.disconnect().await;
    let _ = c_holder.disconnect().await;
    let _ = c_old.disconnect().await;
    let _ = c_new.disconnect().await;
}
