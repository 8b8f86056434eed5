//! One NVMe/TCP queue: a TCP connection with a writer task and a reader
//! task, and the CID slab that matches completions to submitters.
//!
//! Purpose: [`Queue::open`] connects and exchanges ICReq/ICResp;
//! [`Queue::submit`] sends one command capsule (with in-capsule data when
//! the write fits the controller's in-capsule size, otherwise the data
//! goes out as H2CData when the controller asks with R2T) and waits for
//! its completion, copying C2HData into the caller's buffer.
//!
//! Invariants:
//! - every queue belongs to one association, whose cancellation token is
//!   shared by all its queues: any transport error (closed socket, bad
//!   PDU, digest mismatch, termination request) cancels it, which closes
//!   every queue of the association and fails their outstanding commands
//!   with [`QueueError::Lost`] (the controller layer then reconnects);
//! - outgoing PDUs are encoded and written only by the writer task, so a
//!   submitter whose future is dropped never leaves half a PDU on the
//!   wire;
//! - the writer channel is bounded (twice the queue depth); H2CData
//!   chunks never exceed the controller's MAXH2CDATA.
//!
//! Hot path: no allocation per I/O except the owned copy of write data
//! (the caller's buffer is borrowed; the writer task needs owned bytes),
//! no logs (events are counted), no global locks.
//!
//! Threading model: a queue is shared (`Arc`) by any number of
//! submitters; its two tasks run on the tokio runtime.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use nvmf::{SglDescriptor, Sqe};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{
    error::HostError,
    slab::{Completion, Slab, SlabError},
    wire::{self, RxPdu, WireParams},
};

/// Size of the reader's receive buffer (grown by the decoder as needed).
const READ_BUF_BYTES: usize = 64 * 1024;
/// The writer batches queued PDUs up to this many bytes per syscall.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Why a submission failed at the transport level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("connection lost")]
    Lost,
    #[error("command timed out")]
    Timeout,
    #[error("data buffer larger than 4 GiB")]
    TooLarge,
    #[error("controller completed the command without transferring all its data")]
    ShortTransfer,
}

impl From<SlabError> for QueueError {
    fn from(_: SlabError) -> Self {
        QueueError::Lost
    }
}

/// Data of one command.
#[derive(Debug)]
pub enum Data<'a> {
    /// No data.
    None,
    /// Controller-to-host data into this buffer (C2HData).
    Read(&'a mut [u8]),
    /// Host-to-controller data (in-capsule or R2T/H2CData).
    Write(Bytes),
}

/// What the writer task puts on the wire.
#[derive(Debug)]
enum Outgoing {
    /// A command capsule, with its in-capsule data if any.
    Cmd { sqe: Sqe, data: Option<Bytes> },
    /// One H2CData PDU answering an R2T.
    H2c {
        cid: u16,
        ttag: u16,
        offset: u32,
        data: Bytes,
        last: bool,
    },
}

/// Counters of a controller's queues, kept across reconnects
/// (monotonic; read with `Relaxed`).
#[derive(Debug, Default)]
pub struct HostStats {
    /// Commands sent (every attempt counts).
    pub commands: AtomicU64,
    /// Writes whose data went in-capsule.
    pub in_capsule_writes: AtomicU64,
    /// R2T PDUs answered.
    pub r2t: AtomicU64,
    /// H2CData PDUs sent.
    pub h2c_pdus: AtomicU64,
    /// C2HData PDUs received.
    pub c2h_pdus: AtomicU64,
    /// Commands that timed out.
    pub timeouts: AtomicU64,
    /// Associations re-established after a failure.
    pub reconnects: AtomicU64,
}

/// Transport parameters negotiated by ICReq/ICResp.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub wire: WireParams,
    /// Largest H2CData payload the controller accepts.
    pub maxh2cdata: u32,
}

/// One queue (admin or I/O) of an association.
#[derive(Debug)]
pub struct Queue {
    slab: Arc<Slab>,
    tx: mpsc::Sender<Outgoing>,
    token: CancellationToken,
    /// Largest write sent in-capsule; larger ones go through R2T.
    in_capsule_bytes: u32,
    timeout: Duration,
    negotiated: Negotiated,
    stats: Arc<HostStats>,
}

/// Parameters of [`Queue::open`].
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub addr: SocketAddr,
    pub qid: u16,
    pub depth: u16,
    pub hdr_digest: bool,
    pub data_digest: bool,
    pub in_capsule_bytes: u32,
    pub timeout: Duration,
    pub stats: Arc<HostStats>,
}

