//! One TCP connection = one NVMe queue. The connection task reads and
//! decodes PDUs, runs Fabrics and admin commands inline, runs I/O commands
//! concurrently (a `FuturesUnordered`, at most the queue depth), gathers
//! write data with R2T/H2CData and hands encoded responses to a writer
//! task through a bounded channel.
//!
//! Hot path (`on_pdu` for CapsuleCmd/H2CData, `finish`): no info logs, no
//! global locks; connection open/close is logged at debug/info.
//!
//! Teardown: the task ends on host close, protocol error (after a
//! C2HTermReq), target shutdown, or cancellation of its controller
//! (keep-alive timeout, subsystem removal, admin queue gone). Dropping the
//! task drops its in-flight futures; the admin queue's end tears the
//! controller (and with it every I/O queue) down.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures::{stream::FuturesUnordered, Future, StreamExt};
use nvmf::admin::{self as adm, cns, fid, lid};
use nvmf::fabrics::{self, cc, csts, fctype, reg, ConnectCmd, ConnectData, PropertyCmd};
use nvmf::nvme::{admin_opc, sc, sc_cmd, sct, sgl, Cqe, Sqe, Status};
use nvmf::pdu::{
    self, encode_capsule_resp, fes, CapsuleCmd, DataPdu, Decoder, EncodeOpts, Pdu, R2t, TermReq,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::{tcp::OwnedWriteHalf, TcpStream},
    sync::mpsc,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::io::{err, exec, put_c2h, Done, IoCtx};
use crate::subsystem::{ConnGuard, Controller, HostKey, Subsystem};
use crate::{locks, Inner};

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// Host closed, or we decided to close quietly.
    Closed,
    /// Protocol error: send a C2HTermReq, then close.
    Term {
        fes: u16,
        fei: u32,
        hdr: Bytes,
    },
    Cancelled,
    KeepAlive,
    Io(std::io::Error),
}

type IoFut = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Write data being gathered with R2T/H2CData (TTAG = CID).
struct Pending {
    sqe: Sqe,
    buf: BytesMut,
    expected: u32,
    /// End offset of the outstanding R2T.
    r2t_end: u32,
}

struct Queue {
    ctrl: Arc<Controller>,
    qid: u16,
    sqsize: u16,
    sq_head: u16,
    flow_disabled: bool,
    io: Option<Arc<IoCtx>>,
    _guard: Option<ConnGuard>,
}

struct Conn {
    inner: Arc<Inner>,
    tx: mpsc::Sender<BytesMut>,
    peer: SocketAddr,
    local: SocketAddr,
    opts: EncodeOpts,
    decoder: Decoder,
    ic_done: bool,
    q: Option<Queue>,
    pending: HashMap<u16, Pending>,
    inflight: FuturesUnordered<IoFut>,
    parked_aers: Vec<u16>,
    last_admin: Instant,
}

const GRACE_MIN_MS: u64 = 2000;

pub(crate) async fn run(
    inner: Arc<Inner>,
    sock: TcpStream,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    let _ = sock.set_nodelay(true);
    let local = sock.local_addr().unwrap_or(inner.local);
    let (mut rd, wr) = sock.into_split();
    let depth = usize::from(inner.cfg.max_queue_depth);
    let (tx, rx) = mpsc::channel::<BytesMut>(2 * depth + 8);
    let writer = tokio::spawn(writer(wr, rx));
    let cfg = &inner.cfg;
    let max_data = cfg
        .in_capsule_data_bytes
        .max(8192)
        .max(cfg.max_h2c_data_bytes);
    let mut c = Conn {
        decoder: Decoder {
            max_pdu_bytes: max_data + 512,
            expect_hdgst: Some(false),
            expect_ddgst: None,
        },
        inner: inner.clone(),
        tx,
        peer,
        local,
        opts: EncodeOpts::default(),
        ic_done: false,
        q: None,
        pending: HashMap::new(),
        inflight: FuturesUnordered::new(),
        parked_aers: Vec::new(),
        last_admin: Instant::now(),
    };
    tracing::debug!(%peer, "nvmf connection opened");
    let end = c.serve(&mut rd, &cancel).await;
    match &end {
        End::Term { fes, fei, hdr } => {
            inner
                .counters
                .protocol_errors
                .fetch_add(1, Ordering::Relaxed);
            inner
                .counters
                .term_reqs_sent
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, fes, fei, "nvmf connection terminated: protocol error");
            let mut b = BytesMut::new();
            Pdu::C2HTermReq(TermReq {
                fes: *fes,
                fei: *fei,
                data: hdr.clone(),
            })
            .encode(&mut b, EncodeOpts::default());
            let _ = c.tx.try_send(b);
        }
        End::KeepAlive => {
            inner
                .counters
                .keep_alive_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "nvmf keep-alive timeout: controller torn down");
        }
        End::Io(e) => tracing::debug!(%peer, error = %e, "nvmf connection i/o error"),
        End::Closed | End::Cancelled => {}
    }
    // Parked AERs complete with "abort requested" when the controller goes
    // but the socket is still usable.
    if matches!(end, End::Cancelled | End::KeepAlive) {
        for cid in std::mem::take(&mut c.parked_aers) {
            let _ = c.complete_now(Cqe::new(cid, err(sct::GENERIC, sc::ABORT_REQUESTED)));
        }
    }
    c.teardown();
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    inner
        .counters
        .connections_closed
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, reason = ?end, "nvmf connection closed");
}

