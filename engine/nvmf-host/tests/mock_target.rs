//! The host against a small in-process NVMe/TCP controller built on the
//! `nvmf` codec, for the paths the kernel target does not exercise: a
//! small MDTS (splitting), several R2Ts per command answered in
//! MAXH2CDATA pieces, reads completed by the C2HData SUCCESS flag or by a
//! response capsule, fewer granted queues than asked, NVMe error statuses,
//! and commands that never complete (timeout -> reconnect -> give up).
//!
//! The mock checks the host's behaviour as it goes (in-capsule exactly up
//! to IOCCSZ, no command above MDTS, H2CData within MAXH2CDATA) and
//! records violations; every test asserts there were none.

#![allow(clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use blockdev::BlockDevice;
use bytes::{Bytes, BytesMut};
use nvmf::{
    nvme::{admin_opc, io_opc, sc, sgl},
    pdu::{encode_capsule_resp, DataPdu, Decoder, IcResp, R2t},
    Cqe, EncodeOpts, Pdu, Status,
};
use nvmf_host::{ConnectOptions, Controller};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const BS: usize = 4096;
const NSZE: u64 = 1024;
/// MDTS 1 with 4 KiB pages: 8 KiB per command.
const MDTS_BYTES: usize = 8192;
const IN_CAPSULE: usize = 4096;
const MAXH2CDATA: u32 = 4096;
/// The mock asks for at most this much per R2T.
const R2T_CHUNK: u32 = 6144;
/// Writes to these LBAs fail with Reservation Conflict.
const CONFLICT_LBA: u64 = 1000;
/// Reads of this LBA never complete.
const HANG_LBA: u64 = 1010;

#[derive(Default)]
struct Shared {
    store: Mutex<Vec<u8>>,
    violations: Mutex<Vec<String>>,
    connections: AtomicU32,
    shutdowns: AtomicU32,
    max_cmd_bytes: AtomicU32,
}

impl Shared {
    fn violation(&self, v: String) {
        self.violations.lock().unwrap().push(v);
    }
}

async fn start_mock() -> (SocketAddr, Arc<Shared>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared {
        store: Mutex::new(vec![0u8; NSZE as usize * BS]),
        ..Shared::default()
    });
    let s2 = shared.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            s2.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(sock, s2.clone()));
        }
    });
    (addr, shared)
}

struct PendingWrite {
    slba: u64,
    data: Vec<u8>,
    received: u32,
    next_r2t: u32,
}

