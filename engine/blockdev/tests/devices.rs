//! Integration tests of every disk backend against the `BlockDevice`
//! contract: data integrity (self-checking blocks), concurrency, zeroing,
//! refusal of bad requests, cancellation safety, flush, fault injection
//! and persistence across reopen. A loop device case runs when we are root
//! and `losetup` works, and is skipped (with a message) otherwise.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use blockdev::{
    open, Backend, BlockDevError, BlockDevice, Device, DiskUri, FaultyDevice, MallocDevice,
    OpenOptions, PreadDevice, UringDevice,
};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tempfile::TempPath;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Malloc,
    Uring,
    UringBuffered,
    Pread,
    FaultyUring,
}

const KINDS: [Kind; 5] = [
    Kind::Malloc,
    Kind::Uring,
    Kind::UringBuffered,
    Kind::Pread,
    Kind::FaultyUring,
];
const BLOCK_SIZES: [u32; 2] = [512, 4096];

struct Fixture {
    name: String,
    dev: Device,
    _file: Option<TempPath>,
}

fn temp_file(size: u64) -> TempPath {
    let f = tempfile::NamedTempFile::new().expect("tempfile");
    f.as_file().set_len(size).expect("set_len");
    f.into_temp_path()
}

fn file_uri(scheme: &str, path: &Path, blk: u32) -> DiskUri {
    format!("{scheme}://{}?blk_size={blk}", path.display())
        .parse()
        .expect("valid uri")
}

/// Opens a uring device, or `None` (with a message) when io_uring is
/// unavailable here.
async fn try_uring(uri: &DiskUri, opts: &OpenOptions) -> Option<UringDevice> {
    match UringDevice::open(uri, opts).await {
        Ok(d) => Some(d),
        Err(BlockDevError::UringUnavailable(e)) => {
            eprintln!("skipping uring case: io_uring unavailable: {e}");
            None
        }
        Err(e) => panic!("open {uri}: {e}"),
    }
}

async fn fixture(kind: Kind, blk: u32, size: u64) -> Option<Fixture> {
    let name = format!("{kind:?}/{blk}");
    let (dev, file) = match kind {
        Kind::Malloc => {
            let uri = format!("malloc:///m{blk}?size_mb={}&blk_size={blk}", size / MIB);
            let d = MallocDevice::new(&uri.parse().expect("valid uri")).expect("malloc");
            (Device::Malloc(d), None)
        }
        Kind::Uring | Kind::UringBuffered | Kind::FaultyUring => {
            let file = temp_file(size);
            let opts = OpenOptions {
                buffered: kind == Kind::UringBuffered,
                ..Default::default()
            };
            let d = Device::Uring(try_uring(&file_uri("uring", &file, blk), &opts).await?);
            let d = if kind == Kind::FaultyUring {
                Device::Faulty(Box::new(FaultyDevice::new(d).0))
            } else {
                d
            };
            (d, Some(file))
        }
        Kind::Pread => {
            let file = temp_file(size);
            let opts = OpenOptions {
                force_pread: true,
                ..Default::default()
            };
            let d = open(&file_uri("aio", &file, blk), &opts)
                .await
                .expect("open pread");
            (d, Some(file))
        }
    };
    assert_eq!(dev.info().block_size, blk, "{name}");
    assert_eq!(dev.info().size_bytes(), size, "{name}");
    Some(Fixture {
        name,
        dev,
        _file: file,
    })
}

async fn fixtures(size: u64) -> Vec<Fixture> {
    let mut out = Vec::new();
    for kind in KINDS {
        for blk in BLOCK_SIZES {
            if let Some(f) = fixture(kind, blk, size).await {
                out.push(f);
            }
        }
    }
    out
}

// ---- self-checking block pattern ----------------------------------------
//
// Every written block is `mayastor_common::pattern`'s block for its byte
// offset and the generation that wrote it (a CRC-32C over all of it). A
// read is verified against the model's generation (0: never written, must
// be zeroes).

fn pattern(offset: u64, len: usize, bs: usize, generation: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    for (i, block) in buf.chunks_mut(bs).enumerate() {
        mayastor_common::pattern::fill(offset + (i * bs) as u64, generation, block);
    }
    buf
}

