//! The nexus in-process, over real pool replicas on files and over
//! fault-injecting devices: mirrored writes, faults with retries, full and
//! partial rebuilds under verified writes, and the nexus-info rules.

#![allow(clippy::unwrap_used)]

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use blockdev::{
    dynamic::SharedDevice, Device, DiskUri, FaultControl, FaultyDevice, MallocDevice, OpenOptions,
};
use common::verify::{checksum, Writer};
use io_engine::{
    nexus::{
        ChildAction, ChildOpener, ChildState, CreateNexusArgs, DefaultOpener, FaultReason,
        InfoStore, MemoryStore, NexusConfig, NexusRegistry, NexusState, OpenedChild, RebuildState,
    },
    pool::{CreatePoolArgs, CreateReplicaArgs, PoolRegistry, ShareProtocol},
};
use uuid::Uuid;

const MIB: u64 = 1 << 20;

/// Backing files live in RAM when possible: releasing large fragmented
/// files on a disk mounted with online discard takes tens of seconds.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn config() -> NexusConfig {
    NexusConfig {
        child_io_timeout: Duration::from_secs(2),
        child_reconnect_timeout: Duration::from_secs(1),
        ..NexusConfig::default()
    }
}

/// `n` pools on files, one replica of `size` bytes in each.
async fn replicas(
    dir: &tempfile::TempDir,
    n: usize,
    size: u64,
) -> (Arc<PoolRegistry>, Vec<String>) {
    let pools = Arc::new(PoolRegistry::new(OpenOptions::default()));
    let mut uris = Vec::new();
    for i in 0..n {
        let path = dir.path().join(format!("disk{i}"));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size + 64 * MIB).unwrap();
        pools
            .create_pool(CreatePoolArgs {
                name: format!("pool{i}"),
                uuid: None,
                disks: vec![format!("aio://{}?blk_size=512", path.display())],
                cluster_size_bytes: Some(4 * MIB),
            })
            .await
            .unwrap();
        let uuid = Uuid::new_v4();
        pools
            .create_replica(CreateReplicaArgs {
                pool: format!("pool{i}"),
                name: format!("r{i}"),
                uuid,
                size_bytes: size,
                thin: i % 2 == 1,
                share: ShareProtocol::None,
                allowed_hosts: vec![],
            })
            .await
            .unwrap();
        uris.push(format!("bdev:///{uuid}?uuid={uuid}"));
    }
    (pools, uris)
}

fn registry(pools: &Arc<PoolRegistry>, store: Arc<dyn InfoStore>) -> NexusRegistry {
    let cfg = config();
    let opener = DefaultOpener {
        registry: pools.clone(),
        host_nqn: cfg.host_nqn.clone(),
        io_timeout: cfg.child_io_timeout,
        reconnect_timeout: cfg.child_reconnect_timeout,
        nvmf: None,
    };
    NexusRegistry::new(cfg, Arc::new(opener), Some(store), None)
}

fn args(uuid: Uuid, size: u64, children: &[String]) -> CreateNexusArgs {
    CreateNexusArgs {
        uuid,
        name: None,
        size_bytes: size,
        children: children.to_vec(),
        reservation: Default::default(),
        info_key: None,
    }
}

async fn child_device(pools: &PoolRegistry, uri: &str) -> SharedDevice {
    let uuid: Uuid = uri["bdev:///".len()..uri.find('?').unwrap()]
        .parse()
        .unwrap();
    pools.open_replica(&uuid).unwrap()
}

