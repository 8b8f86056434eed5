//! End-to-end tests of the NVMe/TCP host against the Linux kernel target
//! (`nvmet-tcp` in a QEMU guest, `shared/tools/nvme-vm`).
//!
//! Each test runs its body when `NVME_VM_TARGET_PORT` and
//! `NVME_VM_TARGET_NQN` are set (e.g. inside `with-kernel-target`);
//! otherwise it launches `with-kernel-target` itself, re-running this test
//! binary with `--exact <test>` inside it, so a plain `cargo test` /
//! `cargo nextest run` exercises the real kernel target (one VM per test,
//! two per run). A missing harness is a failure, never a silent pass.
//!
//! The two tests use disjoint halves of the namespace, so both may share
//! one target.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use blockdev::{Backend, BlockDevice};
use mayastor_common::pattern;
use nvmf_host::{ConnectOptions, Controller, Namespace};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tokio::{
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

const ENV_PORT: &str = "NVME_VM_TARGET_PORT";
const ENV_NQN: &str = "NVME_VM_TARGET_NQN";
const BLOCK: usize = 512;

fn target() -> Option<(SocketAddr, String)> {
    let port: u16 = std::env::var(ENV_PORT).ok()?.parse().ok()?;
    let nqn = std::env::var(ENV_NQN).ok()?;
    Some((SocketAddr::from(([127, 0, 0, 1], port)), nqn))
}

/// Re-runs `test` inside `with-kernel-target`; panics when the harness is
/// missing or the test failed there.
fn run_in_vm(test: &str) {
    let harness = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/tools/nvme-vm/with-kernel-target");
    assert!(
        harness.exists(),
        "{test}: the kernel-target harness is missing at {} (need the shared nvme-vm tools, \
         built with `shared/tools/nvme-vm/build-image` as root); set {ENV_PORT} and {ENV_NQN} \
         to run against a target you started yourself",
        harness.display()
    );
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let status = Command::new(&harness)
        .args(["-b", "brd", "-t", "300", "--"])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .status()
        .unwrap_or_else(|e| panic!("{test}: cannot run {}: {e}", harness.display()));
    eprintln!("{test}: kernel target run took {:?}", started.elapsed());
    assert!(
        status.success(),
        "{test}: failed against the kernel target (with-kernel-target exit status {status})"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// One worker's view of its stripe: the generation of each block.
struct Stripe {
    first_lba: u64,
    generations: Vec<u32>,
}

impl Stripe {
    async fn write(&mut self, ns: &Namespace, index: usize, nblocks: usize, generation: u32) {
        let mut buf = vec![0u8; nblocks * BLOCK];
        for (i, b) in buf.chunks_mut(BLOCK).enumerate() {
            pattern::fill(
                self.first_lba + (index + i) as u64,
                u64::from(generation),
                b,
            );
        }
        let off = (self.first_lba + index as u64) * BLOCK as u64;
        ns.write_at(off, &buf).await.unwrap_or_else(|e| {
            panic!(
                "write of {nblocks} blocks at lba {}: {e:#}",
                off / BLOCK as u64
            )
        });
        self.generations[index..index + nblocks].fill(generation);
    }

    async fn verify(&self, ns: &Namespace, index: usize, nblocks: usize) {
        let mut buf = vec![0xa5u8; nblocks * BLOCK];
        let off = (self.first_lba + index as u64) * BLOCK as u64;
        ns.read_at(off, &mut buf).await.unwrap_or_else(|e| {
            panic!(
                "read of {nblocks} blocks at lba {}: {e:#}",
                off / BLOCK as u64
            )
        });
        for (i, b) in buf.chunks(BLOCK).enumerate() {
            let lba = self.first_lba + (index + i) as u64;
            if let Some(wrong) = pattern::check(lba, u64::from(self.generations[index + i]), b) {
                panic!("{wrong}");
            }
        }
    }
}

/// Block counts that exercise every path: single blocks, 4 KiB, exactly
/// the 16 KiB in-capsule limit of Linux 6.1, just above it (R2T), 64 KiB,
/// and 1.5 MiB (R2T, and split at the host's 1 MiB per-command cap).
fn random_len(rng: &mut SmallRng, in_capsule_blocks: usize) -> usize {
    match rng.random_range(0..100) {
        0..20 => 1,
        20..45 => 8,
        45..60 => in_capsule_blocks.max(1),
        60..80 => in_capsule_blocks + 1,
        80..96 => 128,
        _ => 3072,
    }
}

#[test]
fn kernel_target_io() {
    match target() {
        Some((addr, nqn)) => runtime().block_on(io_body(addr, nqn)),
        None => run_in_vm("kernel_target_io"),
    }
}

async fn io_body(addr: SocketAddr, nqn: String) {
    let mut opts = ConnectOptions::new(addr, nqn.clone());
    opts.hostnqn = "nqn.2019-05.io.openebs:node-name:nvmf-host-test".into();
    let ctrl = Controller::connect(opts).await.unwrap();
    let info = ctrl.info().clone();
    eprintln!(
        "connected: cntlid {:?}, model {:?}, fw {:?}, nn {}, io queues {} x {}, in-capsule {} B, \
         MAXH2CDATA {}, MDTS {:?}",
        ctrl.cntlid(),
        info.identity.model,
        info.identity.firmware,
        info.identity.nn,
        info.io_queues,
        info.queue_depth,
        info.in_capsule_bytes,
        info.maxh2cdata,
        info.mdts_bytes
    );
    assert_eq!(info.identity.subnqn, nqn);
    assert!(info.io_queues >= 1 && info.io_queues <= 2);
    assert!(
        info.in_capsule_bytes >= 4096,
        "kernel target offers in-capsule data"
    );

    let ns = ctrl.namespace(1).await.unwrap();
    let di = ns.info().clone();
    eprintln!(
        "namespace 1: {} blocks of {} B ({})",
        di.num_blocks, di.block_size, di.uri
    );
    assert_eq!(di.backend, Backend::Nvmf);
    assert_eq!(di.block_size as usize, BLOCK, "brd exports 512-byte blocks");
    assert!(di.size_bytes() >= 128 << 20);
    assert!(ctrl.namespace(2).await.is_err(), "only namespace 1 exists");

    // Out of range and unaligned requests are refused before the wire.
    let mut one = vec![0u8; BLOCK];
    assert!(ns.read_at(di.size_bytes(), &mut one).await.is_err());
    assert!(ns.write_at(1, &one).await.is_err());

    // Our half of the namespace: the first 64 MiB, zeroed first.
    let region_blocks = (64usize << 20) / BLOCK;
    ns.write_zeroes(0, (region_blocks * BLOCK) as u64)
        .await
        .unwrap();

    let workers = 32;
    let stripe_blocks = region_blocks / workers;
    let in_capsule_blocks = info.in_capsule_bytes as usize / BLOCK;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(0x5eed + w as u64);
            let mut stripe = Stripe {
                first_lba: (w * stripe_blocks) as u64,
                generations: vec![0; stripe_blocks],
            };
            for round in 1..=12u32 {
                let n = random_len(&mut rng, in_capsule_blocks).min(stripe_blocks);
                let at = rng.random_range(0..=stripe_blocks - n);
                stripe.write(&ns, at, n, round).await;
                let n = random_len(&mut rng, in_capsule_blocks).min(stripe_blocks);
                let at = rng.random_range(0..=stripe_blocks - n);
                stripe.verify(&ns, at, n).await;
            }
            stripe.verify(&ns, 0, stripe_blocks).await;
            stripe
        }));
    }
    let mut stripes = Vec::new();
    for t in tasks {
        stripes.push(t.await.unwrap());
    }
    let st = ctrl.stats();
    eprintln!(
        "random I/O: {} workers in {:?}; commands {}, in-capsule writes {}, R2T {}, H2CData {}, \
         C2HData {}",
        workers,
        started.elapsed(),
        st.commands.load(Ordering::Relaxed),
        st.in_capsule_writes.load(Ordering::Relaxed),
        st.r2t.load(Ordering::Relaxed),
        st.h2c_pdus.load(Ordering::Relaxed),
        st.c2h_pdus.load(Ordering::Relaxed)
    );
    assert!(st.in_capsule_writes.load(Ordering::Relaxed) > 0);
    assert!(st.r2t.load(Ordering::Relaxed) > 0);
    assert_eq!(st.timeouts.load(Ordering::Relaxed), 0);

    ns.flush().await.unwrap();

    // Write Zeroes inside written data reads back zeroes, neighbours intact.
    let s = &mut stripes[3];
    s.write(&ns, 100, 300, 99).await;
    let off = (s.first_lba + 150) * BLOCK as u64;
    ns.write_zeroes(off, 100 * BLOCK as u64).await.unwrap();
    s.generations[150..250].fill(0);
    s.verify(&ns, 90, 320).await;

    // Unmap (Dataset Management) also reads back zeroes.
    let s = &mut stripes[4];
    s.write(&ns, 0, 64, 77).await;
    ns.unmap((s.first_lba + 8) * BLOCK as u64, 32 * BLOCK as u64)
        .await
        .unwrap();
    s.generations[8..40].fill(0);
    s.verify(&ns, 0, 64).await;

    // After disconnect every I/O fails with a clear error.
    ctrl.disconnect().await.unwrap();
    let err = ns.read_at(0, &mut one).await.unwrap_err();
    assert!(err.to_string().contains("disconnected"), "{err}");

    // Header and data digests, one I/O queue, a short keep-alive: the
    // association must survive an idle period longer than KATO.
    let mut opts = ConnectOptions::new(addr, nqn);
    opts.hdr_digest = true;
    opts.data_digest = true;
    opts.io_queues = 1;
    opts.kato_ms = 2_000;
    let ctrl = Controller::connect(opts).await.unwrap();
    assert!(ctrl.info().hdr_digest && ctrl.info().data_digest);
    let ns = ctrl.namespace(1).await.unwrap();
    let s = &mut stripes[5];
    s.write(&ns, 0, 8, 1000).await;
    s.write(&ns, 64, in_capsule_blocks + 40, 1001).await;
    s.verify(&ns, 0, 256).await;
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert!(ctrl.is_live());
    assert_eq!(ctrl.stats().reconnects.load(Ordering::Relaxed), 0);
    s.verify(&ns, 0, 256).await;
    assert!(ctrl.stats().r2t.load(Ordering::Relaxed) > 0);
    ctrl.disconnect().await.unwrap();
    eprintln!("kernel_target_io: OK");
}