/// Checks one block read at `offset` against the generation the model
/// expects.
fn check_block(name: &str, block: &[u8], offset: u64, expected_generation: u64) {
    if let Some(wrong) = mayastor_common::pattern::check(offset, expected_generation, block) {
        panic!("{name}: {wrong}");
    }
}

/// Reads the whole device and checks it against `model` (generation per
/// block).
async fn verify_all(f: &Fixture, model: &[u64]) {
    let bs = f.dev.info().block_size as usize;
    let chunk_blocks = 64;
    let mut buf = vec![0u8; chunk_blocks * bs];
    for first in (0..model.len()).step_by(chunk_blocks) {
        let n = chunk_blocks.min(model.len() - first);
        let off = (first * bs) as u64;
        f.dev.read_at(off, &mut buf[..n * bs]).await.unwrap();
        for i in 0..n {
            check_block(
                &f.name,
                &buf[i * bs..(i + 1) * bs],
                ((first + i) * bs) as u64,
                model[first + i],
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_read_back() {
    for f in fixtures(8 * MIB).await {
        let bs = f.dev.info().block_size as usize;
        let nblocks = f.dev.info().num_blocks as usize;
        let mut model = vec![0u64; nblocks];
        let seed = 0x5eed_0000 + bs as u64;
        let mut rng = SmallRng::seed_from_u64(seed);
        for generation in 1..=300u64 {
            let first = rng.random_range(0..nblocks);
            let count = rng.random_range(1..=32usize).min(nblocks - first);
            let off = (first * bs) as u64;
            let data = pattern(off, count * bs, bs, generation);
            if rng.random_bool(0.3) {
                // A buffer at an odd address (bounced under O_DIRECT).
                let mut odd = vec![0u8; data.len() + 1];
                odd[1..].copy_from_slice(&data);
                f.dev.write_at(off, &odd[1..]).await.unwrap();
            } else {
                f.dev.write_at(off, &data).await.unwrap();
            }
            model[first..first + count].fill(generation);

            // Read back a random range around it, sometimes into an odd
            // buffer.
            let rfirst = first.saturating_sub(rng.random_range(0..4));
            let rcount = (count + 8).min(nblocks - rfirst);
            let mut back = vec![0u8; rcount * bs + 1];
            let odd = rng.random_bool(0.5) as usize;
            let back = &mut back[odd..odd + rcount * bs];
            f.dev.read_at((rfirst * bs) as u64, back).await.unwrap();
            for i in 0..rcount {
                let b = rfirst + i;
                check_block(
                    &f.name,
                    &back[i * bs..(i + 1) * bs],
                    (b * bs) as u64,
                    model[b],
                );
            }
        }
        verify_all(&f, &model).await;
        f.dev.flush().await.unwrap();
        eprintln!(
            "{}: ok (seed {seed:#x}, direct_io={})",
            f.name,
            f.dev.info().direct_io
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_io_on_disjoint_regions() {
    const TASKS: u64 = 64;
    for f in fixtures(8 * MIB).await {
        let name = f.name.clone();
        let bs = f.dev.info().block_size as u64;
        let region_blocks = f.dev.info().num_blocks / TASKS;
        let dev = Arc::new(f.dev);
        let mut set = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let dev = dev.clone();
            let name = name.clone();
            set.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(t);
                let base = t * region_blocks;
                for generation in 1..=8u64 {
                    let first = base + rng.random_range(0..region_blocks);
                    let count = rng.random_range(1..=region_blocks - (first - base));
                    let off = first * bs;
                    let data = pattern(off, (count * bs) as usize, bs as usize, generation);
                    dev.write_at(off, &data).await.unwrap();
                    let mut back = vec![0u8; data.len()];
                    dev.read_at(off, &mut back).await.unwrap();
                    for (i, block) in back.chunks(bs as usize).enumerate() {
                        check_block(&name, block, off + i as u64 * bs, generation);
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        dev.flush().await.unwrap();
        if let Device::Uring(u) = &*dev {
            let s = u.stats();
            assert_eq!(s.submitted, s.completed, "{name}: {s:?}");
            assert_eq!(s.errors, 0, "{name}: {s:?}");
        }
    }
}

/// More concurrent requests than the ring has slots: they queue and all
/// complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn burst_beyond_ring_capacity() {
    let Some(f) = fixture(Kind::Uring, 4096, 8 * MIB).await else {
        return;
    };
    let dev = Arc::new(f.dev);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let dev = dev.clone();
        set.spawn(async move {
            let off = (i % 2048) * 4096;
            let block = vec![(i % 251) as u8; 4096];
            if i < 2048 {
                dev.write_at(off, &block).await.unwrap();
            }
            let mut back = vec![0u8; 4096];
            dev.read_at(off, &mut back).await.unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let Device::Uring(u) = &*dev else {
        unreachable!()
    };
    let s = u.stats();
    assert_eq!(s.submitted, 2000);
    assert_eq!(s.completed, 2000);
}

#[tokio::test]
async fn write_zeroes_and_unmap_read_back_zeroes() {
    for f in fixtures(4 * MIB).await {
        let bs = f.dev.info().block_size as u64;
        let nblocks = f.dev.info().num_blocks as usize;
        let all = pattern(0, (4 * MIB) as usize, bs as usize, 1);
        f.dev.write_at(0, &all).await.unwrap();
        let mut model = vec![1u64; nblocks];

        // One block, a range across a 1 MiB boundary, a whole MiB, and the
        // last block, alternating between the two operations.
        let ranges = [
            (bs, bs),
            (MIB - 3 * bs, 6 * bs),
            (2 * MIB, MIB),
            (4 * MIB - bs, bs),
        ];
        for (i, (off, len)) in ranges.into_iter().enumerate() {
            if i % 2 == 0 {
                f.dev.write_zeroes(off, len).await.unwrap();
            } else {
                f.dev.unmap(off, len).await.unwrap();
            }
            model[(off / bs) as usize..((off + len) / bs) as usize].fill(0);
        }
        // Both ops on the same range, then zero length (a no-op).
        f.dev.unmap(MIB - 3 * bs, 6 * bs).await.unwrap();
        f.dev.write_zeroes(0, 0).await.unwrap();
        f.dev.unmap(0, 0).await.unwrap();
        verify_all(&f, &model).await;

        // A zeroed range can be written again.
        let again = pattern(2 * MIB, bs as usize, bs as usize, 2);
        f.dev.write_at(2 * MIB, &again).await.unwrap();
        model[(2 * MIB / bs) as usize] = 2;
        verify_all(&f, &model).await;
    }
}

#[tokio::test]
async fn bad_requests_are_refused_without_touching_data() {
    for f in fixtures(MIB).await {
        let name = &f.name;
        let bs = u64::from(f.dev.info().block_size);
        let size = f.dev.info().size_bytes();
        let all = pattern(0, size as usize, bs as usize, 1);
        f.dev.write_at(0, &all).await.unwrap();
        let model = vec![1u64; f.dev.info().num_blocks as usize];

        let block = vec![0xffu8; bs as usize];
        let mut rbuf = vec![0u8; bs as usize];
        let unaligned =
            |r: Result<(), BlockDevError>| matches!(r, Err(BlockDevError::Unaligned { .. }));
        let out_of_range =
            |r: Result<(), BlockDevError>| matches!(r, Err(BlockDevError::OutOfRange { .. }));

        assert!(unaligned(f.dev.write_at(1, &block).await), "{name}");
        assert!(
            unaligned(f.dev.write_at(0, &block[..bs as usize - 1]).await),
            "{name}"
        );
        assert!(unaligned(f.dev.write_at(bs / 2, &block).await), "{name}");
        assert!(unaligned(f.dev.read_at(bs + 1, &mut rbuf).await), "{name}");
        assert!(
            unaligned(f.dev.read_at(0, &mut rbuf[..100]).await),
            "{name}"
        );
        assert!(unaligned(f.dev.write_zeroes(bs, 100).await), "{name}");
        assert!(unaligned(f.dev.unmap(7, bs).await), "{name}");
        if bs == 4096 {
            assert!(
                unaligned(f.dev.write_at(512, &block[..512]).await),
                "{name}"
            );
        }

        assert!(out_of_range(f.dev.write_at(size, &block).await), "{name}");
        assert!(
            out_of_range(
                f.dev
                    .write_at(size - bs, &[0u8; 8192][..2 * bs as usize])
                    .await
            ),
            "{name}"
        );
        assert!(out_of_range(f.dev.read_at(size, &mut rbuf).await), "{name}");
        assert!(
            out_of_range(f.dev.write_zeroes(size - bs, 2 * bs).await),
            "{name}"
        );
        assert!(out_of_range(f.dev.unmap(0, size + bs).await), "{name}");
        let top = u64::MAX - (u64::MAX % bs); // aligned, end overflows
        assert!(out_of_range(f.dev.write_at(top, &block).await), "{name}");
        assert!(out_of_range(f.dev.unmap(top, bs).await), "{name}");

        let e = f.dev.write_at(size, &block).await.unwrap_err().to_string();
        assert!(e.contains("beyond the end of the device"), "{name}: {e}");
        let e = f.dev.read_at(3, &mut rbuf).await.unwrap_err().to_string();
        assert!(e.contains("not aligned to the block size"), "{name}: {e}");

        verify_all(&f, &model).await;
    }
}

/// Drops read and write futures right after their first poll (while the
/// request is in flight); nothing may crash or be corrupted, and the device
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_in_flight_futures_is_safe() {
    for f in fixtures(4 * MIB).await {
        let bs = f.dev.info().block_size as usize;
        let all = pattern(0, (4 * MIB) as usize, bs, 1);
        f.dev.write_at(0, &all).await.unwrap();
        let mut model = vec![1u64; f.dev.info().num_blocks as usize];

        let mut dropped = 0;
        for i in 0..200u64 {
            let off = (i % 4) * MIB;
            let mut buf = vec![0u8; MIB as usize];
            tokio::select! {
                biased;
                r = f.dev.read_at(off, &mut buf) => r.unwrap(),
                _ = std::future::ready(()) => dropped += 1,
            }
            // A dropped read may have filled the buffer or not; either is
            // fine, it must just not be written after this point.
            drop(buf);

            // Rewrite a block with a new generation and drop the write:
            // afterwards the block holds either generation.
            let b = (i as usize * 7) % model.len();
            let generation = 2 + i;
            let data = pattern((b * bs) as u64, bs, bs, generation);
            tokio::select! {
                biased;
                r = f.dev.write_at((b * bs) as u64, &data) => { r.unwrap(); model[b] = generation; }
                _ = std::future::ready(()) => {
                    // Settle what landed: rewrite with a known generation.
                    let data = pattern((b * bs) as u64, bs, bs, generation);
                    f.dev.write_at((b * bs) as u64, &data).await.unwrap();
                    model[b] = generation;
                }
            }
        }
        // A timeout-driven drop as well.
        let mut big = vec![0u8; 2 * MIB as usize];
        let _ = tokio::time::timeout(Duration::from_micros(1), f.dev.read_at(0, &mut big)).await;
        verify_all(&f, &model).await;
        eprintln!("{}: {dropped} reads dropped in flight", f.name);
    }
}

#[tokio::test]
async fn flush_works_everywhere() {
    for f in fixtures(MIB).await {
        let bs = f.dev.info().block_size as usize;
        f.dev.write_at(0, &pattern(0, bs, bs, 1)).await.unwrap();
        f.dev.flush().await.unwrap();
        f.dev.flush().await.unwrap();
    }
}

#[tokio::test]
async fn faulty_switches_on_a_real_device() {
    let file = temp_file(MIB);
    let uri = file_uri("aio", &file, 512);
    let inner = open(&uri, &OpenOptions::default()).await.unwrap();
    let inner_backend = inner.info().backend;
    let (faulty, ctl) = FaultyDevice::new(inner);
    let dev = Device::Faulty(Box::new(faulty));
    assert_eq!(dev.info().backend, Backend::Faulty);
    assert_eq!(dev.info().uri, uri.to_string());
    assert_eq!(dev.info().num_blocks, 2048);

    let mut model = vec![0u64; 2048];
    let fx = Fixture {
        name: format!("faulty({inner_backend})"),
        dev,
        _file: None,
    };
    ctl.fail_writes_after(3);
    for (b, expected) in model.iter_mut().enumerate().take(5) {
        let data = pattern((b * 512) as u64, 512, 512, 1);
        let r = fx.dev.write_at((b * 512) as u64, &data).await;
        if b < 3 {
            r.unwrap();
            *expected = 1;
        } else {
            assert!(
                matches!(r, Err(BlockDevError::Injected { op: "write" })),
                "{r:?}"
            );
        }
    }
    ctl.fail_flush(true);
    assert!(matches!(
        fx.dev.flush().await,
        Err(BlockDevError::Injected { op: "flush" })
    ));
    ctl.fail_reads(true);
    let mut buf = vec![0u8; 512];
    assert!(matches!(
        fx.dev.read_at(0, &mut buf).await,
        Err(BlockDevError::Injected { op: "read" })
    ));
    ctl.clear();
    fx.dev.flush().await.unwrap();
    verify_all(&fx, &model).await;
    let c = ctl.counters();
    assert_eq!((c.writes, c.injected), (3, 4));
}

/// Data written, flushed and closed is there after reopening, through
/// either file backend.
#[tokio::test]
async fn data_survives_close_and_reopen() {
    for blk in BLOCK_SIZES {
        let file = temp_file(2 * MIB);
        let bs = blk as usize;
        let nblocks = (2 * MIB) as usize / bs;
        let mut model = vec![0u64; nblocks];
        let writers = [
            OpenOptions::default(),
            OpenOptions {
                force_pread: true,
                ..Default::default()
            },
        ];
        for (round, opts) in writers.iter().enumerate() {
            let dev = open(&file_uri("aio", &file, blk), opts).await.unwrap();
            let first = round * 37;
            let data = pattern((first * bs) as u64, 64 * bs, bs, round as u64 + 1);
            dev.write_at((first * bs) as u64, &data).await.unwrap();
            model[first..first + 64].fill(round as u64 + 1);
            dev.flush().await.unwrap();
            drop(dev);

            for reader in &writers {
                let dev = open(&file_uri("aio", &file, blk), reader).await.unwrap();
                let fx = Fixture {
                    name: format!("reopen/{blk}/{:?}", dev.info().backend),
                    dev,
                    _file: None,
                };
                verify_all(&fx, &model).await;
            }
        }
    }
}

#[tokio::test]
async fn open_errors_and_geometry() {
    // Too small, empty, missing, a directory.
    let tiny = temp_file(100);
    let empty = temp_file(0);
    for path in [&tiny, &empty] {
        for opts in [
            OpenOptions::default(),
            OpenOptions {
                force_pread: true,
                ..Default::default()
            },
        ] {
            let r = open(&file_uri("aio", path, 512), &opts).await;
            assert!(matches!(r, Err(BlockDevError::TooSmall { .. })), "{r:?}");
        }
    }
    let r = open(
        &"/nonexistent/disk.img".parse().unwrap(),
        &OpenOptions::default(),
    )
    .await;
    assert!(matches!(r, Err(BlockDevError::Open { .. })), "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let r = open(
        &format!("aio://{}", dir.path().display()).parse().unwrap(),
        &OpenOptions::default(),
    )
    .await;
    assert!(matches!(r, Err(BlockDevError::Open { .. })), "{r:?}");
    assert!(UringDevice::open(
        &"malloc:///m?size_mb=1".parse().unwrap(),
        &OpenOptions::default()
    )
    .await
    .is_err());
    assert!(PreadDevice::open(
        &"malloc:///m?size_mb=1".parse().unwrap(),
        &OpenOptions::default()
    )
    .await
    .is_err());
    let r = blockdev::open_uri("aio://host/x", &OpenOptions::default()).await;
    assert!(matches!(r, Err(BlockDevError::Uri(_))), "{r:?}");

    // A partial tail block is ignored; the default block size is 512.
    let odd = temp_file(10_000);
    let d = open(&file_uri("aio", &odd, 4096), &OpenOptions::default())
        .await
        .unwrap();
    assert_eq!(d.info().num_blocks, 2);
    let plain: DiskUri = odd.to_str().unwrap().parse().unwrap();
    let d = open(&plain, &OpenOptions::default()).await.unwrap();
    assert_eq!((d.info().block_size, d.info().num_blocks), (512, 19));
    assert_eq!(d.info().uri, format!("aio://{}", odd.display()));

    // Backend selection and O_DIRECT reporting.
    let d = open(&plain, &OpenOptions::default()).await.unwrap();
    eprintln!(
        "aio on {}: backend {}, direct_io {}",
        std::env::temp_dir().display(),
        d.info().backend,
        d.info().direct_io
    );
    assert!(matches!(d.info().backend, Backend::Uring | Backend::Pread));
    let d = open(
        &plain,
        &OpenOptions {
            buffered: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!d.info().direct_io);
    let d = blockdev::open_uri("malloc:///m9?num_blocks=8", &OpenOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (d.info().backend, d.info().size_bytes()),
        (Backend::Malloc, 4096)
    );
}

/// tmpfs has no zero-range fallocate (punch-hole is used instead) and, on
/// older kernels, no O_DIRECT (the open falls back to buffered I/O).
#[tokio::test]
async fn tmpfs_file() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipping tmpfs case: no /dev/shm");
        return;
    }
    for opts in [
        OpenOptions::default(),
        OpenOptions {
            force_pread: true,
            ..Default::default()
        },
    ] {
        let f = tempfile::NamedTempFile::new_in(shm).unwrap();
        f.as_file().set_len(2 * MIB).unwrap();
        let path = f.into_temp_path();
        let dev = open(&file_uri("aio", &path, 4096), &opts).await.unwrap();
        let fx = Fixture {
            name: format!("tmpfs/{}", dev.info().backend),
            dev,
            _file: Some(path),
        };
        let all = pattern(0, (2 * MIB) as usize, 4096, 1);
        fx.dev.write_at(0, &all).await.unwrap();
        let mut model = vec![1u64; 512];
        fx.dev.write_zeroes(4096, 3 * 4096).await.unwrap();
        model[1..4].fill(0);
        fx.dev.unmap(MIB, 4096).await.unwrap();
        model[256] = 0;
        fx.dev.flush().await.unwrap();
        verify_all(&fx, &model).await;
        eprintln!("{}: ok (direct_io={})", fx.name, fx.dev.info().direct_io);
    }
}

// ---- loop device ----------------------------------------------------------

/// A loop device attached for the test, detached on drop.
struct LoopDev {
    path: PathBuf,
}

impl LoopDev {
    fn attach(file: &Path) -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(LoopDev { path })
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

#[tokio::test]
async fn loop_device() {
    let file = temp_file(16 * MIB);
    let lo = match LoopDev::attach(&file) {
        Ok(lo) => lo,
        Err(why) => {
            eprintln!("skipping loop device case: {why}");
            return;
        }
    };
    for (opts, blk) in [
        (OpenOptions::default(), None),
        (OpenOptions::default(), Some(4096)),
        (
            OpenOptions {
                force_pread: true,
                ..Default::default()
            },
            None,
        ),
    ] {
        let uri: DiskUri = match blk {
            Some(b) => format!("aio://{}?blk_size={b}", lo.path.display()),
            None => format!("aio://{}", lo.path.display()),
        }
        .parse()
        .unwrap();
        let dev = match open(&uri, &opts).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipping loop device case {uri}: {e}");
                continue;
            }
        };
        let bs = dev.info().block_size as usize;
        assert_eq!(dev.info().size_bytes(), 16 * MIB);
        let fx = Fixture {
            name: format!("loop/{}/{bs}", dev.info().backend),
            dev,
            _file: None,
        };
        let mut rng = SmallRng::seed_from_u64(23);
        let nblocks = fx.dev.info().num_blocks as usize;
        let mut model = vec![0u64; nblocks];
        fx.dev.write_zeroes(0, 16 * MIB).await.unwrap();
        for generation in 1..=50u64 {
            let first = rng.random_range(0..nblocks);
            let count = rng.random_range(1..=16usize).min(nblocks - first);
            let data = pattern((first * bs) as u64, count * bs, bs, generation);
            fx.dev.write_at((first * bs) as u64, &data).await.unwrap();
            model[first..first + count].fill(generation);
        }
        fx.dev.write_zeroes(MIB, MIB).await.unwrap();
        model[MIB as usize / bs..2 * MIB as usize / bs].fill(0);
        fx.dev.unmap(4 * MIB, MIB).await.unwrap();
        model[4 * MIB as usize / bs..5 * MIB as usize / bs].fill(0);
        fx.dev.flush().await.unwrap();
        verify_all(&fx, &model).await;
        eprintln!("{}: ok (direct_io={})", fx.name, fx.dev.info().direct_io);
    }
}
