//! Execution of NVM I/O commands (Read, Write, Flush, Write Zeroes,
//! Dataset Management, Reservations) against the namespace's device.
//!
//! Hot path: no info logs, no global locks (the per-namespace reservation
//! lock is taken only while a reservation is registered), counters are
//! atomics. One buffer per command: a read is placed directly after its
//! C2HData header in the buffer that goes to the socket.

use std::sync::{atomic::Ordering, Arc};

use blockdev::BlockDevError;
use bytes::{Bytes, BytesMut};
use nvmf::admin::{dsm_ranges, reservation_status, ReservationKeys};
use nvmf::nvme::{io_opc, sc, sc_media, sct, sgl, Cqe, Sqe, Status};
use nvmf::pdu::{DataHeader, EncodeOpts, PduType};
use nvmf::resv::{cptpl, ResvCdw10, REPORT_EDS};

use crate::ana::AnaState;
use crate::subsystem::{HostKey, Subsystem};
use crate::Inner;

/// Per-queue context shared by the queue's in-flight commands.
pub(crate) struct IoCtx {
    pub inner: Arc<Inner>,
    pub subsys: Arc<Subsystem>,
    pub host: HostKey,
    pub cntlid: u16,
    pub opts: EncodeOpts,
}

/// A finished command: encoded data PDUs (maybe none) and its CQE (SQHD
/// and SQID are filled in by the connection).
pub(crate) struct Done {
    pub buf: BytesMut,
    pub cqe: Cqe,
}

pub(crate) const fn err(sct_: u8, sc_: u8) -> Status {
    Status::dnr(sct_, sc_)
}

/// The status of a command on an INACCESSIBLE path.
const INACCESSIBLE: Status = Status::retry(sct::PATH, nvmf::nvme::sc_path::ANA_INACCESSIBLE);

/// Linux errno "no space left on device".
const ENOSPC: i32 = 28;

fn dev_status(e: &BlockDevError, write: bool) -> Status {
    match e {
        BlockDevError::OutOfRange { .. } => err(sct::GENERIC, sc::LBA_OUT_OF_RANGE),
        BlockDevError::Unaligned { .. } => err(sct::GENERIC, sc::INVALID_FIELD),
        // A thin replica that cannot get a cluster: tell the host why.
        BlockDevError::Io { source, .. } if source.raw_os_error() == Some(ENOSPC) => {
            err(sct::GENERIC, sc::CAPACITY_EXCEEDED)
        }
        BlockDevError::Io { .. } | BlockDevError::Short { .. } | BlockDevError::Injected { .. } => {
            if write {
                Status::retry(sct::MEDIA, sc_media::WRITE_FAULT)
            } else {
                Status::retry(sct::MEDIA, sc_media::UNRECOVERED_READ_ERROR)
            }
        }
        // A path status (DNR clear) the host retries on another path.
        BlockDevError::PathInaccessible { .. } => AnaState::Inaccessible
            .io_status()
            .unwrap_or(Status::retry(sct::GENERIC, sc::INTERNAL)),
        _ => Status::retry(sct::GENERIC, sc::INTERNAL),
    }
}

/// Appends a C2HData PDU of exactly `sgl_len` bytes (payload truncated or
/// zero padded).
pub(crate) fn put_c2h(
    buf: &mut BytesMut,
    cid: u16,
    payload: &[u8],
    sgl_len: u32,
    opts: EncodeOpts,
) {
    if sgl_len == 0 {
        return;
    }
    let h = DataHeader {
        ty: PduType::C2HData,
        cccid: cid,
        ttag: 0,
        datao: 0,
        datal: sgl_len,
        last: true,
        success: false,
    };
    let s = h.begin(buf, opts);
    let n = payload.len().min(sgl_len as usize);
    buf.extend_from_slice(&payload[..n]);
    buf.resize(s + sgl_len as usize, 0);
    h.finish(buf, s, opts);
}

impl IoCtx {
    /// Whether the reservation lets this host read (`write` false) or
    /// write: `Err` is the status to complete with (a conflict, or an
    /// internal error when the reservation lock is poisoned: the state of
    /// a multi-step update is unknown, so the command fails closed rather
    /// than reading the poison as "no reservation").
    fn allowed(&self, write: bool) -> Result<(), Status> {
        if !self.subsys.resv_active.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.subsys.resv.lock() {
            Ok(r) if r.allows(&self.host, write) => Ok(()),
            Ok(_) => Err(err(sct::GENERIC, sc::RESERVATION_CONFLICT)),
            Err(_) => Err(Status::retry(sct::GENERIC, sc::INTERNAL)),
        }
    }

