//! End-to-end tests of the NVMe/TCP target with a raw codec-level client
//! over 127.0.2.x loopback addresses.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use nvmf::admin::{self, cns, lid, DsmRange};
use nvmf::fabrics::{csts, reg};
use nvmf::nvme::{admin_opc, io_opc, sc, Sqe};
use nvmf::pdu::{fes, Pdu};

fn identify(cns_: u8, nsid: u32) -> Sqe {
    Sqe {
        opcode: admin_opc::IDENTIFY,
        nsid,
        cdw10: u32::from(cns_),
        ..Sqe::default()
    }
}

fn get_log(lid_: u8, len: u32) -> Sqe {
    let numd = len / 4 - 1;
    Sqe {
        opcode: admin_opc::GET_LOG_PAGE,
        nsid: 0xffff_ffff,
        cdw10: u32::from(lid_) | ((numd & 0xffff) << 16),
        ..Sqe::default()
    }
}

fn rw(op: u8, slba: u64, nlb: u32) -> Sqe {
    Sqe::rw(op, 0, 1, slba, nlb, Default::default())
}

async fn io_roundtrip(hd: bool, dd: bool, ip: [u8; 4]) {
    let (t, cancel) = start(ip, &[HOST_A]).await;
    let (mut a, mut io, cntlid) = open_controller(t.local_addr(), HOST_A, hd, dd)
        .await
        .unwrap();
    assert!((0x100..=0x1ff).contains(&cntlid));
    assert_eq!(
        a.prop_get(reg::CSTS, false).await.unwrap() & u64::from(csts::RDY),
        1
    );
    let cap = a.prop_get(reg::CAP, true).await.unwrap();
    assert_eq!(cap & 0xffff, 127);

    let (cqe, d) = a
        .cmd(identify(cns::CONTROLLER, 0), None, false, 4096)
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    let ic = admin::IdentifyController::from_bytes(&d).unwrap();
    assert_eq!(ic.subnqn, NQN);
    assert_eq!(ic.cntlid, cntlid);
    assert_eq!(ic.ioccsz, (64 + 8192) / 16);
    let (_, d) = a
        .cmd(identify(cns::NAMESPACE, 1), None, false, 4096)
        .await
        .unwrap();
    let ns = admin::IdentifyNamespace::from_bytes(&d).unwrap();
    assert_eq!(ns.nsze, 64 * 1024 * 1024 / 512);
    assert_eq!(ns.lbads, 9);
    let (_, d) = a
        .cmd(identify(cns::ACTIVE_NS_LIST, 0), None, false, 4096)
        .await
        .unwrap();
    assert_eq!(&d[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
    let (cqe, d) = a
        .cmd(get_log(lid::SMART, 512), None, false, 512)
        .await
        .unwrap();
    assert!(cqe.status.is_success() && d.len() == 512);

    // In-capsule write (4 KiB) and R2T writes (64 KiB: two R2Ts of 32 KiB).
    let small = pattern(4096, 1);
    let big = pattern(65536, 2);
    let (cqe, _) = io
        .cmd(rw(io_opc::WRITE, 0, 8), Some(&small), true, 0)
        .await
        .unwrap();
    assert!(cqe.status.is_success(), "{:?}", cqe.status);
    let (cqe, _) = io
        .cmd(rw(io_opc::WRITE, 8, 128), Some(&big), false, 0)
        .await
        .unwrap();
    assert!(cqe.status.is_success(), "{:?}", cqe.status);
    let (cqe, d) = io
        .cmd(rw(io_opc::READ, 0, 8), None, false, 4096)
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    assert_eq!(crc32c::crc32c(&d), crc32c::crc32c(&small));
    let (_, d) = io
        .cmd(rw(io_opc::READ, 8, 128), None, false, 65536)
        .await
        .unwrap();
    assert_eq!(crc32c::crc32c(&d), crc32c::crc32c(&big));

    let (cqe, _) = io
        .cmd(
            Sqe {
                opcode: io_opc::FLUSH,
                nsid: 1,
                ..Sqe::default()
            },
            None,
            false,
            0,
        )
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    let (cqe, _) = io
        .cmd(rw(io_opc::WRITE_ZEROES, 0, 8), None, false, 0)
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    let (_, d) = io
        .cmd(rw(io_opc::READ, 0, 8), None, false, 4096)
        .await
        .unwrap();
    assert!(d.iter().all(|&b| b == 0));
    let ranges = admin::dsm_bytes(&[DsmRange {
        attributes: 0,
        nlb: 128,
        slba: 8,
    }]);
    let dsm = Sqe {
        opcode: io_opc::DATASET_MANAGEMENT,
        nsid: 1,
        cdw10: 0,
        cdw11: 1 << 2,
        ..Sqe::default()
    };
    let (cqe, _) = io.cmd(dsm, Some(&ranges), true, 0).await.unwrap();
    assert!(cqe.status.is_success());
    let (_, d) = io
        .cmd(rw(io_opc::READ, 8, 128), None, false, 65536)
        .await
        .unwrap();
    assert!(d.iter().all(|&b| b == 0));

    // Errors: LBA out of range, bad namespace, unknown opcode.
    let (cqe, _) = io
        .cmd(rw(io_opc::READ, 131072 - 4, 8), None, false, 4096)
        .await
        .unwrap();
    assert_eq!(cqe.status.code(), u16::from(sc::LBA_OUT_OF_RANGE));
    assert!(cqe.status.dnr);
    let mut bad_ns = rw(io_opc::READ, 0, 1);
    bad_ns.nsid = 7;
    let (cqe, _) = io.cmd(bad_ns, None, false, 512).await.unwrap();
    assert_eq!(cqe.status.code(), u16::from(sc::INVALID_NAMESPACE));
    let (cqe, _) = io
        .cmd(
            Sqe {
                opcode: 0x7e,
                nsid: 1,
                ..Sqe::default()
            },
            None,
            false,
            0,
        )
        .await
        .unwrap();
    assert_eq!(cqe.status.code(), u16::from(sc::INVALID_OPCODE));

    let info = t.subsystems();
    assert_eq!(info[0].hosts, vec![(HOST_A.to_string(), cntlid)]);
    drop((a, io));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_identify_and_io() {
    io_roundtrip(false, false, [127, 0, 2, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_with_header_and_data_digests() {
    io_roundtrip(true, true, [127, 0, 2, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rejects_disallowed_host_and_unknown_subsystem() {
    let (t, cancel) = start([127, 0, 2, 3], &[HOST_A]).await;
    let mut c = Client::connect(t.local_addr(), false, false).await.unwrap();
    let cqe = c.fabric_connect(NQN, HOST_B, 0, 0xffff).await.unwrap();
    assert_eq!(cqe.status.code(), 0x184);
    let cqe = c
        .fabric_connect("nqn.2019-05.io.openebs:nope", HOST_A, 0, 0xffff)
        .await
        .unwrap();
    assert_eq!(cqe.status.code(), 0x182);
    assert_eq!(cqe.dw0, (1 << 16) | 256, "IATTR=1 (data), IPO=256 (subnqn)");
    // An empty allow-list admits nobody.
    t.set_allowed_hosts(NQN, vec![]).unwrap();
    let cqe = c.fabric_connect(NQN, HOST_A, 0, 0xffff).await.unwrap();
    assert_eq!(cqe.status.code(), 0x184);

    // Discovery admits anyone but lists only what the host may access.
    t.set_allowed_hosts(NQN, vec![HOST_A.into()]).unwrap();
    for (host, n) in [(HOST_A, 1), (HOST_B, 0)] {
        let mut d = Client::connect(t.local_addr(), false, false).await.unwrap();
        let cqe = d
            .fabric_connect(nvmf::DISCOVERY_NQN, host, 0, 0xffff)
            .await
            .unwrap();
        assert!(cqe.status.is_success());
        let (cqe, page) = d
            .cmd(get_log(lid::DISCOVERY, 4096), None, false, 4096)
            .await
            .unwrap();
        assert!(cqe.status.is_success());
        let (_, entries) = admin::parse_discovery_log(&page).unwrap();
        assert_eq!(entries.len(), n, "host {host}");
        if n == 1 {
            assert_eq!(entries[0].subnqn, NQN);
            assert_eq!(entries[0].trsvcid, t.local_addr().port().to_string());
            assert_eq!(entries[0].traddr, "127.0.2.3");
        }
    }
    cancel.cancel();
}

async fn expect_term_or_close(c: &mut Client, want_fes: Option<u16>) {
    match c.recv().await {
        Ok(Some(Pdu::C2HTermReq(t))) => {
            if let Some(f) = want_fes {
                assert_eq!(t.fes, f);
            }
            assert!(
                matches!(c.recv().await, Ok(None) | Err(_)),
                "connection must close after a TermReq"
            );
        }
        Ok(None) | Err(_) => assert!(want_fes.is_none(), "expected a TermReq"),
        Ok(Some(other)) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pdus_end_only_their_connection() {
    let (t, cancel) = start([127, 0, 2, 4], &[HOST_A]).await;
    let addr = t.local_addr();
    let (_a, mut io, _) = open_controller(addr, HOST_A, false, false).await.unwrap();

    // Bad hlen on the very first PDU.
    let mut c = Client::raw(addr).await.unwrap();
    c.send_raw(&[0, 0, 100, 0, 128, 0, 0, 0]).await.unwrap();
    expect_term_or_close(&mut c, Some(fes::INVALID_HEADER_FIELD)).await;

    // Unknown PDU type after a good ICReq.
    let mut c = Client::connect(addr, false, false).await.unwrap();
    c.send_raw(&[0x42, 0, 24, 0, 24, 0, 0, 0]).await.unwrap();
    expect_term_or_close(&mut c, Some(fes::INVALID_HEADER_FIELD)).await;

    // Bad header digest.
    let mut c = Client::connect(addr, true, false).await.unwrap();
    let mut b = BytesMut::new();
    Pdu::CapsuleCmd(nvmf::pdu::CapsuleCmd {
        sqe: identify(cns::CONTROLLER, 0),
        data: Default::default(),
    })
    .encode(&mut b, c.opts);
    let n = b.len();
    b[n - 1] ^= 0xff;
    c.send_raw(&b).await.unwrap();
    expect_term_or_close(&mut c, Some(fes::HEADER_DIGEST_ERROR)).await;

    // Oversized plen: refused from the header.
    let mut c = Client::connect(addr, false, false).await.unwrap();
    c.send_raw(&[4, 0, 72, 72, 0, 0, 0, 0x40]).await.unwrap();
    expect_term_or_close(&mut c, Some(fes::DATA_LIMIT_EXCEEDED)).await;

    // Truncated PDU, then the host goes away: just closes.
    let mut c = Client::connect(addr, false, false).await.unwrap();
    c.send_raw(&[4, 0, 72, 0, 72, 0, 0, 0, 1, 2, 3])
        .await
        .unwrap();
    drop(c);

    // A command before ICReq: PDU sequence error.
    let mut c = Client::raw(addr).await.unwrap();
    let mut b = BytesMut::new();
    Pdu::CapsuleCmd(Default::default()).encode(&mut b, Default::default());
    c.send_raw(&b).await.unwrap();
    expect_term_or_close(&mut c, Some(fes::PDU_SEQUENCE_ERROR)).await;

    // The healthy connection still works.
    let data = pattern(4096, 9);
    let (cqe, _) = io
        .cmd(rw(io_opc::WRITE, 100, 8), Some(&data), true, 0)
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    let (_, d) = io
        .cmd(rw(io_opc::READ, 100, 8), None, false, 4096)
        .await
        .unwrap();
    assert_eq!(d, data);
    assert!(t.stats().term_reqs_sent >= 5);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_subsystem_with_io_in_flight_does_not_hang() {
    let (t, cancel) = start([127, 0, 2, 5], &[HOST_A]).await;
    let (mut a, mut io, _) = open_controller(t.local_addr(), HOST_A, false, false)
        .await
        .unwrap();
    // Fire a burst of 64 KiB reads without waiting for them.
    for i in 0..32u16 {
        let mut sqe = rw(io_opc::READ, u64::from(i) * 128, 128);
        sqe.cid = 1000 + i;
        sqe.dptr = nvmf::nvme::SglDescriptor::transport(65536);
        io.send(&Pdu::CapsuleCmd(nvmf::pdu::CapsuleCmd {
            sqe,
            data: Default::default(),
        }))
        .await
        .unwrap();
    }
    let removal = tokio::time::timeout(Duration::from_secs(6), t.remove_subsystem(NQN));
    removal
        .await
        .expect("remove_subsystem must not hang")
        .unwrap();
    assert!(t.subsystems().is_empty());
    // The client sees its I/O complete or the connection close, in bounded time.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = io.recv().await {}
    })
    .await;
    assert!(drained.is_ok(), "connection did not close");
    assert!(matches!(
        a.recv().await,
        Ok(None) | Err(_) | Ok(Some(Pdu::CapsuleResp(_)))
    ));
    // New connects to the removed subsystem fail.
    let mut c = Client::connect(t.local_addr(), false, false).await.unwrap();
    assert_eq!(
        c.fabric_connect(NQN, HOST_A, 0, 0xffff)
            .await
            .unwrap()
            .status
            .code(),
        0x182
    );
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_access_reservation_blocks_other_hosts_until_preempted() {
    let (t, cancel) = start([127, 0, 2, 6], &[HOST_A, HOST_B]).await;
    let (_a1, mut ioa, _) = open_controller(t.local_addr(), HOST_A, false, false)
        .await
        .unwrap();
    let (_a2, mut iob, _) = open_controller(t.local_addr(), HOST_B, false, false)
        .await
        .unwrap();
    let keys = |c: u64, o: u64| {
        nvmf::admin::ReservationKeys {
            current: c,
            other: o,
        }
        .to_bytes()
    };
    let reg = Sqe {
        opcode: io_opc::RESERVATION_REGISTER,
        nsid: 1,
        ..Sqe::default()
    };
    assert!(ioa
        .cmd(reg, Some(&keys(0, 0xa)), true, 0)
        .await
        .unwrap()
        .0
        .status
        .is_success());
    assert!(iob
        .cmd(reg, Some(&keys(0, 0xb)), true, 0)
        .await
        .unwrap()
        .0
        .status
        .is_success());
    let acq = |action: u32| Sqe {
        opcode: io_opc::RESERVATION_ACQUIRE,
        nsid: 1,
        cdw10: action | (2 << 8),
        ..Sqe::default()
    };
    assert!(ioa
        .cmd(acq(0), Some(&keys(0xa, 0)), true, 0)
        .await
        .unwrap()
        .0
        .status
        .is_success());
    let (cqe, _) = iob
        .cmd(rw(io_opc::READ, 0, 1), None, false, 512)
        .await
        .unwrap();
    assert_eq!(cqe.status.code(), u16::from(sc::RESERVATION_CONFLICT));
    // B preempts A (as a new nexus target fences the old one).
    assert!(iob
        .cmd(acq(1), Some(&keys(0xb, 0xa)), true, 0)
        .await
        .unwrap()
        .0
        .status
        .is_success());
    let (cqe, _) = iob
        .cmd(rw(io_opc::READ, 0, 1), None, false, 512)
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    let (cqe, _) = ioa
        .cmd(rw(io_opc::WRITE, 0, 1), Some(&[0u8; 512]), true, 0)
        .await
        .unwrap();
    assert_eq!(cqe.status.code(), u16::from(sc::RESERVATION_CONFLICT));
    let report = Sqe {
        opcode: io_opc::RESERVATION_REPORT,
        nsid: 1,
        cdw10: 63,
        cdw11: 1,
        ..Sqe::default()
    };
    let (cqe, d) = iob.cmd(report, None, false, 256).await.unwrap();
    assert!(cqe.status.is_success());
    assert_eq!(d[4], 2, "exclusive access");
    assert_eq!(
        u16::from_le_bytes([d[5], d[6]]),
        1,
        "only B left registered"
    );
    cancel.cancel();
}

/// A host that stops sending commands on its admin queue loses its
/// controller after the keep-alive timeout: both queues are closed and the
/// subsystem no longer lists it. A host that keeps alive stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_timeout_tears_a_silent_host_down() {
    use nvmf::fabrics::{ConnectCmd, ConnectData};

    let (target, cancel) = start([127, 0, 2, 40], &[HOST_A, HOST_B]).await;
    let addr = target.local_addr();
    let kato_connect = |kato_ms: u32, host: &'static str| async move {
        let mut a = Client::connect(addr, false, false).await.unwrap();
        let c = ConnectCmd {
            recfmt: 0,
            qid: 0,
            sqsize: 31,
            cattr: 0,
            kato_ms,
        };
        let d = ConnectData {
            hostid: host_id(host),
            cntlid: 0xffff,
            subnqn: NQN.into(),
            hostnqn: host.into(),
        };
        let (cqe, _) = a
            .cmd(c.to_sqe(0), Some(&d.to_bytes()), true, 0)
            .await
            .unwrap();
        assert!(cqe.status.is_success(), "{:?}", cqe.status);
        a.prop_set(reg::CC, 1 | (6 << 16) | (4 << 20))
            .await
            .unwrap();
        (a, cqe.dw0 as u16)
    };
    let (mut silent, silent_id) = kato_connect(1000, HOST_A).await;
    let (mut alive, alive_id) = kato_connect(1000, HOST_B).await;
    let hosts = |t: &nvmf_target::Target| -> Vec<u16> {
        t.subsystems()
            .iter()
            .flat_map(|s| s.hosts.iter().map(|h| h.1))
            .collect()
    };
    assert!(hosts(&target).contains(&silent_id) && hosts(&target).contains(&alive_id));
    // Keep one host alive with Keep Alive commands for 6 s.
    let keeper = tokio::spawn(async move {
        for _ in 0..12 {
            let (cqe, _) = alive
                .cmd(
                    Sqe {
                        opcode: admin_opc::KEEP_ALIVE,
                        ..Sqe::default()
                    },
                    None,
                    false,
                    0,
                )
                .await
                .unwrap();
            assert!(cqe.status.is_success());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        alive
    });
    // The silent one is closed within KATO + grace (well under 10 s).
    let closed = closed_within(&mut silent, Duration::from_secs(10)).await;
    assert!(closed, "silent host still connected after 10 s");
    let _alive = keeper.await.unwrap();
    let now = hosts(&target);
    assert!(
        !now.contains(&silent_id),
        "silent controller {silent_id} still listed: {now:?}"
    );
    assert!(
        now.contains(&alive_id),
        "kept-alive controller {alive_id} was torn down: {now:?}"
    );
    cancel.cancel();
}

/// Taking a host off the allow-list disconnects it; the others stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_host_from_the_allow_list_disconnects_it() {
    let (target, cancel) = start([127, 0, 2, 41], &[HOST_A, HOST_B]).await;
    let addr = target.local_addr();
    let (mut a_admin, _a_io, a_id) = open_controller(addr, HOST_A, false, false).await.unwrap();
    let (mut b_admin, _b_io, b_id) = open_controller(addr, HOST_B, false, false).await.unwrap();
    target
        .set_allowed_hosts(NQN, vec![HOST_B.to_string()])
        .unwrap();
    let closed = closed_within(&mut a_admin, Duration::from_secs(5)).await;
    assert!(closed, "host A still connected after losing access");
    b_admin
        .prop_get(reg::CSTS, false)
        .await
        .expect("host B keeps working");
    let hosts: Vec<u16> = target
        .subsystems()
        .iter()
        .flat_map(|s| s.hosts.iter().map(|h| h.1))
        .collect();
    assert!(!hosts.contains(&a_id) && hosts.contains(&b_id), "{hosts:?}");
    // And A cannot come back.
    assert!(open_controller(addr, HOST_A, false, false).await.is_err());
    cancel.cancel();
}

/// Sends an Async Event Request with command id `cid` without waiting
/// for its completion (it completes when an event is reported).
async fn park_aer(a: &mut Client, cid: u16) {
    let sqe = Sqe {
        opcode: admin_opc::ASYNC_EVENT_REQUEST,
        cid,
        ..Sqe::default()
    };
    a.send(&Pdu::CapsuleCmd(nvmf::pdu::CapsuleCmd {
        sqe,
        data: bytes::Bytes::new(),
    }))
    .await
    .unwrap();
}

/// The completion of parked command `cid` (within 5 s).
async fn completion_of(a: &mut Client, cid: u16) -> nvmf::nvme::Cqe {
    let r = tokio::time::timeout(Duration::from_secs(5), a.recv())
        .await
        .expect("a completion within 5 s")
        .unwrap();
    match r {
        Some(Pdu::CapsuleResp(r)) if r.cqe.cid == cid => r.cqe,
        other => panic!("expected the completion of {cid}, got {other:?}"),
    }
}

/// (change count, group state) of an ANA log page.
fn ana_page(d: &[u8]) -> (u64, u8) {
    (u64::from_le_bytes(d[0..8].try_into().unwrap()), d[32])
}

/// A subsystem set INACCESSIBLE answers namespace commands with "ANA
/// inaccessible" (SCT 3, DNR clear: a multipath host retries them on
/// another path), its ANA log page says so with a new change count, and
/// an admin queue that enabled ANA change notices gets one (at once when
/// an Async Event Request is parked, else with the next one). Back to
/// OPTIMIZED, I/O runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ana_inaccessible_fails_io_with_a_path_status_and_notifies_the_host() {
    use nvmf::admin::aen;
    use nvmf::nvme::{sc_path, sct};
    use nvmf_target::AnaState;

    let (t, cancel) = start([127, 0, 163, 1], &[HOST_A]).await;
    let (mut a, mut io, _) = open_controller(t.local_addr(), HOST_A, false, false)
        .await
        .unwrap();
    let (cqe, d) = a
        .cmd(get_log(lid::ANA, 4096), None, false, 4096)
        .await
        .unwrap();
    assert!(cqe.status.is_success());
    assert_eq!(ana_page(&d), (1, 0x01), "optimized, change count 1");
    let aec = Sqe {
        opcode: admin_opc::SET_FEATURES,
        cdw10: u32::from(nvmf::admin::fid::ASYNC_EVENT_CONFIG),
        cdw11: aen::AEC_ANA_CHANGE,
        ..Sqe::default()
    };
    assert!(a
        .cmd(aec, None, false, 0)
        .await
        .unwrap()
        .0
        .status
        .is_success());
    park_aer(&mut a, 0x7000).await;

    assert_eq!(
        t.set_ana_state(NQN, AnaState::Inaccessible).unwrap(),
        AnaState::Optimized
    );
    let cqe = completion_of(&mut a, 0x7000).await;
    assert!(cqe.status.is_success());
    assert_eq!(cqe.dw0, aen::ANA_CHANGE_DW0, "notice, ANA change, log 0x0c");
    let (_, d) = a
        .cmd(get_log(lid::ANA, 4096), None, false, 4096)
        .await
        .unwrap();
    assert_eq!(ana_page(&d), (2, 0x03), "inaccessible, change count 2");
    assert_eq!(t.subsystems()[0].ana_state, AnaState::Inaccessible);
    assert_eq!(t.subsystems()[0].ana_change_count, 2);

    for (sqe, data) in [
        (rw(io_opc::WRITE, 0, 8), Some(pattern(4096, 3))),
        (rw(io_opc::READ, 0, 8), None),
    ] {
        let (cqe, _) = io.cmd(sqe, data.as_deref(), true, 4096).await.unwrap();
        assert_eq!(
            (cqe.status.sct, cqe.status.sc, cqe.status.dnr),
            (sct::PATH, sc_path::ANA_INACCESSIBLE, false),
            "opcode {:#x}",
            sqe.opcode
        );
    }

    // A change while no request is parked is reported by the next one.
    t.set_ana_state(NQN, AnaState::Optimized).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    park_aer(&mut a, 0x7001).await;
    assert_eq!(completion_of(&mut a, 0x7001).await.dw0, aen::ANA_CHANGE_DW0);
    let (_, d) = a
        .cmd(get_log(lid::ANA, 4096), None, false, 4096)
        .await
        .unwrap();
    assert_eq!(ana_page(&d), (3, 0x01));
    let data = pattern(4096, 4);
    let (cqe, _) = io
        .cmd(rw(io_opc::WRITE, 0, 8), Some(&data), true, 0)
        .await
        .unwrap();
    assert!(cqe.status.is_success(), "{:?}", cqe.status);
    let (_, back) = io
        .cmd(rw(io_opc::READ, 0, 8), None, false, 4096)
        .await
        .unwrap();
    assert_eq!(back, data);
    assert!(matches!(
        t.set_ana_state("nqn.2019-05.io.openebs:nope", AnaState::Inaccessible),
        Err(nvmf_target::TargetError::NotFound { .. })
    ));
    cancel.cancel();
}