async fn wait_rebuilt(
    reg: &NexusRegistry,
    nexus: &Uuid,
    uri: &str,
) -> io_engine::nexus::RebuildStats {
    for _ in 0..600 {
        let stats = reg.rebuild_stats(nexus, uri).unwrap();
        if stats.state.is_done() {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rebuild of {uri} did not end within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_rebuild_under_verified_writes_makes_children_identical() {
    let dir = scratch_dir();
    let size = 64 * MIB;
    let (pools, uris) = replicas(&dir, 3, size).await;
    let store = Arc::new(MemoryStore::new());
    let reg = registry(&pools, store.clone());
    let id = Uuid::new_v4();
    let view = reg.create(args(id, size, &uris[..2])).await.unwrap();
    assert_eq!(view.state, NexusState::Online);
    let nexus: SharedDevice = reg.get(&id).unwrap();

    let writer = Writer::new(nexus.clone(), size / 4096, 16);
    writer.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Slow the copy down so that writes keep landing during it.
    reg.add_child(&id, &uris[2], true).await.unwrap();
    let before = writer.acked.load(std::sync::atomic::Ordering::Relaxed);
    reg.start_rebuild(&id, &uris[2], Some(32 * MIB))
        .await
        .unwrap();
    let v = reg.get(&id).unwrap().view();
    assert_eq!(v.state, NexusState::Degraded);
    assert_eq!(v.children[2].state, ChildState::Degraded);
    let stats = wait_rebuilt(&reg, &id, &uris[2]).await;
    let during = writer.acked.load(std::sync::atomic::Ordering::Relaxed) - before;
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.stop().await;
    assert_eq!(writer.error_count(), 0, "{:?}", writer.errors.lock());
    assert_eq!(stats.state, RebuildState::Completed, "{stats:?}");
    assert!(!stats.is_partial);
    assert_eq!(stats.bytes_transferred, size);
    assert!(during > 100, "only {during} writes ran during the rebuild");
    assert_eq!(reg.get(&id).unwrap().state(), NexusState::Online);

    writer.verify(&nexus).await.unwrap();
    let mut sums = Vec::new();
    for uri in &uris {
        let dev = child_device(&pools, uri).await;
        writer.verify(&dev).await.unwrap();
        sums.push(checksum(&dev, size).await.unwrap());
    }
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "children differ: {sums:x?}"
    );

    let history = reg.rebuild_history(&id).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].uri, uris[2]);
    assert!(uris[..2].contains(&history[0].src_uri));
    assert!(history[0].end_time.unwrap() > history[0].start_time);

    // The info records all three as healthy.
    let nexus_view = reg.get(&id).unwrap().view();
    let info = io_engine::nexus::info::load(store.as_ref(), &nexus_view.info_key)
        .await
        .unwrap()
        .unwrap();
    assert!(info.children.iter().all(|c| c.healthy));
    assert!(!info.clean_shutdown);
    reg.destroy(&id).await.unwrap();
    let info = io_engine::nexus::info::load(store.as_ref(), &nexus_view.info_key)
        .await
        .unwrap()
        .unwrap();
    assert!(info.clean_shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_rebuild_copies_only_what_was_written_while_offline() {
    let dir = scratch_dir();
    let size = 256 * MIB;
    let t_start = std::time::Instant::now();
    let (pools, uris) = replicas(&dir, 2, size).await;
    println!("setup took {:?}", t_start.elapsed());
    let reg = registry(&pools, Arc::new(MemoryStore::new()));
    let id = Uuid::new_v4();
    reg.create(args(id, size, &uris)).await.unwrap();
    let nexus: SharedDevice = reg.get(&id).unwrap();
    let writer = Writer::new(nexus.clone(), size / 4096, 16);
    // About 1600 writes a second: the outage touches part of the volume.
    writer.pace(Duration::from_millis(10));
    writer.start();
    tokio::time::sleep(Duration::from_millis(300)).await;

    writer.track(true);
    reg.child_operation(&id, &uris[1], ChildAction::Offline)
        .await
        .unwrap();
    let v = reg.get(&id).unwrap().view();
    assert_eq!(v.children[1].state, ChildState::Faulted);
    assert_eq!(v.children[1].reason, FaultReason::ByClient);
    assert!(v.children[1].has_dirty_log);
    assert_eq!(v.state, NexusState::Degraded);
    tokio::time::sleep(Duration::from_secs(10)).await;
    reg.child_operation(&id, &uris[1], ChildAction::Online)
        .await
        .unwrap();
    writer.track(false);
    let t0 = std::time::Instant::now();
    let stats = wait_rebuilt(&reg, &id, &uris[1]).await;
    println!("partial rebuild took {:?}", t0.elapsed());
    writer.stop().await;
    assert_eq!(writer.error_count(), 0, "{:?}", writer.errors.lock());
    assert_eq!(stats.state, RebuildState::Completed);
    assert!(stats.is_partial);
    let distinct = writer.touched_blocks() * writer.block_bytes() as u64;
    let ratio = stats.bytes_transferred as f64 / distinct as f64;
    println!(
        "partial rebuild: {} bytes copied for {} distinct bytes written (ratio {ratio:.3})",
        stats.bytes_transferred, distinct
    );
    assert!(distinct > 0 && stats.bytes_transferred > 0);
    assert!(
        ratio <= 1.2,
        "copied {ratio:.3}x the bytes written during the outage"
    );
    assert!(stats.bytes_transferred < size / 2);

    let t0 = std::time::Instant::now();
    let a = child_device(&pools, &uris[0]).await;
    let b = child_device(&pools, &uris[1]).await;
    writer.verify(&a).await.unwrap();
    writer.verify(&b).await.unwrap();
    println!("verify took {:?}", t0.elapsed());
    assert_eq!(
        checksum(&a, size).await.unwrap(),
        checksum(&b, size).await.unwrap()
    );
    println!(
        "verify+checksum took {:?}, total {:?}",
        t0.elapsed(),
        t_start.elapsed()
    );
    reg.destroy(&id).await.unwrap();
    println!("destroy: total {:?}", t_start.elapsed());
    pools.shutdown().await;
    println!("pools down: total {:?}", t_start.elapsed());
    drop(dir);
    println!("dir gone: total {:?}", t_start.elapsed());
}

/// Hands out pre-built devices for `test:///<name>?uuid=<uuid>` children.
struct TestOpener {
    devices: HashMap<Uuid, SharedDevice>,
}

impl ChildOpener for TestOpener {
    fn open<'a>(&'a self, uri: &'a str, uuid: &'a Uuid) -> io_engine::nexus::child::OpenFuture<'a> {
        Box::pin(async move {
            self.devices
                .get(uuid)
                .cloned()
                .map(|device| OpenedChild {
                    device: device.into(),
                    remote: None,
                    local: None,
                })
                .ok_or_else(|| format!("no test device for {uri}"))
        })
    }
}

