//! Pools and replicas in-process: data integrity for both block sizes,
//! import after restart, recovery from damaged metadata, failing disks and
//! bad input.

#[path = "common/patterns.rs"]
mod patterns;

use std::{collections::HashMap, path::Path};

use blockdev::{BlockDevice, Device, DmaBuf, FaultyDevice, OpenOptions};
use io_engine::{
    pool::{
        CreatePoolArgs, CreateReplicaArgs, ErrorKind, PoolError, PoolRegistry, PoolState,
        ReplicaSelector, ShareProtocol,
    },
    stress::fill_pattern,
};
use patterns::verify_blocks;
use rand::{rngs::StdRng, Rng, SeedableRng};
use uuid::Uuid;

const MIB: u64 = 1 << 20;

fn disk_file(dir: &Path, name: &str, size: u64) -> String {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .and_then(|f| f.set_len(size))
        .expect("disk file");
    format!("aio://{}", p.display())
}

fn pool_args(name: &str, disk: &str) -> CreatePoolArgs {
    CreatePoolArgs {
        name: name.into(),
        uuid: None,
        disks: vec![disk.into()],
        cluster_size_bytes: None,
    }
}

fn replica_args(pool: &str, name: &str, size: u64, thin: bool) -> CreateReplicaArgs {
    CreateReplicaArgs {
        pool: pool.into(),
        name: name.into(),
        uuid: Uuid::new_v4(),
        size_bytes: size,
        thin,
        share: ShareProtocol::None,
        allowed_hosts: vec![],
    }
}

