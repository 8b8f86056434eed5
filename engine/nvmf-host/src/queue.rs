//! One NVMe/TCP queue: a TCP connection, its CID slab, and the one
//! connection task that reads, completes and flushes.
//!
//! Purpose: [`Queue::open`] connects and exchanges ICReq/ICResp;
//! [`Queue::submit`] sends one command capsule (write data in-capsule when
//! it fits the controller's in-capsule size, otherwise as H2CData when the
//! controller asks with R2T) and waits for its completion, copying
//! C2HData into the caller's buffer.
//!
//! Fast path (the design, measured in `docs/performance.md`):
//! - the submitter writes its PDU itself: header and data go to the socket
//!   in one vectored non-blocking write straight from the caller's buffer
//!   (no copy, no hand-off to another task). Only what the socket does not
//!   take at once is copied into the queue's pending buffer, which the
//!   connection task flushes when the socket is writable again (so PDUs
//!   never interleave: every write happens under the queue's mutex, and
//!   nothing is written directly while anything is pending);
//! - the connection task reads whatever the socket has into one buffer,
//!   decodes every PDU in it and delivers all of them under one lock
//!   acquisition, then wakes the submitters (C2HData is handed over as
//!   slices of that buffer and copied once, by the submitter, into its own
//!   buffer);
//! - a burst is sent in one write: when a delivery wakes several
//!   submitters, the queue is corked until they have run (the connection
//!   task yields once), so the commands they submit in answer are appended
//!   to the pending buffer and go out together, rather than one `sendmsg`
//!   each (a loopback `sendmsg` also runs the receiver's TCP input on the
//!   sender's CPU); a single woken submitter still writes directly;
//! - no timer per command: a per-queue watchdog ticks every quarter of the
//!   command timeout and fails commands older than the timeout;
//! - no allocation per command: the slab, the pending buffer and the
//!   receive buffer are allocated once per connection (the receive buffer
//!   is replaced when C2HData slices still hold it, i.e. once per many
//!   reads);
//! - one mutex per queue, never held across `.await`; nothing is shared
//!   with the controller's other queues.
//!
//! Invariants:
//! - every queue belongs to one association, whose cancellation token is
//!   shared by all its queues: any transport error (closed socket, bad
//!   PDU, digest mismatch, termination request, an R2T for a command the
//!   host gave up) cancels it, which closes every queue of the association
//!   and fails their outstanding commands with [`QueueError::Lost`] (the
//!   controller layer then reconnects);
//! - a submitter whose future is dropped never leaves half a PDU behind:
//!   the unsent rest of a PDU is copied to the pending buffer before
//!   `send` returns; H2CData chunks never exceed the controller's
//!   MAXH2CDATA;
//! - no busy polling: the connection task sleeps in the reactor when there
//!   is nothing to read or flush.
//!
//! Threading model: a queue is shared (`Arc`) by any number of
//! submitters; its connection task runs on the tokio runtime.

use std::{
    future::poll_fn,
    io::IoSlice,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::Waker,
    time::Duration,
};

use bytes::{Buf, BytesMut};
use nvmf::{SglDescriptor, Sqe};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
    sync::{Notify, Semaphore, TryAcquireError},
};
use tokio_util::sync::CancellationToken;

mod conn;

use conn::{conn_task, Conn};

use crate::{
    error::HostError,
    slab::{Completion, Event, R2tRequest, Slab, SlabError},
    wire::{self, RxPdu, WireParams},
};

/// Receive buffer: one read takes up to this much.
const READ_BUF_BYTES: usize = 256 * 1024;
/// Below this much free room the receive buffer is grown before a read.
const READ_MIN_ROOM: usize = 16 * 1024;
/// Initial size of the pending (unsent) buffer.
const PENDING_BYTES: usize = 64 * 1024;

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

