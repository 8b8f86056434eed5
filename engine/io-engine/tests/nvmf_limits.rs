//! The NVMe/TCP target of a real `io-engine` process against a hostile
//! host: every command with a host-supplied length claiming the largest
//! value its field allows, transport-level lies about PDU sizes, and a fuzz
//! run of admin commands with random lengths.
//!
//! What users rely on: the hostile host gets error statuses (or, for a
//! transport violation, a closed connection), the engine's memory (VmRSS
//! from `/proc/<pid>/status`) does not grow, the engine stays up, and a
//! second host keeps doing checksummed I/O that reads back exactly what it
//! wrote throughout.
//!
//! The fuzz test runs for `FUZZ_SECONDS` (default 15; `FUZZ_SEED` repeats a
//! run). The 10-minute run goes through `cargo test`, as nextest stops a
//! test after 10 minutes: `FUZZ_SECONDS=600 cargo test -p io-engine --test
//! nvmf_limits fuzz -- --nocapture`. Addresses: 127.0.90.x.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../nvmf-target/tests/common/mod.rs"]
mod raw;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use blockdev::{BlockDevice, DmaBuf};
use bytes::{BufMut, Bytes, BytesMut};
use common::{free_port, ok, Engine};
use io_engine::stress::fill_pattern;
use nvmf::nvme::{admin_opc, io_opc, sc, sct, Cqe, SglDescriptor, Sqe, SQE_FLAGS_SGL};
use nvmf::pdu::{CapsuleCmd, DataPdu, Pdu};
use nvmf_host::{ConnectOptions, Controller, Namespace};
use rand::{rngs::StdRng, Rng, SeedableRng};
use raw::Client;
use tokio::task::JoinHandle;
use uuid::Uuid;

const HOSTILE: &str = "nqn.2019-05.io.openebs:node-name:hostile";
const GOOD: &str = "nqn.2019-05.io.openebs:node-name:good";
/// RSS the engine may gain while attacked (allocator noise, not transfers:
/// one unchecked NUMD or SGL length is 4-16 GiB).
const RSS_SLACK_KIB: u64 = 48 * 1024;

/// An engine sharing a 64 MiB replica with [`HOSTILE`] and [`GOOD`].
struct Setup {
    engine: Engine,
    nvmf: SocketAddr,
    nqn: String,
    uri: String,
    _dir: tempfile::TempDir,
}