    /// Checks NSID and LBA range of a Read/Write/Write Zeroes; returns
    /// `(offset, len)` in bytes.
    fn range(&self, sqe: &Sqe, limit_bytes: Option<u32>) -> Result<(u64, u64), Status> {
        if sqe.nsid != 1 {
            return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
        }
        let info = self.subsys.dev.info();
        let nlb = u64::from(sqe.nlb());
        let end = sqe.slba().checked_add(nlb);
        if end.is_none_or(|e| e > info.num_blocks) {
            return Err(err(sct::GENERIC, sc::LBA_OUT_OF_RANGE));
        }
        let bs = u64::from(info.block_size);
        let len = nlb * bs;
        if limit_bytes.is_some_and(|l| len > u64::from(l)) {
            return Err(err(sct::GENERIC, sc::INVALID_FIELD));
        }
        Ok((sqe.slba() * bs, len))
    }
}

/// Runs one I/O command to completion.
pub(crate) async fn exec(ctx: Arc<IoCtx>, sqe: Sqe, data: Bytes) -> Done {
    let mut buf = BytesMut::new();
    let status = match run(&ctx, &sqe, &data, &mut buf).await {
        Ok(()) => Status::SUCCESS,
        Err(s) => {
            buf.clear();
            if s == INACCESSIBLE && ctx.subsys.ana.io_status().is_none() {
                // The device said this path is over (e.g. a fenced nexus)
                // while the group still serves: the log page and the
                // hosts' change notices say so from now on.
                ctx.subsys.ana.set(AnaState::Inaccessible);
                tracing::warn!(nqn = %ctx.subsys.nqn, "nvmf subsystem turned ANA inaccessible by its device");
            }
            ctx.inner
                .counters
                .error_completions
                .fetch_add(1, Ordering::Relaxed);
            s
        }
    };
    Done {
        buf,
        cqe: Cqe::new(sqe.cid, status),
    }
}