/// Data of one command.
#[derive(Debug)]
pub enum Data<'a> {
    /// No data.
    None,
    /// Controller-to-host data into this buffer (C2HData).
    Read(&'a mut [u8]),
    /// Host-to-controller data (in-capsule or R2T/H2CData), sent from the
    /// caller's buffer.
    Write(&'a [u8]),
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
    /// Bytes that the socket did not take at once and that were copied to
    /// a queue's pending buffer (0 on an unloaded connection).
    pub deferred_bytes: AtomicU64,
    /// Writes to the sockets (a PDU written at once by its submitter, or a
    /// flush of pending PDUs by the connection task).
    pub socket_writes: AtomicU64,
    /// PDUs appended while a queue was corked, to go out with their burst.
    pub corked_pdus: AtomicU64,
}

/// Transport parameters negotiated by ICReq/ICResp.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub wire: WireParams,
    /// Largest H2CData payload the controller accepts.
    pub maxh2cdata: u32,
}

/// What the queue's mutex guards.
#[derive(Debug)]
struct State {
    slab: Slab,
    /// Bytes of PDUs not yet written (in order).
    pending: BytesMut,
    /// The connection task just woke several submitters and flushes once
    /// they have run: until then PDUs are appended to `pending` (one write
    /// for the whole burst instead of one per command).
    corked: bool,
    /// `None` once the connection task ended.
    wr: Option<OwnedWriteHalf>,
}

/// What submitters and the connection task share.
#[derive(Debug)]
struct Shared {
    st: Mutex<State>,
    /// One permit per free CID.
    permits: Semaphore,
    /// Wakes the connection task when `pending` got bytes.
    flush: Notify,
    token: CancellationToken,
    wire: WireParams,
    /// Watchdog ticks so far.
    tick: AtomicU64,
    stats: Arc<HostStats>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding this short lock leaves plain data behind;
    // keep going rather than poison every later I/O.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wake_all(wake: &mut Vec<Waker>) {
    for w in wake.drain(..) {
        w.wake();
    }
}