impl Queue {
    /// Connects, exchanges ICReq/ICResp and starts the queue's tasks.
    ///
    /// The Fabrics Connect command is the caller's first submission.
    pub async fn open(
        cfg: &QueueConfig,
        token: CancellationToken,
    ) -> Result<Arc<Queue>, HostError> {
        let connect = async {
            let stream =
                TcpStream::connect(cfg.addr)
                    .await
                    .map_err(|source| HostError::Connect {
                        addr: cfg.addr,
                        source,
                    })?;
            stream
                .set_nodelay(true)
                .map_err(|source| HostError::Connect {
                    addr: cfg.addr,
                    source,
                })?;
            Self::initialize(stream, cfg).await
        };
        let (rd, wr, rbuf, negotiated) = tokio::time::timeout(cfg.timeout, connect)
            .await
            .map_err(|_| HostError::Timeout {
                what: "connection setup (ICReq/ICResp)",
            })??;
        let slab = Arc::new(Slab::new(cfg.depth));
        let (tx, rx) = mpsc::channel(usize::from(cfg.depth) * 2 + 4);
        let stats = cfg.stats.clone();
        tokio::spawn(writer_task(wr, rx, negotiated.wire, token.clone()));
        tokio::spawn(reader_task(ReaderCtx {
            rd,
            rbuf,
            slab: slab.clone(),
            tx: tx.clone(),
            token: token.clone(),
            negotiated,
            stats: stats.clone(),
        }));
        Ok(Arc::new(Queue {
            slab,
            tx,
            token,
            in_capsule_bytes: cfg.in_capsule_bytes,
            timeout: cfg.timeout,
            negotiated,
            stats,
        }))
    }

    async fn initialize(
        mut stream: TcpStream,
        cfg: &QueueConfig,
    ) -> Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut, Negotiated), HostError> {
        let mut out = BytesMut::with_capacity(128);
        wire::encode_icreq(&mut out, cfg.hdr_digest, cfg.data_digest);
        stream
            .write_all(&out)
            .await
            .map_err(|source| HostError::Connect {
                addr: cfg.addr,
                source,
            })?;
        let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES);
        // ICResp is always exchanged without digests.
        let plain = WireParams::default();
        loop {
            if let Some(pdu) = wire::decode(&mut rbuf, &plain).map_err(HostError::Protocol)? {
                let RxPdu::IcResp {
                    pfv,
                    cpda,
                    hdr_digest,
                    data_digest,
                    maxh2cdata,
                } = pdu
                else {
                    return Err(HostError::Protocol(format!(
                        "expected ICResp, got {}",
                        pdu.name()
                    )));
                };
                if pfv != 0 {
                    return Err(HostError::Protocol(format!(
                        "unsupported PDU format version {pfv}"
                    )));
                }
                if (hdr_digest && !cfg.hdr_digest) || (data_digest && !cfg.data_digest) {
                    return Err(HostError::Protocol(
                        "controller enabled a digest the host did not ask for".into(),
                    ));
                }
                if maxh2cdata < 4096 {
                    return Err(HostError::Protocol(format!(
                        "MAXH2CDATA {maxh2cdata} is below the 4096-byte minimum"
                    )));
                }
                let negotiated = Negotiated {
                    wire: WireParams {
                        hdr_digest,
                        data_digest,
                        cpda,
                    },
                    maxh2cdata,
                };
                let (rd, wr) = stream.into_split();
                return Ok((rd, wr, rbuf, negotiated));
            }
            let n = stream
                .read_buf(&mut rbuf)
                .await
                .map_err(|source| HostError::Connect {
                    addr: cfg.addr,
                    source,
                })?;
            if n == 0 {
                return Err(HostError::Protocol(
                    "connection closed before ICResp".into(),
                ));
            }
        }
    }

    /// What ICReq/ICResp negotiated.
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
    }

    /// Sends `sqe` with `data` and waits for the completion (bounded by
    /// the queue's command timeout).
    pub async fn submit(&self, mut sqe: Sqe, data: Data<'_>) -> Result<Completion, QueueError> {
        if self.token.is_cancelled() {
            return Err(QueueError::Lost);
        }
        let (expected_len, r2t_data, inline, buf) = match data {
            Data::None => (0, None, None, None),
            Data::Read(buf) => (len_u32(buf.len())?, None, None, Some(buf)),
            Data::Write(bytes) => {
                let len = len_u32(bytes.len())?;
                if len <= self.in_capsule_bytes {
                    (0, None, Some(bytes), None)
                } else {
                    (0, Some(bytes), None, None)
                }
            }
        };
        // Waiting for a free CID is not part of the command's time: a
        // saturated queue must not look like an unresponsive controller.
        let guard = tokio::select! {
            _ = self.token.cancelled() => return Err(QueueError::Lost),
            g = self.slab.acquire(expected_len, r2t_data.clone()) => g?,
        };
        sqe.cid = guard.cid();
        sqe.flags |= nvmf::nvme::SQE_FLAGS_SGL;
        sqe.dptr = match (&inline, &r2t_data) {
            (Some(d), _) => {
                self.stats.in_capsule_writes.fetch_add(1, Ordering::Relaxed);
                SglDescriptor::in_capsule(len_u32(d.len())?)
            }
            (None, Some(d)) => SglDescriptor::transport(len_u32(d.len())?),
            (None, None) => SglDescriptor::transport(expected_len),
        };
        self.stats.commands.fetch_add(1, Ordering::Relaxed);
        let run = async {
            self.tx
                .send(Outgoing::Cmd { sqe, data: inline })
                .await
                .map_err(|_| QueueError::Lost)?;
            let c = guard.wait(buf).await?;
            if c.is_success() && guard.received() != expected_len {
                return Err(QueueError::ShortTransfer);
            }
            Ok(c)
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(QueueError::Timeout)
            }
        }
    }
}