async fn serve(mut sock: TcpStream, sh: Arc<Shared>) {
    let mut rbuf = BytesMut::new();
    let mut out = BytesMut::new();
    let dec = Decoder::default();
    let opts = EncodeOpts::default();
    let mut cc: u32 = 0;
    let mut qid: u16 = 0;
    let mut pending: std::collections::HashMap<u16, PendingWrite> = Default::default();
    loop {
        let pdu = loop {
            match dec.decode(&mut rbuf) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(e) => {
                    sh.violation(format!("bad pdu from host: {e}"));
                    return;
                }
            }
            match sock.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        out.clear();
        match pdu {
            Pdu::IcReq(_) => Pdu::IcResp(IcResp {
                pfv: 0,
                cpda: 0,
                dgst: 0,
                maxh2cdata: MAXH2CDATA,
            })
            .encode(&mut out, opts),
            Pdu::CapsuleCmd(c) => {
                let sqe = c.sqe;
                let mut cqe = Cqe::new(sqe.cid, Status::SUCCESS);
                let mut respond = true;
                // Admin and I/O opcodes overlap: key on the queue.
                let (admin, fctype) = (qid == 0, sqe.fctype());
                match (
                    sqe.opcode,
                    if sqe.opcode == admin_opc::FABRICS {
                        fctype
                    } else {
                        u8::from(admin)
                    },
                ) {
                    (admin_opc::FABRICS, 0x01) => {
                        if c.data.len() != 1024 || sqe.dptr.id != sgl::DATA_BLOCK_OFFSET {
                            sh.violation("connect data not in-capsule".into());
                        }
                        qid = (sqe.cdw10 >> 16) as u16;
                        cqe.dw0 = 7;
                    }
                    (admin_opc::FABRICS, 0x04) => {
                        let v: u64 = match sqe.cdw11 {
                            0x00 => nvmf::fabrics::cap(31, 1),
                            0x08 => 0x0001_0300,
                            0x14 => u64::from(cc),
                            0x1c => {
                                let mut v = u64::from(cc & 1);
                                if cc & (3 << 14) != 0 {
                                    v |= 2 << 2;
                                }
                                v
                            }
                            _ => 0,
                        };
                        cqe.dw0 = v as u32;
                        cqe.dw1 = (v >> 32) as u32;
                    }
                    (admin_opc::FABRICS, 0x00) => {
                        if sqe.cdw11 == 0x14 {
                            cc = sqe.cdw12;
                            if cc & (3 << 14) != 0 {
                                sh.shutdowns.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    (admin_opc::IDENTIFY, 1) if sqe.cdw10 == 1 => {
                        let mut id = vec![0u8; 4096];
                        id[24..28].copy_from_slice(b"mock");
                        id[77] = 1;
                        id[516..520].copy_from_slice(&1u32.to_le_bytes());
                        id[520..522].copy_from_slice(&((1u16 << 2) | (1 << 3)).to_le_bytes());
                        let ioccsz = ((IN_CAPSULE + 64) / 16) as u32;
                        id[1792..1796].copy_from_slice(&ioccsz.to_le_bytes());
                        nvmf::put_padded(&mut id[768..1024], "nqn.mock", 0);
                        send_read(&mut out, sqe.cid, &id, true);
                        respond = false;
                    }
                    (admin_opc::IDENTIFY, 1) => {
                        let mut id = vec![0u8; 4096];
                        if sqe.nsid == 1 {
                            id[0..8].copy_from_slice(&NSZE.to_le_bytes());
                            id[33] = 1;
                            id[128 + 2] = 12;
                        }
                        send_read(&mut out, sqe.cid, &id, false);
                        respond = true;
                    }
                    (admin_opc::SET_FEATURES, 1) => cqe.dw0 = 0, // one queue granted
                    (admin_opc::KEEP_ALIVE, 1) => {}
                    // I/O queue commands.
                    (io_opc::READ, 0) if sqe.nsid == 1 => {
                        let len = sqe.nlb() as usize * BS;
                        track_len(&sh, len, &sqe);
                        if sqe.slba() == HANG_LBA {
                            respond = false;
                        } else {
                            let off = sqe.slba() as usize * BS;
                            let data = sh.store.lock().unwrap()[off..off + len].to_vec();
                            let success_flag = sqe.cid % 2 == 0;
                            send_read(&mut out, sqe.cid, &data, success_flag);
                            respond = !success_flag;
                        }
                    }
                    (io_opc::WRITE, 0) if sqe.nsid == 1 => {
                        let len = sqe.nlb() as usize * BS;
                        track_len(&sh, len, &sqe);
                        if sqe.dptr.len as usize != len {
                            sh.violation(format!("write sgl {} != {}", sqe.dptr.len, len));
                        }
                        let inline = sqe.dptr.id == sgl::DATA_BLOCK_OFFSET;
                        if inline != (len <= IN_CAPSULE) {
                            sh.violation(format!("write of {len} bytes in-capsule={inline}"));
                        }
                        if sqe.slba() == CONFLICT_LBA {
                            cqe.status = Status::dnr(0, sc::RESERVATION_CONFLICT);
                        } else if inline {
                            let off = sqe.slba() as usize * BS;
                            sh.store.lock().unwrap()[off..off + len].copy_from_slice(&c.data);
                        } else {
                            let mut w = PendingWrite {
                                slba: sqe.slba(),
                                data: vec![0u8; len],
                                received: 0,
                                next_r2t: 0,
                            };
                            send_r2t(&mut out, sqe.cid, &mut w);
                            pending.insert(sqe.cid, w);
                            respond = false;
                        }
                    }
                    (io_opc::FLUSH, 0) => {}
                    (io_opc::WRITE_ZEROES, 0) => {
                        let off = sqe.slba() as usize * BS;
                        let len = sqe.nlb() as usize * BS;
                        sh.store.lock().unwrap()[off..off + len].fill(0);
                    }
                    (io_opc::DATASET_MANAGEMENT, 0) => {
                        for r in c.data.chunks(16) {
                            let nlb = u32::from_le_bytes(r[4..8].try_into().unwrap()) as usize;
                            let slba = u64::from_le_bytes(r[8..16].try_into().unwrap()) as usize;
                            sh.store.lock().unwrap()[slba * BS..(slba + nlb) * BS].fill(0);
                        }
                    }
                    _ => cqe.status = Status::dnr(0, sc::INVALID_OPCODE),
                }
                if respond {
                    encode_capsule_resp(&cqe, &mut out, opts);
                }
            }
            Pdu::H2CData(d) => {
                let Some(w) = pending.get_mut(&d.cccid) else {
                    sh.violation(format!("H2CData for unknown cid {}", d.cccid));
                    return;
                };
                if d.data.len() as u32 > MAXH2CDATA {
                    sh.violation(format!("H2CData of {} bytes", d.data.len()));
                }
                let o = d.datao as usize;
                w.data[o..o + d.data.len()].copy_from_slice(&d.data);
                w.received += d.data.len() as u32;
                if w.received as usize == w.data.len() {
                    let w = pending.remove(&d.cccid).unwrap();
                    let off = w.slba as usize * BS;
                    sh.store.lock().unwrap()[off..off + w.data.len()].copy_from_slice(&w.data);
                    encode_capsule_resp(&Cqe::new(d.cccid, Status::SUCCESS), &mut out, opts);
                } else if d.last && w.received == w.next_r2t {
                    send_r2t(&mut out, d.cccid, w);
                }
            }
            other => {
                sh.violation(format!("unexpected {:?}", other.pdu_type()));
                return;
            }
        }
        if sock.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn track_len(sh: &Shared, len: usize, sqe: &nvmf::Sqe) {
    sh.max_cmd_bytes.fetch_max(len as u32, Ordering::SeqCst);
    if len > MDTS_BYTES {
        sh.violation(format!(
            "command of {len} bytes above MDTS (opcode {})",
            sqe.opcode
        ));
    }
}

fn send_r2t(out: &mut BytesMut, cid: u16, w: &mut PendingWrite) {
    let off = w.next_r2t;
    let len = (w.data.len() as u32 - off).min(R2T_CHUNK);
    w.next_r2t = off + len;
    Pdu::R2T(R2t {
        cccid: cid,
        ttag: cid,
        r2to: off,
        r2tl: len,
    })
    .encode(out, EncodeOpts::default());
}

/// C2HData in 3000-byte pieces; the last one carries SUCCESS if asked.
fn send_read(out: &mut BytesMut, cid: u16, data: &[u8], success: bool) {
    let mut off = 0;
    while off < data.len() {
        let n = (data.len() - off).min(3000);
        let last = off + n == data.len();
        Pdu::C2HData(DataPdu {
            cccid: cid,
            ttag: 0,
            datao: off as u32,
            last,
            success: last && success,
            data: Bytes::copy_from_slice(&data[off..off + n]),
        })
        .encode(out, EncodeOpts::default());
        off += n;
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_io_paths_and_errors() {
    let (addr, sh) = start_mock().await;
    let mut opts = ConnectOptions::new(addr, "nqn.mock");
    opts.io_queues = 4;
    let ctrl = Controller::connect(opts).await.unwrap();
    let info = ctrl.info();
    assert_eq!(info.io_queues, 1, "the mock grants one queue");
    assert_eq!(info.mdts_bytes, Some(MDTS_BYTES as u64));
    assert_eq!(info.in_capsule_bytes as usize, IN_CAPSULE);
    assert_eq!(info.identity.model, "mock");
    assert_eq!(ctrl.cntlid(), Some(7));
    let ns = ctrl.namespace(1).await.unwrap();
    assert_eq!(ns.info().block_size as usize, BS);
    assert_eq!(ns.info().num_blocks, NSZE);
    assert_eq!(ns.max_blocks_per_command() as usize, MDTS_BYTES / BS);

    // Concurrent writes of every size class, then reads back.
    let sizes = [1usize, 2, 3, 5, 8];
    let mut tasks = Vec::new();
    for (i, &blocks) in sizes.iter().cycle().take(20).enumerate() {
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            let lba = (i * 16) as u64;
            let data = pattern(blocks * BS, i as u8);
            ns.write_at(lba * BS as u64, &data).await.unwrap();
            let mut back = vec![0u8; blocks * BS];
            ns.read_at(lba * BS as u64, &mut back).await.unwrap();
            assert!(back == data, "mismatch at lba {lba} ({blocks} blocks)");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sh.max_cmd_bytes.load(Ordering::SeqCst) as usize, MDTS_BYTES);
    let st = ctrl.stats();
    assert!(st.r2t.load(Ordering::Relaxed) > 0);
    assert!(st.h2c_pdus.load(Ordering::Relaxed) > st.r2t.load(Ordering::Relaxed));

    // Write Zeroes and unmap.
    ns.write_zeroes(16 * BS as u64, BS as u64).await.unwrap();
    ns.unmap(32 * BS as u64, 2 * BS as u64).await.unwrap();
    let mut back = vec![1u8; 3 * BS];
    ns.read_at(32 * BS as u64, &mut back).await.unwrap();
    assert!(back[..2 * BS].iter().all(|&b| b == 0));
    assert_eq!(back[2 * BS..], pattern(3 * BS, 2)[2 * BS..]);
    ns.flush().await.unwrap();

    // NVMe errors carry the status name and are not retried.
    let before = st.commands.load(Ordering::Relaxed);
    let err = ns
        .write_at(CONFLICT_LBA * BS as u64, &[0u8; BS])
        .await
        .unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(msg.contains("reservation conflict"), "{msg}");
    assert_eq!(st.commands.load(Ordering::Relaxed), before + 1);
    assert!(ctrl.namespace(2).await.is_err());

    ctrl.disconnect().await.unwrap();
    assert_eq!(sh.shutdowns.load(Ordering::SeqCst), 1, "CC.SHN sent");
    assert!(
        sh.violations.lock().unwrap().is_empty(),
        "{:?}",
        sh.violations.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_command_timeout_reconnects_then_gives_up() {
    let (addr, sh) = start_mock().await;
    let mut opts = ConnectOptions::new(addr, "nqn.mock");
    opts.io_timeout_ms = 300;
    opts.kato_ms = 0;
    let ctrl = Controller::connect(opts).await.unwrap();
    let ns = ctrl.namespace(1).await.unwrap();
    let conns = sh.connections.load(Ordering::SeqCst);
    let t = Instant::now();
    let mut buf = vec![0u8; BS];
    let err = ns
        .read_at(HANG_LBA * BS as u64, &mut buf)
        .await
        .unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(msg.contains("kept timing out (3 attempts)"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        sh.connections.load(Ordering::SeqCst) >= conns + 2,
        "reconnected after each timeout"
    );
    // The controller is usable again.
    tokio::time::timeout(Duration::from_secs(5), ns.read_at(0, &mut buf))
        .await
        .unwrap()
        .unwrap();
    ctrl.disconnect().await.unwrap();
    assert!(
        sh.violations.lock().unwrap().is_empty(),
        "{:?}",
        sh.violations.lock().unwrap()
    );
}

#[tokio::test]
async fn unreachable_target_fails_to_connect() {
    // Bind then drop: nothing listens on the port.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Controller::connect(ConnectOptions::new(addr, "nqn.none"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let err = Controller::connect_uri("nvmf://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nqn"), "{err}");
}