/// A TCP proxy on 127.0.0.1 that can be cut (every connection dropped,
/// new ones refused) and restored.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            up,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[test]
fn kernel_target_reconnect() {
    match target() {
        Some((addr, nqn)) => runtime().block_on(reconnect_body(addr, nqn)),
        None => run_in_vm("kernel_target_reconnect"),
    }
}

async fn reconnect_body(addr: SocketAddr, nqn: String) {
    // Generous: the target runs in an emulated VM, where a new connection
    // can take several seconds to be accepted under load.
    const RECONNECT_MS: u32 = 20_000;
    let proxy = Proxy::start(addr).await;
    // Through a nexus-child style URI (the uuid is ignored).
    let uri = format!(
        "nvmf://{}/{nqn}?uuid=0b6e3f4c-1111-4222-8333-444455556666\
         &hostnqn=nqn.2019-05.io.openebs:node-name:reconnect-test\
         &reconnect_timeout_ms={RECONNECT_MS}&kato_ms=5000&io_timeout_ms=10000",
        proxy.addr
    );
    let ctrl = Controller::connect_uri(&uri).await.unwrap();
    assert_eq!(ctrl.options().reconnect_timeout_ms, RECONNECT_MS);
    let ns = ctrl.namespace(1).await.unwrap();
    let in_capsule_blocks = ctrl.info().in_capsule_bytes as usize / BLOCK;
    let cntlid_before = ctrl.cntlid().unwrap();

    // Our half of the namespace: 64 MiB starting at 128 MiB.
    let base_lba = (128u64 << 20) / BLOCK as u64;
    let workers = 16;
    let stripe_blocks = 4096;
    ns.write_zeroes(
        base_lba * BLOCK as u64,
        (workers * stripe_blocks * BLOCK) as u64,
    )
    .await
    .unwrap();

    // Phase 1: I/O in flight while the connection is cut, restored after
    // 1.5 s: everything completes and verifies.
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(0xc0ffee + w as u64);
            let mut stripe = Stripe {
                first_lba: base_lba + (w * stripe_blocks) as u64,
                generations: vec![0; stripe_blocks],
            };
            for round in 1..=20u32 {
                let n = random_len(&mut rng, in_capsule_blocks).min(256);
                let at = rng.random_range(0..=stripe_blocks - n);
                stripe.write(&ns, at, n, round).await;
                stripe.verify(&ns, at, n).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stripe.verify(&ns, 0, stripe_blocks).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    let cut_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!ctrl.is_live(), "controller noticed the cut");
    proxy.restore();
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "phase 1: I/O resumed after the restore; all verified {:?} after the cut",
        cut_at.elapsed()
    );
    let st = ctrl.stats();
    assert!(st.reconnects.load(Ordering::Relaxed) >= 1);
    let cntlid_after = ctrl.cntlid().unwrap();
    eprintln!("cntlid {cntlid_before} -> {cntlid_after}");

    // Phase 2: the connection stays down past the controller-loss
    // timeout: pending I/O fails with a clear error, new I/O fails fast.
    proxy.cut();
    let cut_at = Instant::now();
    let mut buf = vec![0u8; 8 * BLOCK];
    let pending = tokio::time::timeout(
        Duration::from_millis(u64::from(RECONNECT_MS) + 10_000),
        ns.read_at(base_lba * BLOCK as u64, &mut buf),
    )
    .await
    .expect("I/O must not hang past the reconnect timeout");
    let err = pending.unwrap_err().to_string();
    let waited = cut_at.elapsed();
    eprintln!("phase 2: pending read failed after {waited:?}: {err}");
    assert!(
        err.contains(&format!(
            "lost: reconnect timed out after {RECONNECT_MS} ms"
        )),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(u64::from(RECONNECT_MS) - 500));
    let t = Instant::now();
    let err = ns
        .write_at(base_lba * BLOCK as u64, &buf)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("reconnect timed out"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(1), "new I/O fails fast");
    proxy.restore();
    ctrl.disconnect().await.unwrap();
    eprintln!("kernel_target_reconnect: OK");
}