/// One queue (admin or I/O) of an association.
#[derive(Debug)]
pub struct Queue {
    sh: Arc<Shared>,
    /// Largest write sent in-capsule; larger ones go through R2T.
    in_capsule_bytes: u32,
    negotiated: Negotiated,
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
    /// Connects, exchanges ICReq/ICResp and starts the connection task.
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
        let sh = Arc::new(Shared {
            st: Mutex::new(State {
                slab: Slab::new(cfg.depth),
                pending: BytesMut::with_capacity(PENDING_BYTES),
                corked: false,
                wr: Some(wr),
            }),
            permits: Semaphore::new(usize::from(cfg.depth.max(1))),
            flush: Notify::new(),
            token: token.clone(),
            wire: negotiated.wire,
            tick: AtomicU64::new(0),
            stats: cfg.stats.clone(),
        });
        tokio::spawn(conn_task(Conn {
            rd,
            rbuf,
            sh: sh.clone(),
            timeout: cfg.timeout,
            depth: cfg.depth,
        }));
        Ok(Arc::new(Queue {
            sh,
            in_capsule_bytes: cfg.in_capsule_bytes,
            negotiated,
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

    /// Takes a CID permit, waiting while every CID is busy. Waiting for a
    /// free CID is not part of the command's time: a saturated queue must
    /// not look like an unresponsive controller.
    async fn permit(&self) -> Result<(), QueueError> {
        let sh = &*self.sh;
        match sh.permits.try_acquire() {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => return Err(QueueError::Lost),
            Err(TryAcquireError::NoPermits) => {
                let p = tokio::select! {
                    _ = sh.token.cancelled() => return Err(QueueError::Lost),
                    p = sh.permits.acquire() => p.map_err(|_| QueueError::Lost)?,
                };
                p.forget();
            }
        }
        Ok(())
    }

    /// Sends `sqe` with `data` and waits for the completion (bounded by
    /// the queue's command timeout, see the watchdog).
    pub async fn submit(&self, mut sqe: Sqe, data: Data<'_>) -> Result<Completion, QueueError> {
        let sh = &*self.sh;
        if sh.token.is_cancelled() {
            return Err(QueueError::Lost);
        }
        let (expected_len, out, mut buf): (u32, &[u8], Option<&mut [u8]>) = match data {
            Data::None => (0, &[], None),
            Data::Read(b) => (len_u32(b.len())?, &[], Some(b)),
            Data::Write(b) => (0, b, None),
        };
        let out_len = len_u32(out.len())?;
        let inline = !out.is_empty() && out_len <= self.in_capsule_bytes;
        self.permit().await?;
        let mut guard = CidGuard { sh, cid: None };
        {
            let mut st = lock(&sh.st);
            let Some(cid) = st.slab.take(expected_len, sh.tick.load(Ordering::Relaxed)) else {
                return Err(QueueError::Lost);
            };
            guard.cid = Some(cid);
            sqe.cid = cid;
            sqe.flags |= nvmf::nvme::SQE_FLAGS_SGL;
            sqe.dptr = if inline {
                SglDescriptor::in_capsule(out_len)
            } else if out.is_empty() {
                SglDescriptor::transport(expected_len)
            } else {
                SglDescriptor::transport(out_len)
            };
            let inline_data: &[u8] = if inline { out } else { &[] };
            let start = st.pending.len();
            wire::encode_cmd_header(&mut st.pending, &sh.wire, &sqe, inline_data.len());
            sh.send_locked(&mut st, start, inline_data)?;
        }
        sh.stats.commands.fetch_add(1, Ordering::Relaxed);
        if inline {
            sh.stats.in_capsule_writes.fetch_add(1, Ordering::Relaxed);
        }
        let Some(cid) = guard.cid else {
            return Err(QueueError::Lost);
        };
        loop {
            let ev = poll_fn(|cx| lock(&sh.st).slab.poll_event(cid, cx)).await;
            match ev {
                Ok(Event::Done(c, received)) => {
                    if c.is_success() && received != expected_len {
                        return Err(QueueError::ShortTransfer);
                    }
                    return Ok(c);
                }
                Ok(Event::Data(off, data)) => {
                    let dst = buf.as_deref_mut().and_then(|b| {
                        let start = usize::try_from(off).ok()?;
                        b.get_mut(start..start.checked_add(data.len())?)
                    });
                    match dst {
                        Some(dst) => dst.copy_from_slice(&data),
                        None => {
                            // Checked against expected_len by the slab:
                            // only a bug could land here; drop the link.
                            sh.token.cancel();
                            return Err(QueueError::Lost);
                        }
                    }
                }
                Ok(Event::R2t(r)) => self.answer_r2t(cid, out, r)?,
                Err(SlabError::Timeout) => {
                    sh.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(QueueError::Timeout);
                }
                Err(_) => return Err(QueueError::Lost),
            }
        }
    }

    /// Sends the H2CData PDUs an R2T asks for, from the caller's buffer.
    fn answer_r2t(&self, cid: u16, out: &[u8], r: R2tRequest) -> Result<(), QueueError> {
        let sh = &*self.sh;
        let end = r
            .offset
            .checked_add(r.len)
            .filter(|e| *e as usize <= out.len());
        let Some(end) = end.filter(|_| r.len > 0) else {
            // The controller asked for data outside the command's buffer.
            sh.token.cancel();
            return Err(QueueError::Lost);
        };
        sh.stats.r2t.fetch_add(1, Ordering::Relaxed);
        let mut off = r.offset;
        let mut st = lock(&sh.st);
        while off < end {
            let n = (end - off).min(self.negotiated.maxh2cdata);
            let piece = &out[off as usize..(off + n) as usize];
            let start = st.pending.len();
            wire::encode_h2c_header(
                &mut st.pending,
                &sh.wire,
                cid,
                r.ttag,
                off,
                n,
                off + n == end,
            );
            sh.send_locked(&mut st, start, piece)?;
            sh.stats.h2c_pdus.fetch_add(1, Ordering::Relaxed);
            off += n;
        }
        Ok(())
    }
}

impl Shared {
    /// Sends the PDU whose header was just appended to `st.pending` at
    /// `start`, followed by `data` (and its digest when negotiated).
    ///
    /// With nothing pending before it, header and data go out in one
    /// vectored non-blocking write from where they are; whatever the
    /// socket does not take is copied to `pending` and the connection task
    /// is woken to flush it. Otherwise (or while corked: the connection
    /// task flushes the burst it woke) everything is appended to `pending`
    /// (order is kept). Called with the queue's lock held.
    fn send_locked(&self, st: &mut State, start: usize, data: &[u8]) -> Result<(), QueueError> {
        let digest =
            (self.wire.data_digest && !data.is_empty()).then(|| nvmf::pdu::data_digest(data));
        let digest: &[u8] = match &digest {
            Some(d) => d,
            None => &[],
        };
        let State {
            pending,
            wr,
            corked,
            ..
        } = st;
        let Some(wr) = wr.as_ref() else {
            pending.truncate(start);
            return Err(QueueError::Lost);
        };
        if start > 0 || *corked {
            pending.extend_from_slice(data);
            pending.extend_from_slice(digest);
            if *corked {
                self.stats.corked_pdus.fetch_add(1, Ordering::Relaxed);
            } else {
                self.note_deferred(data.len() + digest.len());
            }
            return Ok(());
        }
        let parts = [&pending[..], data, digest];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = 0;
        while done < total {
            let mut iov = [IoSlice::new(&[]); 3];
            let mut k = 0;
            let mut skip = done;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                iov[k] = IoSlice::new(&p[skip..]);
                skip = 0;
                k += 1;
            }
            match wr.try_write_vectored(&iov[..k]) {
                Ok(0) => {
                    self.token.cancel();
                    return Err(QueueError::Lost);
                }
                Ok(n) => {
                    self.stats.socket_writes.fetch_add(1, Ordering::Relaxed);
                    done += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.token.cancel();
                    return Err(QueueError::Lost);
                }
            }
        }
        if done == total {
            pending.clear();
            return Ok(());
        }
        // Keep the unsent rest, in order, for the connection task.
        let hdr = pending.len();
        if done < hdr {
            pending.advance(done);
            pending.extend_from_slice(data);
            pending.extend_from_slice(digest);
        } else {
            pending.clear();
            let mut skip = done - hdr;
            for p in [data, digest] {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                pending.extend_from_slice(&p[skip..]);
                skip = 0;
            }
        }
        self.note_deferred(total - done);
        self.flush.notify_one();
        Ok(())
    }

    fn note_deferred(&self, n: usize) {
        self.stats
            .deferred_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Connection task: ends a cork and writes what it can of `pending`;
    /// `Ok(true)` when everything went out.
    fn flush_some(&self) -> Result<bool, String> {
        let mut st = lock(&self.st);
        st.corked = false;
        let State { pending, wr, .. } = &mut *st;
        let Some(wr) = wr.as_ref() else {
            return Ok(true);
        };
        while !pending.is_empty() {
            match wr.try_write(pending) {
                Ok(0) => return Err("write: connection closed".into()),
                Ok(n) => {
                    self.stats.socket_writes.fetch_add(1, Ordering::Relaxed);
                    pending.advance(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        pending.clear();
        Ok(true)
    }
}

/// A CID held by one submission; frees (or abandons) it on drop.
struct CidGuard<'a> {
    sh: &'a Shared,
    cid: Option<u16>,
}

impl Drop for CidGuard<'_> {
    fn drop(&mut self) {
        let freed = match self.cid {
            Some(cid) => lock(&self.sh.st).slab.finish(cid),
            // The permit was taken but no CID: give it back.
            None => true,
        };
        if freed {
            self.sh.permits.add_permits(1);
        }
    }
}

fn len_u32(len: usize) -> Result<u32, QueueError> {
    // Callers split I/O far below 4 GiB.
    u32::try_from(len).map_err(|_| QueueError::TooLarge)
}