async fn writer(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<BytesMut>) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(b) = rx.recv().await {
        w.write_all(&b).await?;
        while let Ok(b) = rx.try_recv() {
            w.write_all(&b).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}

fn term(fes: u16, fei: u32) -> End {
    End::Term {
        fes,
        fei,
        hdr: Bytes::new(),
    }
}

impl Conn {
    fn stop_token(&self) -> Option<CancellationToken> {
        self.q.as_ref().map(|q| q.ctrl.cancel.clone())
    }

    fn ka_deadline(&self) -> Option<Instant> {
        let q = self.q.as_ref()?;
        if q.qid != 0 {
            return None;
        }
        let kato = u64::from(q.ctrl.kato_ms.load(Ordering::Relaxed));
        if kato == 0 {
            return None;
        }
        Some(self.last_admin + Duration::from_millis(kato + kato.max(GRACE_MIN_MS)))
    }

    async fn serve(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        cancel: &CancellationToken,
    ) -> End {
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        loop {
            loop {
                let hdr: Bytes = Bytes::copy_from_slice(
                    &rbuf[..rbuf.len().min(usize::from(pdu::CAPSULE_CMD_HLEN))],
                );
                match self.decoder.decode(&mut rbuf) {
                    Ok(Some(p)) => {
                        if let Err(e) = self.on_pdu(p).await {
                            return e;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return match e.fes() {
                            Some(f) => End::Term {
                                fes: f,
                                fei: e.fei(),
                                hdr,
                            },
                            None => End::Closed,
                        }
                    }
                }
            }
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(64 * 1024);
            }
            let stop = self.stop_token();
            let ka = self.ka_deadline();
            tokio::select! {
                _ = cancel.cancelled() => return End::Cancelled,
                _ = async { match &stop { Some(t) => t.cancelled().await, None => std::future::pending().await } } => return End::Cancelled,
                _ = async { match ka { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    if let Some(q) = &self.q { q.ctrl.cancel.cancel(); }
                    return End::KeepAlive;
                }
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => {
                    if let Err(e) = self.finish(done).await { return e; }
                }
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) => return End::Closed,
                    Ok(_) => {}
                    Err(e) => return End::Io(e),
                }
            }
        }
    }

    async fn send(&mut self, b: BytesMut) -> Result<(), End> {
        self.tx.send(b).await.map_err(|_| End::Closed)
    }

    fn fill_cqe(&self, cqe: &mut Cqe) {
        if let Some(q) = &self.q {
            cqe.sqid = q.qid;
            cqe.sqhd = if q.flow_disabled { 0xffff } else { q.sq_head };
        }
    }

    fn complete_now(&self, mut cqe: Cqe) -> Result<(), End> {
        self.fill_cqe(&mut cqe);
        let mut b = BytesMut::with_capacity(32);
        encode_capsule_resp(&cqe, &mut b, self.opts);
        self.tx.try_send(b).map_err(|_| End::Closed)
    }

    async fn finish(&mut self, mut d: Done) -> Result<(), End> {
        self.fill_cqe(&mut d.cqe);
        encode_capsule_resp(&d.cqe, &mut d.buf, self.opts);
        self.send(d.buf).await
    }

    async fn complete(&mut self, cid: u16, status: Status) -> Result<(), End> {
        if !status.is_success() {
            self.inner
                .counters
                .error_completions
                .fetch_add(1, Ordering::Relaxed);
        }
        self.finish(Done {
            buf: BytesMut::new(),
            cqe: Cqe::new(cid, status),
        })
        .await
    }

    async fn on_pdu(&mut self, p: Pdu) -> Result<(), End> {
        match p {
            Pdu::IcReq(r) => {
                if self.ic_done {
                    return Err(term(fes::PDU_SEQUENCE_ERROR, 0));
                }
                if r.pfv != pdu::PFV_1_0 {
                    return Err(term(fes::INVALID_HEADER_FIELD, 8));
                }
                if r.hpda > 31 {
                    return Err(term(fes::INVALID_HEADER_FIELD, 10));
                }
                let hd = r.dgst & pdu::dgst::HEADER != 0;
                let dd = r.dgst & pdu::dgst::DATA != 0;
                self.opts = EncodeOpts {
                    hdgst: hd,
                    ddgst: dd,
                    pda: r.hpda,
                };
                self.decoder.expect_hdgst = Some(hd);
                self.decoder.expect_ddgst = Some(dd);
                self.ic_done = true;
                let mut b = BytesMut::with_capacity(128);
                Pdu::IcResp(pdu::IcResp {
                    pfv: pdu::PFV_1_0,
                    cpda: 0,
                    dgst: r.dgst & (pdu::dgst::HEADER | pdu::dgst::DATA),
                    maxh2cdata: self.inner.cfg.max_h2c_data_bytes,
                })
                .encode(&mut b, EncodeOpts::default());
                self.send(b).await
            }
            _ if !self.ic_done => Err(term(fes::PDU_SEQUENCE_ERROR, 0)),
            Pdu::CapsuleCmd(c) => self.on_capsule(c).await,
            Pdu::H2CData(d) => self.on_h2c(d).await,
            Pdu::H2CTermReq(t) => {
                tracing::info!(peer = %self.peer, fes = t.fes, fei = t.fei, "nvmf host terminated the connection");
                Err(End::Closed)
            }
            // Controller-to-host PDUs coming from the host.
            _ => Err(term(fes::INVALID_HEADER_FIELD, 0)),
        }
    }

    fn max_icd(&self) -> usize {
        let io = self.q.as_ref().is_some_and(|q| q.qid != 0);
        if io {
            self.inner.cfg.in_capsule_data_bytes as usize
        } else {
            (self.inner.cfg.in_capsule_data_bytes as usize).max(8192)
        }
    }

    async fn on_capsule(&mut self, c: CapsuleCmd) -> Result<(), End> {
        let sqe = c.sqe;
        self.inner.counters.commands.fetch_add(1, Ordering::Relaxed);
        if let Some(q) = &mut self.q {
            q.sq_head = if q.sq_head >= q.sqsize {
                0
            } else {
                q.sq_head + 1
            };
            if q.qid == 0 {
                self.last_admin = Instant::now();
            }
        }
        if c.data.len() > self.max_icd() {
            return Err(term(fes::DATA_LIMIT_EXCEEDED, 0));
        }
        let outstanding = self.inflight.len() + self.pending.len();
        let depth = self.q.as_ref().map_or(32, |q| usize::from(q.sqsize) + 1);
        if outstanding > depth || self.pending.contains_key(&sqe.cid) {
            return self
                .complete(sqe.cid, err(sct::GENERIC, sc::CID_CONFLICT))
                .await;
        }
        if sqe.data_direction() == 1 && sqe.dptr.len > 0 {
            match sqe.dptr.id {
                sgl::DATA_BLOCK_OFFSET => {
                    let off = sqe.dptr.addr;
                    let len = u64::from(sqe.dptr.len);
                    if off > c.data.len() as u64 {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::SGL_OFFSET_INVALID))
                            .await;
                    }
                    if off + len > c.data.len() as u64 {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID))
                            .await;
                    }
                    let data = c.data.slice(off as usize..(off + len) as usize);
                    self.dispatch(sqe, data).await
                }
                sgl::TRANSPORT_DATA_BLOCK => {
                    if sqe.dptr.len > self.inner.cfg.mdts_bytes {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID))
                            .await;
                    }
                    let expected = sqe.dptr.len;
                    let first = expected.min(self.inner.cfg.max_h2c_data_bytes);
                    self.pending.insert(
                        sqe.cid,
                        Pending {
                            sqe,
                            // Grown per R2T window as data arrives, so a
                            // command that never sends its data costs nothing.
                            buf: BytesMut::new(),
                            expected,
                            r2t_end: first,
                        },
                    );
                    self.send_r2t(sqe.cid, 0, first).await
                }
                _ => {
                    self.complete(sqe.cid, err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID))
                        .await
                }
            }
        } else {
            if !c.data.is_empty() {
                return self
                    .complete(sqe.cid, err(sct::GENERIC, sc::INVALID_FIELD))
                    .await;
            }
            self.dispatch(sqe, Bytes::new()).await
        }
    }

    async fn send_r2t(&mut self, cid: u16, off: u32, len: u32) -> Result<(), End> {
        self.inner.counters.r2ts.fetch_add(1, Ordering::Relaxed);
        let mut b = BytesMut::with_capacity(32);
        Pdu::R2T(R2t {
            cccid: cid,
            ttag: cid,
            r2to: off,
            r2tl: len - off,
        })
        .encode(&mut b, self.opts);
        self.send(b).await
    }

    async fn on_h2c(&mut self, d: DataPdu) -> Result<(), End> {
        let Some(p) = self.pending.get_mut(&d.ttag) else {
            return Err(term(fes::INVALID_HEADER_FIELD, 10));
        };
        if d.cccid != p.sqe.cid {
            return Err(term(fes::INVALID_HEADER_FIELD, 8));
        }
        let got = p.buf.len() as u64;
        let end = u64::from(d.datao) + d.data.len() as u64;
        if u64::from(d.datao) != got || end > u64::from(p.r2t_end) {
            return Err(term(fes::DATA_OUT_OF_RANGE, 12));
        }
        if p.buf.capacity() < p.r2t_end as usize {
            p.buf.reserve(p.r2t_end as usize - p.buf.len());
        }
        p.buf.extend_from_slice(&d.data);
        if end < u64::from(p.r2t_end) {
            return Ok(());
        }
        if p.r2t_end < p.expected {
            let cid = p.sqe.cid;
            let off = p.r2t_end;
            p.r2t_end = p
                .expected
                .min(off.saturating_add(self.inner.cfg.max_h2c_data_bytes));
            let next_end = p.r2t_end;
            return self.send_r2t(cid, off, next_end).await;
        }
        let Some(p) = self.pending.remove(&d.ttag) else {
            return Ok(());
        };
        self.dispatch(p.sqe, p.buf.freeze()).await
    }

    async fn dispatch(&mut self, sqe: Sqe, data: Bytes) -> Result<(), End> {
        if sqe.opcode == admin_opc::FABRICS {
            return self.fabrics(sqe, data).await;
        }
        let Some(q) = &self.q else {
            return self
                .complete(sqe.cid, err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR))
                .await;
        };
        if q.qid == 0 {
            return self.admin(sqe, data).await;
        }
        let Some(ctx) = q.io.clone() else {
            return self
                .complete(sqe.cid, err(sct::GENERIC, sc::INVALID_OPCODE))
                .await;
        };
        self.inflight.push(Box::pin(exec(ctx, sqe, data)));
        Ok(())
    }

    // ---- Fabrics -------------------------------------------------------

    async fn fabrics(&mut self, sqe: Sqe, data: Bytes) -> Result<(), End> {
        match sqe.fctype() {
            fctype::CONNECT => {
                let (status, dw0) = if self.q.is_some() {
                    (err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR), 0)
                } else {
                    match self.connect(&sqe, &data) {
                        Ok(cntlid) => (Status::SUCCESS, u32::from(cntlid)),
                        Err((s, dw0)) => (s, dw0),
                    }
                };
                if !status.is_success() {
                    self.inner
                        .counters
                        .error_completions
                        .fetch_add(1, Ordering::Relaxed);
                }
                let mut cqe = Cqe::new(sqe.cid, status);
                cqe.dw0 = dw0;
                self.finish(Done {
                    buf: BytesMut::new(),
                    cqe,
                })
                .await
            }
            fctype::PROPERTY_GET | fctype::PROPERTY_SET => {
                let Some(q) = &self.q else {
                    return self
                        .complete(sqe.cid, err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR))
                        .await;
                };
                if q.qid != 0 {
                    return self
                        .complete(sqe.cid, err(sct::GENERIC, sc::INVALID_FIELD))
                        .await;
                }
                let p = PropertyCmd::from_sqe(&sqe);
                let ctrl = q.ctrl.clone();
                let r = if sqe.fctype() == fctype::PROPERTY_GET {
                    self.property_get(&ctrl, &p)
                } else {
                    property_set(&ctrl, &p).map(|()| 0)
                };
                match r {
                    Ok(v) => {
                        let mut cqe = Cqe::new(sqe.cid, Status::SUCCESS);
                        cqe.dw0 = v as u32;
                        cqe.dw1 = (v >> 32) as u32;
                        self.finish(Done {
                            buf: BytesMut::new(),
                            cqe,
                        })
                        .await
                    }
                    Err(s) => self.complete(sqe.cid, s).await,
                }
            }
            fctype::DISCONNECT => {
                self.complete(sqe.cid, Status::SUCCESS).await?;
                Err(End::Closed)
            }
            _ => {
                self.complete(sqe.cid, err(sct::GENERIC, sc::INVALID_OPCODE))
                    .await
            }
        }
    }

    fn property_get(&self, ctrl: &Controller, p: &PropertyCmd) -> Result<u64, Status> {
        let cfg = &self.inner.cfg;
        let v = match p.offset {
            reg::CAP => fabrics::cap(cfg.max_queue_depth - 1, 30),
            reg::VS => u64::from(fabrics::VS_1_3),
            reg::CC => u64::from(ctrl.cc.load(Ordering::Acquire)),
            reg::CSTS => u64::from(ctrl.csts.load(Ordering::Acquire)),
            reg::NSSR => 0,
            _ => return Err(err(sct::GENERIC, sc::INVALID_FIELD)),
        };
        Ok(v)
    }

    fn connect(&mut self, sqe: &Sqe, data: &Bytes) -> Result<u16, (Status, u32)> {
        let ip = |s: u8, in_data: bool, off: u16| {
            (
                err(sct::COMMAND_SPECIFIC, s),
                fabrics::invalid_params_dw0(in_data, off),
            )
        };
        let inval = sc_cmd::CONNECT_INVALID_PARAMETERS;
        let cmd = ConnectCmd::from_sqe(sqe);
        if cmd.recfmt != 0 {
            return Err((
                err(sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_INCOMPATIBLE_FORMAT),
                0,
            ));
        }
        let cd = ConnectData::from_bytes(data).map_err(|e| ip(inval, true, e.offset()))?;
        let cfg = &self.inner.cfg;
        if cmd.sqsize == 0 || cmd.sqsize > cfg.max_queue_depth - 1 {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_SQSIZE_OFFSET));
        }
        let host = HostKey {
            hostid: cd.hostid,
            hostnqn: cd.hostnqn.clone(),
        };
        let discovery = cd.subnqn == nvmf::DISCOVERY_NQN;
        let subsys = if discovery {
            None
        } else {
            let s = self
                .inner
                .subsystem(&cd.subnqn)
                .ok_or_else(|| ip(inval, true, fabrics::CONNECT_DATA_SUBNQN_OFFSET))?;
            if !s.allows(&cd.hostnqn) {
                return Err(ip(
                    sc_cmd::CONNECT_INVALID_HOST,
                    true,
                    fabrics::CONNECT_DATA_HOSTNQN_OFFSET,
                ));
            }
            Some(s)
        };
        let flow_disabled = cmd.cattr & fabrics::CATTR_DISABLE_SQ_FLOW != 0;
        if cmd.qid == 0 {
            if cd.cntlid != fabrics::CNTLID_DYNAMIC && cd.cntlid != 0xfffe {
                return Err(ip(inval, true, fabrics::CONNECT_DATA_CNTLID_OFFSET));
            }
            let cntlid = self.inner.alloc_cntlid(subsys.as_deref()).ok_or((
                err(sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_CONTROLLER_BUSY),
                0,
            ))?;
            let kato = if cmd.kato_ms == 0 {
                0
            } else {
                cmd.kato_ms.max(cfg.keep_alive_min_ms)
            };
            let parent = subsys
                .as_ref()
                .map(|s| s.cancel.child_token())
                .unwrap_or_default();
            let ctrl = Arc::new(Controller {
                cntlid,
                host: host.clone(),
                subsys: subsys.clone(),
                kato_ms: AtomicU32::new(kato),
                cc: AtomicU32::new(0),
                csts: AtomicU32::new(0),
                aec: AtomicU32::new(0),
                io_queues: Mutex::new(Default::default()),
                nr_io_queues: AtomicU32::new(u32::from(cfg.max_io_queues)),
                cancel: parent,
            });
            let guard = subsys.as_ref().map(|s| {
                locks::lock("controllers", &s.ctrls).insert(cntlid, ctrl.clone());
                s.attach()
            });
            self.inner
                .counters
                .controllers_created
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %self.peer, subnqn = %cd.subnqn, hostnqn = %cd.hostnqn, cntlid, "nvmf controller created");
            self.last_admin = Instant::now();
            self.q = Some(Queue {
                ctrl,
                qid: 0,
                sqsize: cmd.sqsize,
                sq_head: 1,
                flow_disabled,
                io: None,
                _guard: guard,
            });
            return Ok(cntlid);
        }
        let Some(s) = subsys else {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_QID_OFFSET));
        };
        if cmd.qid > cfg.max_io_queues {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_QID_OFFSET));
        }
        let found = locks::lock("controllers", &s.ctrls)
            .get(&cd.cntlid)
            .cloned();
        let ctrl = found.ok_or_else(|| ip(inval, true, fabrics::CONNECT_DATA_CNTLID_OFFSET))?;
        if ctrl.host.hostnqn != cd.hostnqn {
            return Err(ip(inval, true, fabrics::CONNECT_DATA_HOSTNQN_OFFSET));
        }
        if ctrl.cancel.is_cancelled() {
            return Err(ip(inval, true, fabrics::CONNECT_DATA_CNTLID_OFFSET));
        }
        let fresh = locks::lock("i/o queues", &ctrl.io_queues).insert(cmd.qid);
        if !fresh {
            return Err(ip(inval, false, fabrics::CONNECT_SQE_QID_OFFSET));
        }
        let io = Arc::new(IoCtx {
            inner: self.inner.clone(),
            subsys: s.clone(),
            host: ctrl.host.clone(),
            cntlid: ctrl.cntlid,
            opts: self.opts,
        });
        tracing::debug!(peer = %self.peer, cntlid = ctrl.cntlid, qid = cmd.qid, "nvmf i/o queue connected");
        let cntlid = ctrl.cntlid;
        let guard = s.attach();
        self.q = Some(Queue {
            ctrl,
            qid: cmd.qid,
            sqsize: cmd.sqsize,
            sq_head: 1,
            flow_disabled,
            io: Some(io),
            _guard: Some(guard),
        });
        Ok(cntlid)
    }

    fn teardown(&mut self) {
        let Some(q) = self.q.take() else { return };
        if q.qid != 0 {
            locks::lock("i/o queues", &q.ctrl.io_queues).remove(&q.qid);
            return;
        }
        q.ctrl.cancel.cancel();
        if let Some(s) = &q.ctrl.subsys {
            locks::lock("controllers", &s.ctrls).remove(&q.ctrl.cntlid);
        }
        self.inner
            .free_cntlid(q.ctrl.subsys.as_deref(), q.ctrl.cntlid);
        tracing::info!(peer = %self.peer, cntlid = q.ctrl.cntlid, "nvmf controller destroyed");
    }

    // ---- Admin ---------------------------------------------------------

    async fn admin(&mut self, sqe: Sqe, data: Bytes) -> Result<(), End> {
        let Some(q) = &self.q else {
            return self
                .complete(sqe.cid, err(sct::GENERIC, sc::COMMAND_SEQUENCE_ERROR))
                .await;
        };
        let ctrl = q.ctrl.clone();
        let _ = data;
        // Every length the host supplies is checked before a page is built
        // or a buffer allocated: the transfer (SGL length) against MDTS and
        // the command's own length field against the transfer.
        if sqe.data_direction() == 2 {
            if let Err(s) = self.check_c2h_transfer(&sqe) {
                return self.complete(sqe.cid, s).await;
            }
        }
        let r: Result<(u32, Option<Vec<u8>>), Status> = match sqe.opcode {
            admin_opc::IDENTIFY => self.identify(&ctrl, &sqe).map(|d| (0, Some(d))),
            admin_opc::GET_LOG_PAGE => self.get_log(&ctrl, &sqe).map(|d| (0, Some(d))),
            admin_opc::SET_FEATURES => {
                set_features(&ctrl, &sqe, &self.inner.cfg).map(|v| (v, None))
            }
            admin_opc::GET_FEATURES => get_features(&ctrl, &sqe).map(|v| (v, None)),
            admin_opc::KEEP_ALIVE => Ok((0, None)),
            admin_opc::ABORT => Ok((1, None)),
            admin_opc::ASYNC_EVENT_REQUEST => {
                if self.parked_aers.len() >= 4 {
                    Err(err(sct::COMMAND_SPECIFIC, sc_cmd::AER_LIMIT_EXCEEDED))
                } else {
                    self.parked_aers.push(sqe.cid);
                    return Ok(());
                }
            }
            _ => Err(err(sct::GENERIC, sc::INVALID_OPCODE)),
        };
        match r {
            Ok((dw0, page)) => {
                let mut buf = BytesMut::new();
                if let Some(page) = page {
                    if sqe.dptr.id != sgl::TRANSPORT_DATA_BLOCK {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID))
                            .await;
                    }
                    if sqe.dptr.len > self.inner.cfg.mdts_bytes {
                        return self
                            .complete(sqe.cid, err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID))
                            .await;
                    }
                    put_c2h(&mut buf, sqe.cid, &page, sqe.dptr.len, self.opts);
                }
                let mut cqe = Cqe::new(sqe.cid, Status::SUCCESS);
                cqe.dw0 = dw0;
                self.finish(Done { buf, cqe }).await
            }
            Err(s) => self.complete(sqe.cid, s).await,
        }
    }

    /// Checks the data a controller-to-host admin command asks for: a
    /// transport SGL of at most MDTS, and for Get Log Page a NUMD that
    /// fits in it (a log page is never built larger than the transfer).
    fn check_c2h_transfer(&self, sqe: &Sqe) -> Result<(), Status> {
        if sqe.dptr.len == 0 {
            return Ok(());
        }
        if sqe.dptr.id != sgl::TRANSPORT_DATA_BLOCK {
            return Err(err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID));
        }
        if sqe.dptr.len > self.inner.cfg.mdts_bytes {
            return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
        }
        if sqe.opcode == admin_opc::GET_LOG_PAGE {
            let g = adm::GetLogPageCmd::from_sqe(sqe);
            if g.len_bytes > u64::from(sqe.dptr.len) {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
        }
        Ok(())
    }

    fn identify(&self, ctrl: &Controller, sqe: &Sqe) -> Result<Vec<u8>, Status> {
        let id = adm::IdentifyCmd::from_sqe(sqe);
        let cfg = &self.inner.cfg;
        let subsys = ctrl.subsys.as_ref();
        match id.cns {
            cns::CONTROLLER => {
                let mdts = (cfg.mdts_bytes / 4096).trailing_zeros() as u8;
                let mut c = adm::IdentifyController {
                    serial: cfg.serial.clone(),
                    model: cfg.model.clone(),
                    firmware: cfg.firmware.clone(),
                    mdts,
                    cntlid: ctrl.cntlid,
                    ver: fabrics::VS_1_3,
                    ctratt: 1,
                    cntrltype: 2,
                    aerl: 3,
                    lpa: 1 << 2,
                    kas: 10,
                    maxcmd: cfg.max_queue_depth,
                    sgls: adm::sgls::SUPPORTED | adm::sgls::OFFSET,
                    subnqn: nvmf::DISCOVERY_NQN.into(),
                    ioccsz: (64 + cfg.in_capsule_data_bytes) / 16,
                    iorcsz: 1,
                    msdbd: 1,
                    ..Default::default()
                };
                if let Some(s) = subsys {
                    c.cntrltype = 1;
                    c.subnqn = s.nqn.clone();
                    c.oaes = (1 << 8) | (1 << 11);
                    c.cmic = (1 << 1) | (1 << 3);
                    c.anatt = 10;
                    c.anacap = 1;
                    c.anagrpmax = 1;
                    c.nanagrpid = 1;
                    c.nn = 1;
                    c.mnan = 1;
                    c.oncs = adm::oncs::DSM | adm::oncs::WRITE_ZEROES | adm::oncs::RESERVATIONS;
                    c.vwc = true;
                }
                Ok(c.to_bytes())
            }
            cns::NAMESPACE => {
                let s = subsys.ok_or(err(sct::GENERIC, sc::INVALID_NAMESPACE))?;
                if sqe.nsid == 0xffff_ffff {
                    return Ok(vec![0u8; adm::IDENTIFY_BYTES]);
                }
                if sqe.nsid != 1 {
                    return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
                }
                let info = s.dev.info();
                Ok(adm::IdentifyNamespace {
                    nsze: info.num_blocks,
                    ncap: info.num_blocks,
                    nuse: info.num_blocks,
                    shared: true,
                    rescap: 0x7e,
                    dlfeat: 0x09,
                    anagrpid: 1,
                    nguid: *s.uuid.as_bytes(),
                    eui64: [0; 8],
                    lbads: info.block_size.trailing_zeros() as u8,
                }
                .to_bytes())
            }
            cns::ACTIVE_NS_LIST => {
                let active: &[u32] = if subsys.is_some() { &[1] } else { &[] };
                if sqe.nsid >= 0xffff_fffe {
                    return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
                }
                Ok(adm::active_ns_list(active, sqe.nsid))
            }
            cns::NS_DESCRIPTORS => {
                let s = subsys.ok_or(err(sct::GENERIC, sc::INVALID_NAMESPACE))?;
                if sqe.nsid != 1 {
                    return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
                }
                Ok(adm::ns_descriptor_list(
                    s.uuid.as_bytes(),
                    s.uuid.as_bytes(),
                ))
            }
            cns::CS_CONTROLLER if id.csi == 0 => Ok(vec![0u8; adm::IDENTIFY_BYTES]),
            _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
        }
    }

    fn get_log(&self, ctrl: &Controller, sqe: &Sqe) -> Result<Vec<u8>, Status> {
        let g = adm::GetLogPageCmd::from_sqe(sqe);
        let page = match (g.lid, ctrl.subsys.as_ref()) {
            (lid::ERROR, _) => vec![0u8; adm::ERROR_LOG_ENTRY_BYTES],
            (lid::SMART, _) => {
                let c = &self.inner.counters;
                adm::SmartLog {
                    temperature_k: 300,
                    available_spare: 100,
                    spare_threshold: 10,
                    data_units_read: c.read_bytes.load(Ordering::Relaxed) / 512_000,
                    data_units_written: c.write_bytes.load(Ordering::Relaxed) / 512_000,
                    host_reads: c.reads.load(Ordering::Relaxed),
                    host_writes: c.writes.load(Ordering::Relaxed),
                    ..Default::default()
                }
                .to_bytes()
            }
            (lid::CHANGED_NS_LIST, Some(_)) => vec![0u8; 4096],
            (lid::ANA, Some(_)) => adm::ana_log(
                1,
                &[adm::AnaGroup {
                    grpid: 1,
                    state: adm::ana_state::OPTIMIZED,
                    chgcnt: 1,
                    nsids: vec![1],
                }],
                g.lsp & 1 != 0,
            ),
            (lid::DISCOVERY, None) => self.discovery_log(&ctrl.host.hostnqn),
            _ => return Err(err(sct::COMMAND_SPECIFIC, sc_cmd::INVALID_LOG_PAGE)),
        };
        // `len_bytes` was checked against the transfer (<= MDTS) before
        // the page was built; the window is a slice, zero padding is added
        // by the C2HData encoder up to the transfer length.
        g.window(&page)
            .map(<[u8]>::to_vec)
            .ok_or(err(sct::GENERIC, sc::INVALID_FIELD))
    }

    fn discovery_log(&self, hostnqn: &str) -> Vec<u8> {
        let subs: Vec<Arc<Subsystem>> = locks::read("subsystems", &self.inner.subsystems)
            .values()
            .filter(|s| s.allows(hostnqn))
            .cloned()
            .collect();
        let mut entries: Vec<adm::DiscoveryEntry> = subs
            .iter()
            .map(|s| adm::DiscoveryEntry {
                trtype: adm::disc::TRTYPE_TCP,
                adrfam: if self.local.is_ipv4() {
                    adm::disc::ADRFAM_IPV4
                } else {
                    adm::disc::ADRFAM_IPV6
                },
                subtype: adm::disc::SUBTYPE_NVME,
                treq: 0,
                portid: 1,
                cntlid: 0xffff,
                asqsz: 32,
                trsvcid: self.local.port().to_string(),
                subnqn: s.nqn.clone(),
                traddr: self.local.ip().to_string(),
            })
            .collect();
        entries.sort_by(|a, b| a.subnqn.cmp(&b.subnqn));
        adm::discovery_log(self.inner.genctr.load(Ordering::Relaxed), &entries)
    }
}