fn len_u32(len: usize) -> Result<u32, QueueError> {
    // Callers split I/O far below 4 GiB.
    u32::try_from(len).map_err(|_| QueueError::TooLarge)
}

async fn writer_task(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    params: WireParams,
    token: CancellationToken,
) {
    let mut out = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    loop {
        let first = tokio::select! {
            _ = token.cancelled() => break,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
        };
        out.clear();
        encode_outgoing(&mut out, &params, first);
        while out.len() < WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) => encode_outgoing(&mut out, &params, m),
                Err(_) => break,
            }
        }
        let ok = tokio::select! {
            _ = token.cancelled() => false,
            r = wr.write_all(&out) => r.is_ok(),
        };
        if !ok {
            break;
        }
    }
    token.cancel();
    // Best effort: tell the peer we are gone.
    let _ = wr.shutdown().await;
}

fn encode_outgoing(out: &mut BytesMut, params: &WireParams, m: Outgoing) {
    match m {
        Outgoing::Cmd { sqe, data } => wire::encode_cmd(out, params, &sqe, data.as_ref()),
        Outgoing::H2c {
            cid,
            ttag,
            offset,
            data,
            last,
        } => wire::encode_h2c(out, params, cid, ttag, offset, &data, last),
    }
}

struct ReaderCtx {
    rd: OwnedReadHalf,
    rbuf: BytesMut,
    slab: Arc<Slab>,
    tx: mpsc::Sender<Outgoing>,
    token: CancellationToken,
    negotiated: Negotiated,
    stats: Arc<HostStats>,
}

async fn reader_task(mut ctx: ReaderCtx) {
    let token = ctx.token.clone();
    tokio::select! {
        _ = token.cancelled() => {}
        r = reader_loop(&mut ctx) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "nvmf queue connection closed");
            }
        }
    }
    token.cancel();
    ctx.slab.close();
}

async fn reader_loop(ctx: &mut ReaderCtx) -> Result<(), String> {
    loop {
        while let Some(pdu) = wire::decode(&mut ctx.rbuf, &ctx.negotiated.wire)? {
            handle_pdu(ctx, pdu).await?;
        }
        let n = ctx
            .rd
            .read_buf(&mut ctx.rbuf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the controller".into());
        }
    }
}

async fn handle_pdu(ctx: &mut ReaderCtx, pdu: RxPdu) -> Result<(), String> {
    match pdu {
        RxPdu::Resp { cid, completion } => ctx
            .slab
            .complete(cid, completion)
            .map_err(|e| e.to_string()),
        RxPdu::C2h {
            cid,
            offset,
            data,
            success,
        } => {
            ctx.stats.c2h_pdus.fetch_add(1, Ordering::Relaxed);
            ctx.slab
                .push_data(cid, offset, data)
                .map_err(|e| e.to_string())?;
            if success {
                ctx.slab
                    .complete(cid, Completion::default())
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        RxPdu::R2t {
            cid,
            ttag,
            offset,
            len,
        } => {
            ctx.stats.r2t.fetch_add(1, Ordering::Relaxed);
            let end = offset
                .checked_add(len)
                .ok_or_else(|| "R2T range overflows".to_string())?;
            let mut off = offset;
            while off < end {
                let n = (end - off).min(ctx.negotiated.maxh2cdata);
                let data = ctx
                    .slab
                    .write_data(cid, off, n)
                    .map_err(|e| format!("R2T: {e}"))?;
                let msg = Outgoing::H2c {
                    cid,
                    ttag,
                    offset: off,
                    data,
                    last: off + n == end,
                };
                ctx.stats.h2c_pdus.fetch_add(1, Ordering::Relaxed);
                ctx.tx
                    .send(msg)
                    .await
                    .map_err(|_| "writer gone".to_string())?;
                off += n;
            }
            Ok(())
        }
        RxPdu::Term { fes } => Err(format!(
            "controller terminated the connection (fatal error status {fes:#x})"
        )),
        other => Err(format!("unexpected {} PDU", other.name())),
    }
}