fn faulty_children(
    n: usize,
    size: u64,
) -> (
    Vec<String>,
    Vec<Arc<FaultControl>>,
    HashMap<Uuid, SharedDevice>,
) {
    let mut uris = Vec::new();
    let mut controls = Vec::new();
    let mut devices = HashMap::new();
    for i in 0..n {
        let uri: DiskUri = format!("malloc:///faulty{i}?size_mb={}&blk_size=512", size / MIB)
            .parse()
            .unwrap();
        let (dev, ctl) = FaultyDevice::new(Device::Malloc(MallocDevice::new(&uri).unwrap()));
        let uuid = Uuid::new_v4();
        let shared: SharedDevice = Arc::new(dev);
        devices.insert(uuid, shared);
        controls.push(ctl);
        uris.push(format!("test:///c{i}?uuid={uuid}"));
    }
    (uris, controls, devices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_children_are_faulted_and_io_is_retried_on_the_others() {
    let size = 32 * MIB;
    let (uris, ctl, devices) = faulty_children(3, size);
    let store = Arc::new(MemoryStore::new());
    let reg = NexusRegistry::new(
        config(),
        Arc::new(TestOpener {
            devices: devices.clone(),
        }),
        Some(store.clone()),
        None,
    );
    let id = Uuid::new_v4();
    reg.create(args(id, size, &uris)).await.unwrap();
    let nexus: SharedDevice = reg.get(&id).unwrap();
    let writer = Writer::new(nexus.clone(), size / 4096, 16);
    writer.start();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Child 1 starts failing writes: it is faulted, the writer sees nothing.
    ctl[1].fail_writes_after(50);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = reg.get(&id).unwrap().view();
    assert_eq!(v.children[1].state, ChildState::Faulted);
    assert_eq!(v.children[1].reason, FaultReason::IoFailure);
    assert_eq!(v.state, NexusState::Degraded);
    assert_eq!(writer.error_count(), 0, "{:?}", writer.errors.lock());
    // The fault was persisted.
    let info = io_engine::nexus::info::load(store.as_ref(), &v.info_key)
        .await
        .unwrap()
        .unwrap();
    assert!(!info.children[1].healthy && info.children[0].healthy && info.children[2].healthy);

    // Child 2 fails reads: reads are retried on child 0 and succeed.
    ctl[2].fail_reads(true);
    let mut buf = blockdev::DmaBuf::new(64 * 1024);
    for i in 0..8 {
        nexus.read_at(i * 65536, &mut buf).await.unwrap();
    }
    let v = reg.get(&id).unwrap().view();
    assert_eq!(v.children[2].state, ChildState::Faulted);
    assert_eq!(v.children[0].state, ChildState::Online);

    // Child 0 is the last healthy one: its errors reach the application
    // and it stays online.
    writer.stop().await;
    assert_eq!(writer.error_count(), 0, "{:?}", writer.errors.lock());
    writer.verify(&nexus).await.unwrap();
    ctl[0].fail_writes(true);
    assert!(nexus.write_at(0, &buf[..4096]).await.is_err());
    let v = reg.get(&id).unwrap().view();
    assert_eq!(v.children[0].state, ChildState::Online);
    assert_eq!(v.state, NexusState::Degraded);
    ctl[0].clear();
    // Data acknowledged before is intact on the healthy child.
    writer.verify(&devices[&v.children[0].uuid]).await.unwrap();

    // The faulted children come back with partial rebuilds.
    ctl[1].clear();
    ctl[2].clear();
    reg.child_operation(&id, &uris[1], ChildAction::Online)
        .await
        .unwrap();
    reg.child_operation(&id, &uris[2], ChildAction::Online)
        .await
        .unwrap();
    let s1 = wait_rebuilt(&reg, &id, &uris[1]).await;
    let s2 = wait_rebuilt(&reg, &id, &uris[2]).await;
    assert_eq!(s1.state, RebuildState::Completed);
    assert_eq!(s2.state, RebuildState::Completed);
    assert!(s1.is_partial && s2.is_partial);
    assert_eq!(reg.get(&id).unwrap().state(), NexusState::Online);
    let sums: Vec<u32> = futures::future::join_all(v.children.iter().map(|c| {
        let dev = devices[&c.uuid].clone();
        async move { checksum(&dev, size).await.unwrap() }
    }))
    .await;
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "children differ: {sums:x?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_info_decides_which_children_come_back_online() {
    let size = 8 * MIB;
    let (uris, _ctl, devices) = faulty_children(3, size);
    let store = Arc::new(MemoryStore::new());
    let opener = Arc::new(TestOpener { devices });
    let reg = NexusRegistry::new(config(), opener.clone(), Some(store.clone()), None);
    let id = Uuid::new_v4();
    reg.create(args(id, size, &uris)).await.unwrap();
    reg.child_operation(&id, &uris[0], ChildAction::Fault)
        .await
        .unwrap();
    // Simulate an engine death: a new registry, same store, no shutdown.
    let reg2 = NexusRegistry::new(config(), opener.clone(), Some(store.clone()), None);
    let v = reg2.create(args(id, size, &uris)).await.unwrap();
    let states: Vec<_> = v.children.iter().map(|c| c.state).collect();
    // Child 0 missed writes; of the healthy ones only one (the first) is a
    // source; the other two are rebuilt from it.
    assert_eq!(states[1], ChildState::Online, "{states:?}");
    assert_ne!(states[0], ChildState::Online);
    assert_ne!(states[2], ChildState::Online);
    for uri in [&uris[0], &uris[2]] {
        let s = wait_rebuilt(&reg2, &id, uri).await;
        assert_eq!(s.state, RebuildState::Completed);
        assert_eq!(s.src_uri, uris[1]);
    }
    reg2.destroy(&id).await.unwrap();
    // After a clean shutdown every healthy child is online at once.
    let reg3 = NexusRegistry::new(config(), opener.clone(), Some(store.clone()), None);
    let v = reg3.create(args(id, size, &uris)).await.unwrap();
    assert!(
        v.children.iter().all(|c| c.state == ChildState::Online),
        "{v:?}"
    );
    // A child list the info records nobody healthy in is refused.
    let (others, _, _) = faulty_children(1, size);
    reg3.destroy(&id).await.unwrap();
    assert!(reg3.create(args(id, size, &others)).await.is_err());
}