/// Writes `n` random checksummed extents; returns block offset -> seed.
async fn write_random(
    dev: &impl BlockDevice,
    uuid: &Uuid,
    rng: &mut StdRng,
    n: usize,
) -> HashMap<u64, u64> {
    let bs = u64::from(dev.info().block_size);
    let blocks = dev.info().num_blocks;
    let mut written = HashMap::new();
    for _ in 0..n {
        let len = rng.random_range(1..=64u64).min(blocks);
        let off = rng.random_range(0..=blocks - len) * bs;
        let seed: u64 = rng.random();
        let mut buf = DmaBuf::new((len * bs) as usize);
        fill_pattern(&mut buf, bs as usize, uuid, off, seed);
        dev.write_at(off, &buf).await.expect("write");
        for b in 0..len {
            written.insert(off + b * bs, seed);
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_reads_back_for_both_block_sizes_and_after_reimport() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(7);
    for (i, bs) in [512u32, 4096].into_iter().enumerate() {
        for malloc in [false, true] {
            let disk = if malloc {
                format!("malloc:///malloc{i}?size_mb=96&blk_size={bs}")
            } else {
                let path = disk_file(dir.path(), &format!("d{bs}.img"), 96 * MIB);
                format!("{path}?blk_size={bs}")
            };
            let reg = PoolRegistry::new(OpenOptions::default());
            let mut args = pool_args("p", &disk);
            args.cluster_size_bytes = Some(MIB);
            reg.create_pool(args.clone()).await.expect("create pool");
            let mut replicas = Vec::new();
            for (name, thin) in [("thick", false), ("thin", true)] {
                let r = reg
                    .create_replica(replica_args("p", name, 20 * MIB + 3 * u64::from(bs), thin))
                    .await
                    .expect("create replica");
                let dev = reg.open_replica(&r.uuid).expect("open");
                assert_eq!(dev.info().block_size, bs);
                // A fresh replica reads as zeroes everywhere.
                verify_blocks(&*dev, &r.uuid, &HashMap::new()).await;
                let written = write_random(&*dev, &r.uuid, &mut rng, 200).await;
                dev.flush().await.expect("flush");
                verify_blocks(&*dev, &r.uuid, &written).await;
                replicas.push((r.uuid, written));
            }
            let thin = reg
                .replica(&ReplicaSelector::Name {
                    pool: "p".into(),
                    name: "thin".into(),
                })
                .expect("thin");
            assert!(thin.allocated_bytes > 0 && thin.allocated_bytes <= 21 * MIB);
            let report = reg.check_pool("p").await.expect("check");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            reg.shutdown().await;
            if malloc {
                continue;
            }
            // A new registry (an engine restart) imports the pool with its
            // replicas and data.
            let reg = PoolRegistry::new(OpenOptions::default());
            let info = reg.create_pool(args).await.expect("import");
            assert_eq!(info.replica_count, 2);
            for (uuid, written) in &replicas {
                let dev = reg.open_replica(uuid).expect("open after import");
                verify_blocks(&*dev, uuid, written).await;
            }
            assert!(reg
                .check_pool("p")
                .await
                .expect("check")
                .problems
                .is_empty());
            reg.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_replica_larger_than_pool_fills_up_with_a_clear_error() {
    let reg = PoolRegistry::new(OpenOptions::default());
    let mut args = pool_args("small", "malloc:///malloc9?size_mb=16");
    args.cluster_size_bytes = Some(MIB);
    let pool = reg.create_pool(args).await.expect("pool");
    let r = reg
        .create_replica(replica_args("small", "big", 1000 * MIB, true))
        .await
        .expect("thin overcommit is allowed");
    let dev = reg.open_replica(&r.uuid).expect("open");
    let buf = DmaBuf::new(MIB as usize);
    let clusters = pool.capacity_bytes / MIB;
    for c in 0..clusters {
        dev.write_at(c * MIB, &buf).await.expect("fits");
    }
    let err = dev
        .write_at(clusters * MIB, &buf)
        .await
        .expect_err("pool is full");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert_eq!(
        reg.pool("small").expect("pool").used_bytes,
        pool.capacity_bytes
    );
    let problems = reg.check_pool("small").await.expect("check").problems;
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_grows_and_never_shrinks() {
    let reg = PoolRegistry::new(OpenOptions::default());
    let mut args = pool_args("p", "malloc:///malloc8?size_mb=64");
    args.cluster_size_bytes = Some(MIB);
    reg.create_pool(args).await.expect("pool");
    let r = reg
        .create_replica(replica_args("p", "r", 2 * MIB, false))
        .await
        .expect("replica");
    let sel = ReplicaSelector::Uuid(r.uuid);
    let dev = reg.open_replica(&r.uuid).expect("open");
    let mut rng = StdRng::seed_from_u64(3);
    let written = write_random(&*dev, &r.uuid, &mut rng, 50).await;
    let grown = reg.resize_replica(&sel, 5 * MIB).await.expect("grow");
    assert_eq!(grown.size_bytes, 5 * MIB);
    assert_eq!(grown.allocated_bytes, 5 * MIB);
    let err = reg.resize_replica(&sel, MIB).await.expect_err("shrink");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let dev = reg.open_replica(&r.uuid).expect("reopen");
    assert_eq!(dev.info().size_bytes(), 5 * MIB);
    verify_blocks(&*dev, &r.uuid, &written).await;
    assert!(reg
        .check_pool("p")
        .await
        .expect("check")
        .problems
        .is_empty());
}

/// Builds a pool with replicas and data on a file; returns the registry
/// arguments, the replicas and their data.
async fn populated_pool(dir: &Path) -> (String, Vec<(Uuid, HashMap<u64, u64>)>) {
    let disk = disk_file(dir, "meta.img", 64 * MIB);
    let reg = PoolRegistry::new(OpenOptions::default());
    let mut args = pool_args("victim", &disk);
    args.cluster_size_bytes = Some(MIB);
    reg.create_pool(args).await.expect("pool");
    let mut rng = StdRng::seed_from_u64(11);
    let mut out = Vec::new();
    for (i, thin) in [false, true, true].into_iter().enumerate() {
        let r = reg
            .create_replica(replica_args("victim", &format!("r{i}"), 6 * MIB, thin))
            .await
            .expect("replica");
        let dev = reg.open_replica(&r.uuid).expect("open");
        let w = write_random(&*dev, &r.uuid, &mut rng, 30).await;
        out.push((r.uuid, w));
    }
    reg.shutdown().await;
    (disk, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_metadata_recovers_from_the_other_copy_or_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (disk, replicas) = populated_pool(dir.path()).await;
    let path = disk.trim_start_matches("aio://").to_string();
    let pristine = std::fs::read(&path).expect("read disk");
    // Geometry of this pool: 64 rt pages, 1 ot page per copy.
    let copy_body = 65u64;
    let page = |copy: u64, index: u64| -> u64 {
        if index == 0 {
            copy
        } else {
            2 + copy * copy_body + index - 1
        }
    };
    let mut rng = StdRng::seed_from_u64(99);
    let mut single = vec![];
    for copy in 0..2 {
        for index in [0u64, 1, 2, 64, 65] {
            single.push(page(copy, index));
        }
    }
    let flip = |bytes: &mut Vec<u8>, page: u64, rng: &mut StdRng| {
        let at = page as usize * 4096 + rng.random_range(0..4096);
        bytes[at] ^= rng.random_range(1..=255u8);
    };
    // One damaged page (any metadata page, either copy): the pool imports
    // with every replica and every byte of data.
    for p in single {
        let mut bytes = pristine.clone();
        flip(&mut bytes, p, &mut rng);
        std::fs::write(&path, &bytes).expect("write damaged disk");
        let reg = PoolRegistry::new(OpenOptions::default());
        reg.import_pool(pool_args("victim", &disk))
            .await
            .unwrap_or_else(|e| panic!("page {p}: import failed: {e}"));
        assert!(
            reg.check_pool("victim")
                .await
                .expect("check")
                .problems
                .is_empty(),
            "page {p}"
        );
        for (uuid, written) in &replicas {
            let dev = reg.open_replica(uuid).expect("replica after repair");
            verify_blocks(&*dev, uuid, written).await;
        }
        reg.shutdown().await;
        // The import repaired the damaged copy.
        let repaired = std::fs::read(&path).expect("read");
        assert_ne!(
            repaired[p as usize * 4096..][..4096],
            bytes[p as usize * 4096..][..4096]
        );
    }
    // Different pages damaged in each copy: merged page by page.
    let mut bytes = pristine.clone();
    flip(&mut bytes, page(0, 1), &mut rng);
    flip(&mut bytes, page(1, 65), &mut rng);
    std::fs::write(&path, &bytes).expect("write");
    let reg = PoolRegistry::new(OpenOptions::default());
    reg.import_pool(pool_args("victim", &disk))
        .await
        .expect("merged import");
    for (uuid, written) in &replicas {
        verify_blocks(&*reg.open_replica(uuid).expect("replica"), uuid, written).await;
    }
    reg.shutdown().await;
    // The same page damaged in both copies, or both headers: a clear error
    // naming the pool, and the disk left as it was.
    for pages in [
        [page(0, 65), page(1, 65)],
        [page(0, 0), page(1, 0)],
        [page(0, 1), page(1, 1)],
    ] {
        let mut bytes = pristine.clone();
        for p in pages {
            flip(&mut bytes, p, &mut rng);
        }
        std::fs::write(&path, &bytes).expect("write");
        let reg = PoolRegistry::new(OpenOptions::default());
        let err = reg
            .import_pool(pool_args("victim", &disk))
            .await
            .expect_err("must fail");
        assert!(matches!(err, PoolError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("'victim'"), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "a failed import changed the disk"
        );
        // Creating over it is refused too: nothing is formatted silently.
        let err = reg
            .create_pool(pool_args("victim", &disk))
            .await
            .expect_err("no overwrite");
        assert!(matches!(err, PoolError::Corrupt { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_disk_degrades_or_faults_the_pool_without_crashing() {
    let inner = blockdev::open_uri("malloc:///malloc7?size_mb=32", &OpenOptions::default())
        .await
        .expect("malloc");
    let (faulty, ctl) = FaultyDevice::new(inner);
    let reg = PoolRegistry::new(OpenOptions::default());
    let mut args = pool_args("flaky", "malloc:///malloc7?size_mb=32");
    args.cluster_size_bytes = Some(MIB);
    reg.create_pool_on(args, Device::Faulty(Box::new(faulty)))
        .await
        .expect("pool");
    let r = reg
        .create_replica(replica_args("flaky", "r", 4 * MIB, false))
        .await
        .expect("replica");
    let dev = reg.open_replica(&r.uuid).expect("open");
    let buf = DmaBuf::new(4096);
    dev.write_at(0, &buf).await.expect("healthy write");

    // Data-path errors: the I/O fails, the pool turns Degraded.
    ctl.fail_reads(true);
    let mut rbuf = DmaBuf::new(4096);
    dev.read_at(0, &mut rbuf).await.expect_err("read must fail");
    assert_eq!(reg.pool("flaky").expect("pool").state, PoolState::Degraded);
    ctl.fail_reads(false);
    dev.read_at(0, &mut rbuf).await.expect("reads work again");

    // A metadata commit that cannot be flushed faults the pool; no change
    // is accepted afterwards, lists keep working.
    ctl.fail_flush(true);
    let err = reg
        .create_replica(replica_args("flaky", "r2", MIB, true))
        .await
        .expect_err("commit must fail");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert_eq!(reg.pool("flaky").expect("pool").state, PoolState::Faulted);
    ctl.fail_flush(false);
    let err = reg
        .create_replica(replica_args("flaky", "r3", MIB, true))
        .await
        .expect_err("faulted pool refuses changes");
    assert!(matches!(err, PoolError::Faulted { .. }), "{err:?}");
    assert_eq!(reg.list_replicas().len(), 1);
    reg.destroy_pool("flaky")
        .await
        .expect("a faulted pool can still be destroyed");
}

fn sha(path: &str) -> Vec<u8> {
    std::fs::read(path.trim_start_matches("aio://")).expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = disk_file(dir.path(), "bad.img", 100 * MIB);
    let reg = PoolRegistry::new(OpenOptions::default());
    reg.create_pool(pool_args("tpool", &disk))
        .await
        .expect("pool");
    reg.create_replica(replica_args("tpool", "replica1", 10 * MIB, false))
        .await
        .expect("replica");
    let before = sha(&disk);
    let pools_before = format!("{:?}", reg.list_pools());
    let replicas_before = format!("{:?}", reg.list_replicas());

    let dir_uri = format!("aio://{}", dir.path().display());
    let cases: Vec<(&str, Result<(), PoolError>, ErrorKind)> = vec![
        (
            "a directory as the disk",
            reg.create_pool(pool_args("dirpool", &dir_uri))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "a character device as the disk",
            reg.create_pool(pool_args("nullpool", "/dev/null"))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "duplicate replica name",
            reg.create_replica(replica_args("tpool", "replica1", MIB, false))
                .await
                .map(drop),
            ErrorKind::AlreadyExists,
        ),
        (
            "zero size",
            reg.create_replica(replica_args("tpool", "z", 0, false))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "oversized thick replica",
            reg.create_replica(replica_args("tpool", "huge", 200 * MIB, false))
                .await
                .map(drop),
            ErrorKind::NoSpace,
        ),
        (
            "absurd thin size",
            reg.create_replica(replica_args("tpool", "absurd", u64::MAX, true))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "unknown pool",
            reg.create_replica(replica_args("nopool", "x", MIB, false))
                .await
                .map(drop),
            ErrorKind::NotFound,
        ),
        (
            "empty replica name",
            reg.create_replica(replica_args("tpool", "", MIB, false))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "bad allowed host",
            {
                let mut a = replica_args("tpool", "h", MIB, false);
                a.allowed_hosts = vec!["not-an-nqn".into()];
                reg.create_replica(a).await.map(drop)
            },
            ErrorKind::InvalidArgument,
        ),
        (
            "relative uri",
            reg.create_pool(pool_args("p2", "aio://relative/x"))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "malloc size conflict",
            reg.create_pool(pool_args("p2", "malloc:///m0?size_mb=1&num_blocks=2"))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "unknown scheme",
            reg.create_pool(pool_args("p2", "foo:///x")).await.map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "bad block size",
            reg.create_pool(pool_args("p2", &format!("{disk}?blk_size=1024")))
                .await
                .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "second pool on the same disk",
            reg.create_pool(pool_args("other", &disk)).await.map(drop),
            ErrorKind::FailedPrecondition,
        ),
        (
            "same disk through another scheme",
            reg.create_pool(pool_args("other", &disk.replace("aio://", "uring://")))
                .await
                .map(drop),
            ErrorKind::FailedPrecondition,
        ),
        (
            "same pool name on another disk",
            reg.create_pool(pool_args("tpool", "malloc:///malloc3?size_mb=64"))
                .await
                .map(drop),
            ErrorKind::AlreadyExists,
        ),
        (
            "missing disk file",
            reg.create_pool(pool_args(
                "p3",
                &format!("aio://{}/nope.img", dir.path().display()),
            ))
            .await
            .map(drop),
            ErrorKind::NotFound,
        ),
        (
            "no disk",
            reg.create_pool(CreatePoolArgs {
                disks: vec![],
                ..pool_args("p4", "")
            })
            .await
            .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "bad cluster size",
            reg.create_pool(CreatePoolArgs {
                cluster_size_bytes: Some(3000),
                ..pool_args("p5", "malloc:///malloc5?size_mb=8")
            })
            .await
            .map(drop),
            ErrorKind::InvalidArgument,
        ),
        (
            "unknown replica",
            reg.destroy_replica(&ReplicaSelector::Uuid(Uuid::new_v4()))
                .await,
            ErrorKind::NotFound,
        ),
        (
            "unknown pool destroy",
            reg.destroy_pool("nope").await,
            ErrorKind::NotFound,
        ),
    ];
    for (what, res, kind) in cases {
        let err = res.expect_err(what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(format!("{:?}", reg.list_pools()), pools_before);
    assert_eq!(format!("{:?}", reg.list_replicas()), replicas_before);
    assert_eq!(sha(&disk), before, "the disk changed");

    // A disk holding another pool is refused by a fresh engine too.
    reg.shutdown().await;
    let reg = PoolRegistry::new(OpenOptions::default());
    let err = reg
        .create_pool(pool_args("intruder", &disk))
        .await
        .expect_err("other pool");
    assert!(
        matches!(err, PoolError::DiskHoldsOtherPool { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tpool"), "{err}");
    assert_eq!(sha(&disk), before);
    // While the same name imports it.
    let info = reg
        .create_pool(pool_args("tpool", &disk))
        .await
        .expect("import");
    assert_eq!(info.replica_count, 1);
}