async fn run(ctx: &IoCtx, sqe: &Sqe, data: &Bytes, buf: &mut BytesMut) -> Result<(), Status> {
    // A namespace whose ANA group does not serve: a path error the host
    // retries on another path (one atomic load while it serves).
    if let Some(s) = ctx.subsys.ana.io_status() {
        return Err(s);
    }
    let dev = &ctx.subsys.dev;
    let c = &ctx.inner.counters;
    let mdts = ctx.inner.cfg.mdts_bytes;
    match sqe.opcode {
        io_opc::READ => {
            let (off, len) = ctx.range(sqe, Some(mdts))?;
            if sqe.dptr.id != sgl::TRANSPORT_DATA_BLOCK {
                return Err(err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID));
            }
            if u64::from(sqe.dptr.len) != len {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
            ctx.allowed(false)?;
            let h = DataHeader {
                ty: PduType::C2HData,
                cccid: sqe.cid,
                ttag: 0,
                datao: 0,
                datal: len as u32,
                last: true,
                success: false,
            };
            buf.reserve(len as usize + 64);
            let s = h.begin(buf, ctx.opts);
            buf.resize(s + len as usize, 0);
            dev.read_at(off, &mut buf[s..])
                .await
                .map_err(|e| dev_status(&e, false))?;
            h.finish(buf, s, ctx.opts);
            c.reads.fetch_add(1, Ordering::Relaxed);
            c.read_bytes.fetch_add(len, Ordering::Relaxed);
            Ok(())
        }
        io_opc::WRITE => {
            let (off, len) = ctx.range(sqe, Some(mdts))?;
            if data.len() as u64 != len {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
            ctx.allowed(true)?;
            dev.write_at(off, data)
                .await
                .map_err(|e| dev_status(&e, true))?;
            c.writes.fetch_add(1, Ordering::Relaxed);
            c.write_bytes.fetch_add(len, Ordering::Relaxed);
            Ok(())
        }
        io_opc::FLUSH => {
            if sqe.nsid != 1 && sqe.nsid != 0xffff_ffff {
                return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
            }
            ctx.allowed(true)?;
            dev.flush().await.map_err(|e| dev_status(&e, true))
        }
        io_opc::WRITE_ZEROES => {
            let (off, len) = ctx.range(sqe, None)?;
            ctx.allowed(true)?;
            dev.write_zeroes(off, len)
                .await
                .map_err(|e| dev_status(&e, true))
        }
        io_opc::DATASET_MANAGEMENT => {
            if sqe.nsid != 1 {
                return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
            }
            let nr = (sqe.cdw10 & 0xff) as usize + 1;
            if data.len() < nr * 16 {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
            if sqe.cdw11 & (1 << 2) == 0 {
                return Ok(()); // only hints: nothing to do
            }
            ctx.allowed(true)?;
            let info = dev.info();
            let bs = u64::from(info.block_size);
            for r in dsm_ranges(&data[..nr * 16]) {
                let end = r.slba.checked_add(u64::from(r.nlb));
                if end.is_none_or(|e| e > info.num_blocks) {
                    return Err(err(sct::GENERIC, sc::LBA_OUT_OF_RANGE));
                }
                if r.nlb > 0 {
                    dev.unmap(r.slba * bs, u64::from(r.nlb) * bs)
                        .await
                        .map_err(|e| dev_status(&e, true))?;
                }
            }
            Ok(())
        }
        io_opc::RESERVATION_REGISTER
        | io_opc::RESERVATION_ACQUIRE
        | io_opc::RESERVATION_RELEASE => {
            if sqe.nsid != 1 {
                return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
            }
            let keys = ReservationKeys::from_bytes(data)
                .ok_or(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID))?;
            let ResvCdw10 {
                action,
                iekey,
                rtype: t,
                cptpl: ptpl_change,
            } = ResvCdw10::from_cdw10(sqe.cdw10);
            // No PTPL: "no change" and "clear" (which it already is) only.
            if sqe.opcode == io_opc::RESERVATION_REGISTER
                && !matches!(ptpl_change, cptpl::NO_CHANGE | cptpl::CLEAR)
            {
                return Err(err(sct::GENERIC, sc::INVALID_FIELD));
            }
            let Ok(mut r) = ctx.subsys.resv.lock() else {
                return Err(Status::retry(sct::GENERIC, sc::INTERNAL));
            };
            let st = match sqe.opcode {
                io_opc::RESERVATION_REGISTER => r.register(
                    &ctx.host,
                    ctx.cntlid,
                    action,
                    iekey,
                    keys.current,
                    keys.other,
                ),
                io_opc::RESERVATION_ACQUIRE => {
                    r.acquire(&ctx.host, action, iekey, t, keys.current, keys.other)
                }
                _ => r.release(&ctx.host, action, iekey, t, keys.current),
            };
            ctx.subsys
                .resv_active
                .store(!r.regs.is_empty() || r.holder.is_some(), Ordering::Release);
            if st.is_success() {
                Ok(())
            } else {
                Err(st)
            }
        }
        io_opc::RESERVATION_REPORT => {
            if sqe.nsid != 1 {
                return Err(err(sct::GENERIC, sc::INVALID_NAMESPACE));
            }
            if sqe.dptr.id != sgl::TRANSPORT_DATA_BLOCK {
                return Err(err(sct::GENERIC, sc::SGL_DESCRIPTOR_TYPE_INVALID));
            }
            // NUMD and the SGL length are the host's to choose: both are
            // checked before anything is built or allocated.
            if sqe.dptr.len > mdts {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
            let want = (u64::from(sqe.cdw10) + 1) * 4;
            if want > u64::from(sqe.dptr.len) {
                return Err(err(sct::GENERIC, sc::DATA_SGL_LENGTH_INVALID));
            }
            let eds = sqe.cdw11 & REPORT_EDS != 0;
            let live = ctx.subsys.live_cntlids();
            let (gen, t, regs) = match ctx.subsys.resv.lock() {
                Ok(r) => r.report(|k| live.get(k).copied().unwrap_or(0xffff)),
                Err(_) => return Err(Status::retry(sct::GENERIC, sc::INTERNAL)),
            };
            let page = reservation_status(gen, t, &regs, eds);
            put_c2h(buf, sqe.cid, &page, want as u32, ctx.opts);
            Ok(())
        }
        _ => Err(err(sct::GENERIC, sc::INVALID_OPCODE)),
    }
}
