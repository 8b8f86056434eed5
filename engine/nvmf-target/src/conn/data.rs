//! Command capsules and the write data they bring: in-capsule data up to
//! the queue's limit (more ends the connection), else gathered with
//! R2T/H2CData before the command is dispatched.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use nvmf::nvme::{sc, sct, sgl};
use nvmf::pdu::{fes, CapsuleCmd, DataPdu, Pdu, R2t};
use tokio::time::Instant;

use super::{term, Conn, End, Pending};
use crate::io::err;

impl Conn {
    fn max_icd(&self) -> usize {
        let io = self.q.as_ref().is_some_and(|q| q.qid != 0);
        if io {
            self.inner.cfg.in_capsule_data_bytes as usize
        } else {
            (self.inner.cfg.in_capsule_data_bytes as usize).max(8192)
        }
    }

    pub(super) async fn on_capsule(&mut self, c: CapsuleCmd) -> Result<(), End> {
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

    pub(super) async fn on_h2c(&mut self, d: DataPdu) -> Result<(), End> {
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
}