fn property_set(ctrl: &Controller, p: &PropertyCmd) -> Result<(), Status> {
    match p.offset {
        reg::CC => {
            let v = p.value as u32;
            ctrl.cc.store(v, Ordering::Release);
            let mut st = ctrl.csts.load(Ordering::Acquire);
            if v & cc::EN != 0 {
                st |= csts::RDY;
            } else {
                st &= !csts::RDY;
            }
            if v & cc::SHN_MASK != 0 {
                st = (st & !csts::SHST_MASK) | csts::SHST_COMPLETE;
            } else {
                st &= !csts::SHST_MASK;
            }
            ctrl.csts.store(st, Ordering::Release);
            Ok(())
        }
        reg::NSSR => Ok(()),
        _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
    }
}

fn set_features(ctrl: &Controller, sqe: &Sqe, cfg: &crate::TargetConfig) -> Result<u32, Status> {
    if sqe.cdw10 & (1 << 31) != 0 {
        return Err(err(sct::COMMAND_SPECIFIC, sc_cmd::FEATURE_NOT_SAVEABLE));
    }
    let f = (sqe.cdw10 & 0xff) as u8;
    match f {
        fid::NUMBER_OF_QUEUES => {
            let nsqr = sqe.cdw11 & 0xffff;
            let ncqr = sqe.cdw11 >> 16;
            if nsqr == 0xffff || ncqr == 0xffff {
                return Err(err(sct::GENERIC, sc::INVALID_FIELD));
            }
            let max = u32::from(cfg.max_io_queues) - 1;
            let n = nsqr.min(ncqr).min(max);
            ctrl.nr_io_queues.store(n + 1, Ordering::Relaxed);
            Ok(n | (n << 16))
        }
        fid::KEEP_ALIVE_TIMER => {
            let v = if sqe.cdw11 == 0 {
                0
            } else {
                sqe.cdw11.max(cfg.keep_alive_min_ms)
            };
            ctrl.kato_ms.store(v, Ordering::Relaxed);
            Ok(0)
        }
        fid::ASYNC_EVENT_CONFIG => {
            ctrl.aec.store(sqe.cdw11, Ordering::Relaxed);
            Ok(0)
        }
        fid::ARBITRATION
        | fid::POWER_MANAGEMENT
        | fid::TEMPERATURE_THRESHOLD
        | fid::ERROR_RECOVERY
        | fid::VOLATILE_WRITE_CACHE
        | fid::INTERRUPT_COALESCING
        | fid::WRITE_ATOMICITY => Ok(0),
        _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
    }
}

fn get_features(ctrl: &Controller, sqe: &Sqe) -> Result<u32, Status> {
    let f = (sqe.cdw10 & 0xff) as u8;
    match f {
        fid::NUMBER_OF_QUEUES => {
            let n = ctrl.nr_io_queues.load(Ordering::Relaxed).saturating_sub(1);
            Ok(n | (n << 16))
        }
        fid::KEEP_ALIVE_TIMER => Ok(ctrl.kato_ms.load(Ordering::Relaxed)),
        fid::ASYNC_EVENT_CONFIG => Ok(ctrl.aec.load(Ordering::Relaxed)),
        fid::VOLATILE_WRITE_CACHE => Ok(u32::from(ctrl.subsys.is_some())),
        fid::ARBITRATION
        | fid::POWER_MANAGEMENT
        | fid::TEMPERATURE_THRESHOLD
        | fid::ERROR_RECOVERY
        | fid::INTERRUPT_COALESCING
        | fid::WRITE_ATOMICITY => Ok(0),
        _ => Err(err(sct::GENERIC, sc::INVALID_FIELD)),
    }
}