fn setup(ip: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("pool.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(128 << 20))
        .expect("disk");
    let nvmf: SocketAddr = format!("{ip}:{}", free_port(ip)).parse().expect("addr");
    let engine = Engine::start(
        ip,
        0,
        "node-limits",
        &["--nvmf-endpoint", &nvmf.to_string()],
    );
    ok(engine.client(&[
        "pool",
        "create",
        "lpool",
        &format!("aio://{}", disk.display()),
    ]));
    ok(engine.client(&["replica", "create", "lpool", "vol", "--size", "64"]));
    let uri = ok(engine.client(&[
        "replica",
        "share",
        "lpool",
        "vol",
        "--allowed-host",
        HOSTILE,
        "--allowed-host",
        GOOD,
    ]))
    .trim()
    .to_string();
    let nqn = uri
        .split('/')
        .nth(3)
        .and_then(|s| s.split('?').next())
        .expect("nqn in the share uri")
        .to_string();
    Setup {
        engine,
        nvmf,
        nqn,
        uri,
        _dir: dir,
    }
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// The well-behaved host: writes checksummed extents at random offsets
/// and reads each back, until told to stop. Returns verified round trips.
struct GoodHost {
    verified: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<u64>,
}

async fn good_host(uri: &str) -> GoodHost {
    let mut o = ConnectOptions::from_uri(uri).expect("replica uri");
    o.hostnqn = GOOD.to_string();
    o.io_queues = 1;
    o.queue_depth = 32;
    o.io_timeout_ms = 10_000;
    let c = Controller::connect(o).await.expect("good host connects");
    let ns: Arc<Namespace> = Arc::new(c.namespace(1).await.expect("namespace 1"));
    let verified = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (v, s) = (verified.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let _keep = c;
        let id = Uuid::new_v4();
        let bs = u64::from(ns.info().block_size);
        let blocks = ns.info().num_blocks;
        let mut rng = StdRng::seed_from_u64(17);
        while !s.load(Ordering::Relaxed) {
            let len = rng.random_range(1..=64u64);
            let off = rng.random_range(0..blocks - len) * bs;
            let seed: u64 = rng.random();
            let mut w = DmaBuf::new((len * bs) as usize);
            fill_pattern(&mut w, bs as usize, &id, off, seed);
            ns.write_at(off, &w).await.expect("good host write");
            let mut r = DmaBuf::new((len * bs) as usize);
            ns.read_at(off, &mut r).await.expect("good host read");
            assert!(r[..] == w[..], "good host read back other data at {off}");
            v.fetch_add(1, Ordering::Relaxed);
        }
        v.load(Ordering::Relaxed)
    });
    GoodHost {
        verified,
        stop,
        task,
    }
}

impl GoodHost {
    /// Waits until at least `n` more round trips have been verified.
    async fn advances(&self, n: u64) {
        let start = self.verified.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.verified.load(Ordering::Relaxed) < start + n {
            assert!(!self.task.is_finished(), "good host stopped");
            assert!(Instant::now() < deadline, "good host made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("good host task")
    }
}

/// Admin queue (controller enabled) and one I/O queue as [`HOSTILE`].
async fn hostile_queues(s: &Setup) -> (Client, Client) {
    let mut a = Client::connect(s.nvmf, false, false).await.unwrap();
    let cqe = a.fabric_connect(&s.nqn, HOSTILE, 0, 0xffff).await.unwrap();
    assert!(cqe.status.is_success(), "admin connect: {:?}", cqe.status);
    a.prop_set(nvmf::fabrics::reg::CC, 1 | (6 << 16) | (4 << 20))
        .await
        .unwrap();
    let mut io = Client::connect(s.nvmf, false, false).await.unwrap();
    let cqe = io
        .fabric_connect(&s.nqn, HOSTILE, 1, cqe.dw0 as u16)
        .await
        .unwrap();
    assert!(cqe.status.is_success(), "io connect: {:?}", cqe.status);
    (a, io)
}

/// Sends `sqe` as is (its SGL included) with `icd` in-capsule bytes;
/// answers R2Ts with the bytes asked for. Returns the CQE and how many data
/// bytes came back, or `None` when the target closed the connection.
async fn send(c: &mut Client, mut sqe: Sqe, icd: Bytes) -> Option<(Cqe, usize)> {
    sqe.cid = c.next_cid;
    c.next_cid = c.next_cid.wrapping_add(1);
    c.send(&Pdu::CapsuleCmd(CapsuleCmd { sqe, data: icd }))
        .await
        .ok()?;
    let mut got = 0usize;
    loop {
        match c.recv().await {
            Ok(Some(Pdu::R2T(r))) => {
                let data = Bytes::from(vec![0xa5u8; r.r2tl as usize]);
                c.send(&Pdu::H2CData(DataPdu {
                    cccid: r.cccid,
                    ttag: r.ttag,
                    datao: r.r2to,
                    last: true,
                    success: false,
                    data,
                }))
                .await
                .ok()?;
            }
            Ok(Some(Pdu::C2HData(d))) => got += d.data.len(),
            Ok(Some(Pdu::CapsuleResp(r))) if r.cqe.cid == sqe.cid => return Some((r.cqe, got)),
            Ok(Some(Pdu::C2HTermReq(_))) | Ok(None) => return None,
            Ok(Some(_)) => {}
            Err(e) => panic!("target stopped answering: {e:#}"),
        }
    }
}

fn admin(opcode: u8, nsid: u32, cdw10: u32, cdw11: u32, dptr: SglDescriptor) -> Sqe {
    Sqe {
        opcode,
        flags: SQE_FLAGS_SGL,
        nsid,
        dptr,
        cdw10,
        cdw11,
        ..Sqe::default()
    }
}

/// Get Log Page with the largest NUMD (2^32 dwords = 16 GiB).
fn huge_log(lid: u8, sgl_len: u32) -> Sqe {
    admin(
        admin_opc::GET_LOG_PAGE,
        0xffff_ffff,
        0xffff_0000 | u32::from(lid),
        0xffff,
        SglDescriptor::transport(sgl_len),
    )
}

#[track_caller]
fn assert_refused(r: Option<(Cqe, usize)>, what: &str, want_sc: &[u8]) {
    let (cqe, got) =
        r.unwrap_or_else(|| panic!("{what}: connection closed, error status expected"));
    assert!(!cqe.status.is_success(), "{what}: accepted");
    assert!(
        cqe.status.sct == sct::GENERIC && want_sc.contains(&cqe.status.sc),
        "{what}: status {:?}, expected one of {want_sc:?}",
        cqe.status
    );
    assert_eq!(got, 0, "{what}: no data with an error");
}

/// A keep-alive answered: the connection is still served.
async fn alive(c: &mut Client, what: &str) {
    let (cqe, _) = send(
        c,
        admin(admin_opc::KEEP_ALIVE, 0, 0, 0, SglDescriptor::default()),
        Bytes::new(),
    )
    .await
    .unwrap_or_else(|| panic!("{what}: connection closed"));
    assert!(
        cqe.status.is_success(),
        "{what}: keep-alive {:?}",
        cqe.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_lengths_get_errors_memory_stays_flat_and_other_hosts_keep_working() {
    let s = setup("127.0.90.1");
    let pid = s.engine.pid().expect("engine pid");
    let good = good_host(&s.uri).await;
    good.advances(20).await;
    let (mut a, mut io) = hostile_queues(&s).await;
    let rss_before = rss_kib(pid);
    const MDTS: u32 = 1 << 20;
    let max = u32::MAX;

    // Admin commands with a length, each at the largest value its fields
    // allow, several rounds (a leak would add up).
    for round in 0..8 {
        for lid in [0x01u8, 0x02, 0x04, 0x0c, 0x70, 0xff] {
            for sgl in [max, MDTS, 4096] {
                let what = format!("round {round}: get log page {lid:#x} numd max, sgl {sgl}");
                assert_refused(
                    send(&mut a, huge_log(lid, sgl), Bytes::new()).await,
                    &what,
                    &[sc::DATA_SGL_LENGTH_INVALID],
                );
            }
        }
        for cns in [0u32, 1, 2, 3, 0x05] {
            let what = format!("identify cns {cns} sgl max");
            let sqe = admin(
                admin_opc::IDENTIFY,
                1,
                cns,
                0,
                SglDescriptor::transport(max),
            );
            assert_refused(
                send(&mut a, sqe, Bytes::new()).await,
                &what,
                &[sc::DATA_SGL_LENGTH_INVALID],
            );
        }
        for fid in [0x07u32, 0x0f, 0x81] {
            let sqe = admin(
                admin_opc::GET_FEATURES,
                0,
                fid,
                max,
                SglDescriptor::transport(max),
            );
            assert_refused(
                send(&mut a, sqe, Bytes::new()).await,
                &format!("get features {fid:#x} sgl max"),
                &[sc::DATA_SGL_LENGTH_INVALID],
            );
            let sqe = admin(
                admin_opc::SET_FEATURES,
                0,
                fid,
                max,
                SglDescriptor::transport(max),
            );
            assert_refused(
                send(&mut a, sqe, Bytes::new()).await,
                &format!("set features {fid:#x} sgl max"),
                &[sc::DATA_SGL_LENGTH_INVALID],
            );
        }
        alive(&mut a, "admin queue").await;

        // I/O commands with a length.
        let read = Sqe::rw(
            io_opc::READ,
            0,
            1,
            0,
            0x1_0000,
            SglDescriptor::transport(max),
        );
        assert_refused(
            send(&mut io, read, Bytes::new()).await,
            "read nlb max",
            &[sc::INVALID_FIELD, sc::LBA_OUT_OF_RANGE],
        );
        let write = Sqe::rw(
            io_opc::WRITE,
            0,
            1,
            0,
            0x1_0000,
            SglDescriptor::transport(max),
        );
        assert_refused(
            send(&mut io, write, Bytes::new()).await,
            "write sgl max",
            &[sc::DATA_SGL_LENGTH_INVALID],
        );
        let mut report = admin(
            io_opc::RESERVATION_REPORT,
            1,
            max,
            1,
            SglDescriptor::transport(max),
        );
        assert_refused(
            send(&mut io, report, Bytes::new()).await,
            "reservation report numd max, sgl max",
            &[sc::DATA_SGL_LENGTH_INVALID],
        );
        report.dptr = SglDescriptor::transport(MDTS);
        assert_refused(
            send(&mut io, report, Bytes::new()).await,
            "reservation report numd max, sgl mdts",
            &[sc::DATA_SGL_LENGTH_INVALID],
        );
        let dsm = admin(
            io_opc::DATASET_MANAGEMENT,
            1,
            0xff,
            1 << 2,
            SglDescriptor::transport(max),
        );
        assert_refused(
            send(&mut io, dsm, Bytes::new()).await,
            "dataset management sgl max",
            &[sc::DATA_SGL_LENGTH_INVALID],
        );
        alive(&mut a, "admin queue after i/o").await;
    }
    good.advances(20).await;

    // Transport-level lies: a PDU claiming 4 GiB, and an in-capsule SGL
    // longer than the capsule. The first closes that connection only.
    let mut liar = Client::connect(s.nvmf, false, false).await.unwrap();
    let mut b = BytesMut::new();
    b.put_u8(0x04); // CapsuleCmd
    b.put_u8(0);
    b.put_u8(72);
    b.put_u8(72);
    b.put_u32_le(u32::MAX);
    b.resize(72, 0);
    liar.send_raw(&b).await.unwrap();
    assert!(
        raw::closed_within(&mut liar, Duration::from_secs(5)).await,
        "a PDU longer than the target allows closes the connection"
    );
    let lie = admin(admin_opc::IDENTIFY, 1, 1, 0, SglDescriptor::in_capsule(max));
    let r = send(&mut a, lie, Bytes::from_static(&[0; 64])).await;
    assert!(
        r.is_none_or(|(c, _)| !c.status.is_success()),
        "in-capsule sgl longer than the capsule is refused"
    );

    let rss_after = rss_kib(pid);
    eprintln!("engine VmRSS before {rss_before} KiB, after {rss_after} KiB");
    assert!(
        rss_after <= rss_before + RSS_SLACK_KIB,
        "engine memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    good.advances(20).await;
    let n = good.finish().await;
    assert!(n >= 60, "good host verified {n} round trips");
}

/// One random admin command: any opcode of the admin set (and a few
/// others), random CDW10..15 and NSID, random SGL kind and length, in-capsule
/// data of a random size.
fn random_admin(rng: &mut StdRng) -> (Sqe, Bytes) {
    const OPS: [u8; 12] = [
        admin_opc::GET_LOG_PAGE,
        admin_opc::GET_LOG_PAGE,
        admin_opc::GET_LOG_PAGE,
        admin_opc::IDENTIFY,
        admin_opc::IDENTIFY,
        admin_opc::GET_FEATURES,
        admin_opc::SET_FEATURES,
        admin_opc::KEEP_ALIVE,
        admin_opc::ABORT,
        0x0d,
        0x81,
        0xff,
    ];
    let opcode = OPS[rng.random_range(0..OPS.len())];
    let len: u32 = match rng.random_range(0..4) {
        0 => rng.random(),
        1 => rng.random_range(0..=8192),
        2 => 1 << rng.random_range(0..32),
        _ => u32::MAX - rng.random_range(0..4096),
    };
    let icd_len = if rng.random_bool(0.2) {
        rng.random_range(0..=256usize)
    } else {
        0
    };
    let dptr = if icd_len > 0 || rng.random_bool(0.1) {
        SglDescriptor {
            addr: rng.random_range(0..=8),
            ..SglDescriptor::in_capsule(if rng.random_bool(0.5) {
                icd_len as u32
            } else {
                len
            })
        }
    } else {
        SglDescriptor::transport(len)
    };
    let sqe = Sqe {
        opcode,
        flags: SQE_FLAGS_SGL,
        nsid: if rng.random_bool(0.5) {
            rng.random()
        } else {
            1
        },
        dptr,
        cdw10: rng.random(),
        cdw11: rng.random(),
        cdw12: if rng.random_bool(0.7) {
            0
        } else {
            rng.random()
        },
        cdw13: if rng.random_bool(0.7) {
            0
        } else {
            rng.random()
        },
        cdw14: rng.random(),
        cdw15: rng.random(),
        ..Sqe::default()
    };
    let icd = Bytes::from((0..icd_len).map(|_| rng.random()).collect::<Vec<u8>>());
    (sqe, icd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_admin_commands_with_random_lengths() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzz: {seconds} s, FUZZ_SEED={seed}");
    let s = setup("127.0.90.2");
    let pid = s.engine.pid().expect("engine pid");
    let good = good_host(&s.uri).await;
    good.advances(20).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut a, _io) = hostile_queues(&s).await;
    let rss_start = rss_kib(pid);
    let mut rss_peak = rss_start;
    let (mut cmds, mut errors, mut reconnects) = (0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let (sqe, icd) = random_admin(&mut rng);
        match send(&mut a, sqe, icd).await {
            Some((cqe, got)) => {
                cmds += 1;
                errors += u64::from(!cqe.status.is_success());
                assert!(
                    got as u64 <= u64::from(sqe.dptr.len).min(1 << 20),
                    "{got} bytes returned for {sqe:?}"
                );
            }
            None => {
                reconnects += 1;
                a = hostile_queues(&s).await.0;
            }
        }
        if cmds % 256 == 0 {
            rss_peak = rss_peak.max(rss_kib(pid));
        }
    }
    alive(&mut a, "after fuzzing").await;
    let rss_end = rss_kib(pid);
    rss_peak = rss_peak.max(rss_end);
    eprintln!(
        "fuzz: {cmds} commands ({errors} errors, {reconnects} reconnects); engine VmRSS start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB; good host verified {} round trips",
        good.verified.load(Ordering::Relaxed)
    );
    assert!(cmds > 100, "fuzz ran only {cmds} commands");
    assert!(
        rss_peak <= rss_start + RSS_SLACK_KIB,
        "engine memory grew from {rss_start} KiB to a peak of {rss_peak} KiB"
    );
    good.advances(10).await;
    good.finish().await;
}
