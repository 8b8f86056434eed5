//! One TCP connection = one NVMe queue. The connection task reads and
//! decodes PDUs, runs Fabrics and admin commands inline, runs I/O commands
//! concurrently (a `FuturesUnordered`, at most the queue depth), gathers
//! write data with R2T/H2CData and hands encoded responses to a writer
//! task through a bounded channel (it writes whatever is queued in one
//! vectored write).
//!
//! Hot path (`on_pdu` for CapsuleCmd/H2CData, `finish`): no info logs, no
//! global locks; connection open/close is logged at debug/info.
//!
//! Teardown: the task ends on host close, protocol error (after a
//! C2HTermReq), target shutdown, or cancellation of its controller
//! (keep-alive timeout, subsystem removal, admin queue gone). Dropping the
//! task drops its in-flight futures; the admin queue's end tears the
//! controller (and with it every I/O queue) down.
//!
//! Modules: this one holds the connection loop, PDU dispatch and
//! completions; `data` the capsules and their write data, `fabrics` the
//! Fabrics commands, `admin` the admin commands.

use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use futures::{stream::FuturesUnordered, Future, StreamExt};
use nvmf::nvme::{admin_opc, sc, sct, Cqe, Sqe, Status};
use nvmf::pdu::{self, encode_capsule_resp, fes, Decoder, EncodeOpts, Pdu, TermReq};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedWriteHalf, TcpStream},
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::io::{err, exec, Done, IoCtx};
use crate::subsystem::{ConnGuard, Controller};
use crate::Inner;

mod admin;
mod data;
mod fabrics;

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
    /// ANA changes of the subsystem (admin queue of an NVM subsystem only).
    ana_rx: Option<watch::Receiver<(u8, u64)>>,
    /// An ANA change not yet reported through an Async Event Request.
    ana_pending: bool,
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
        ana_rx: None,
        ana_pending: false,
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

/// Most PDUs gathered into one vectored write.
const WRITE_BATCH: usize = 64;

/// Writes the encoded PDUs in order: everything queued at the time goes
/// out in one vectored write from the PDUs' own buffers (a read's data is
/// not copied again on its way to the socket).
async fn writer(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<BytesMut>) -> std::io::Result<()> {
    let mut batch: Vec<BytesMut> = Vec::with_capacity(WRITE_BATCH);
    while let Some(b) = rx.recv().await {
        batch.push(b);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        write_batch(&mut wr, &mut batch).await?;
    }
    wr.shutdown().await
}

/// Writes every buffer of `batch`, in order, and empties it.
async fn write_batch(wr: &mut OwnedWriteHalf, batch: &mut Vec<BytesMut>) -> std::io::Result<()> {
    let mut first = 0;
    while first < batch.len() {
        let mut iov = [std::io::IoSlice::new(&[]); WRITE_BATCH];
        let k = batch.len() - first;
        for (slot, b) in iov.iter_mut().zip(&batch[first..]) {
            *slot = std::io::IoSlice::new(b);
        }
        let mut n = wr.write_vectored(&iov[..k]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < batch.len() {
            let b = &mut batch[first];
            if n >= b.len() {
                n -= b.len();
                first += 1;
            } else {
                b.advance(n);
                n = 0;
            }
        }
        while first < batch.len() && batch[first].is_empty() {
            first += 1;
        }
    }
    batch.clear();
    Ok(())
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
                // The header as received, for a C2HTermReq if it is bad
                // (kept on the stack: no allocation per PDU).
                let mut hdr = [0u8; pdu::CAPSULE_CMD_HLEN as usize];
                let hdr_len = rbuf.len().min(hdr.len());
                hdr[..hdr_len].copy_from_slice(&rbuf[..hdr_len]);
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
                                hdr: Bytes::copy_from_slice(&hdr[..hdr_len]),
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
                changed = async { match self.ana_rx.as_mut() { Some(rx) => rx.changed().await, None => std::future::pending().await } } => {
                    match changed {
                        Ok(()) => {
                            // `changed` marked the change seen: it is pending now.
                            self.ana_pending = true;
                            if let Err(e) = self.send_ana_notice() { return e; }
                        }
                        // The subsystem is gone; its teardown ends this queue.
                        Err(_) => self.ana_rx = None,
                    }
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

    /// Reports an ANA change not reported yet through a parked Async Event
    /// Request, when the host enabled ANA change notices (else the change
    /// is dropped: the host reads the log page when it needs it).
    fn send_ana_notice(&mut self) -> Result<(), End> {
        if let Some(rx) = self.ana_rx.as_mut() {
            if rx.has_changed().unwrap_or(false) {
                rx.borrow_and_update();
                self.ana_pending = true;
            }
        }
        if !self.ana_pending {
            return Ok(());
        }
        let enabled = self.q.as_ref().is_some_and(|q| {
            q.ctrl.aec.load(Ordering::Relaxed) & nvmf::admin::aen::AEC_ANA_CHANGE != 0
        });
        if !enabled {
            self.ana_pending = false;
            return Ok(());
        }
        let Some(cid) = self.parked_aers.pop() else {
            return Ok(());
        };
        self.ana_pending = false;
        let mut cqe = Cqe::new(cid, Status::SUCCESS);
        cqe.dw0 = nvmf::admin::aen::ANA_CHANGE_DW0;
        self.complete_now(cqe)
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
}
