//! The nexus I/O path: reads round-robin over online children, writes
//! (and write-zeroes, unmap, flush) to every child that takes writes, each
//! child I/O under the child I/O timeout, failures faulting the child.
//!
//! Hot path: no allocation per child I/O beyond the per-request list of
//! targets, no info logs (a failing child is logged once, when it is
//! faulted), no nexus-wide lock (the write gate is shared). Child devices
//! are a closed enum ([`ChildDevice`]): each child I/O is a static call.
//! Completed reads and writes are counted in the nexus's [`crate::stats`]
//! (per-thread counters); the nexus's timer is handed to its children, and
//! the span a local replica ended is reused, so a nexus over local
//! replicas reads the clock twice per I/O in all.

use std::{future::Future, io, sync::atomic::Ordering, sync::Arc, time::Duration};

use blockdev::{check_io, BlockDevError, BlockDevice, DeviceInfo};
use tracing::warn;

use super::{Child, ChildDevice, FaultReason, Nexus};
use crate::stats::{IoSpan, IoTimer};

fn timed_out(timeout: Duration) -> BlockDevError {
    BlockDevError::Io {
        op: "child i/o",
        offset_bytes: 0,
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no completion within {} ms", timeout.as_millis()),
        ),
    }
}

fn no_healthy_child(op: &'static str, offset_bytes: u64) -> BlockDevError {
    BlockDevError::Io {
        op,
        offset_bytes,
        source: io::Error::other("the nexus has no healthy child"),
    }
}

/// What one child answered to an I/O: done, or the error and the reason to
/// fault the child with.
pub(crate) type ChildAnswer<T = ()> = Result<T, (FaultReason, BlockDevError)>;

/// Whether a child refused an I/O because another host holds the
/// replica's reservation: this nexus was fenced off by a newer target.
pub(crate) fn is_reservation_conflict(e: &BlockDevError) -> bool {
    nvmf_host::HostError::from_blockdev(e)
        .is_some_and(nvmf_host::HostError::is_reservation_conflict)
}

fn inaccessible(op: &'static str) -> BlockDevError {
    BlockDevError::PathInaccessible { op }
}

/// Reason a failed child I/O faults the child with.
fn reason_of(e: &BlockDevError) -> FaultReason {
    match e {
        BlockDevError::Io { source, .. } if source.raw_os_error() == Some(28) => {
            FaultReason::NoSpace
        }
        BlockDevError::Io { source, .. }
            if source.to_string().contains("capacity exceeded")
                || source.to_string().contains("no space") =>
        {
            FaultReason::NoSpace
        }
        _ => FaultReason::IoFailure,
    }
}

/// One write-like operation.
#[derive(Clone, Copy)]
enum WriteOp<'a> {
    Write(&'a [u8]),
    Zeroes(u64),
    Unmap(u64),
}

impl WriteOp<'_> {
    fn len(&self) -> u64 {
        match self {
            WriteOp::Write(b) => b.len() as u64,
            WriteOp::Zeroes(l) | WriteOp::Unmap(l) => *l,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            WriteOp::Write(_) => "write",
            WriteOp::Zeroes(_) => "write_zeroes",
            WriteOp::Unmap(_) => "unmap",
        }
    }

    /// Runs the operation on one child: a static call per child kind. A
    /// write is timed from `timer` (see [`ChildDevice::write_timed`]).
    async fn submit(
        self,
        dev: &ChildDevice,
        offset: u64,
        timer: IoTimer,
    ) -> blockdev::Result<Option<IoSpan>> {
        match self {
            WriteOp::Write(b) => dev.write_timed(offset, b, timer).await,
            WriteOp::Zeroes(l) => dev.write_zeroes(offset, l).await.map(|()| None),
            WriteOp::Unmap(l) => dev.unmap(offset, l).await.map(|()| None),
        }
    }
}

impl Nexus {
    /// Runs one child I/O under the child I/O timeout.
    pub(crate) async fn child_io<T>(
        &self,
        fut: impl Future<Output = blockdev::Result<T>>,
    ) -> ChildAnswer<T> {
        match tokio::time::timeout(self.cfg.child_io_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err((reason_of(&e), e)),
            Err(_) => Err((FaultReason::TimedOut, timed_out(self.cfg.child_io_timeout))),
        }
    }

    /// Faults `child` after its I/O (`op` at `offset_bytes`) failed, as
    /// [`Nexus::fault_on_io`] (`region` marked dirty, `keep_log`). The fault
    /// is persisted before the failed I/O completes: when the store cannot
    /// record it, the I/O fails.
    async fn fault_after_io(
        &self,
        child: &Arc<Child>,
        reason: FaultReason,
        region: Option<(u64, u64)>,
        keep_log: bool,
        op: &'static str,
        offset_bytes: u64,
    ) -> blockdev::Result<()> {
        match self.fault_on_io(child, reason, region, keep_log).await {
            Ok(_) => Ok(()),
            Err(store) => Err(BlockDevError::Io {
                op,
                offset_bytes,
                source: io::Error::other(store.to_string()),
            }),
        }
    }

    /// Settles the answers of the children a write-type request (`op` at
    /// `offset_bytes`) went to, each with whether the child is online: a
    /// child that failed is faulted ([`Nexus::fault_after_io`]), and the
    /// request succeeds when an online child acknowledged it.
    async fn settle_children<'c>(
        &self,
        answers: impl Iterator<Item = (&'c Arc<Child>, bool, ChildAnswer)>,
        op: &'static str,
        offset_bytes: u64,
        region: Option<(u64, u64)>,
        keep_log: bool,
    ) -> blockdev::Result<()> {
        let mut acked_online = false;
        let mut error = None;
        let mut fenced = false;
        for (child, online, answer) in answers {
            match answer {
                Ok(()) => acked_online |= online,
                // Fenced: the child is fine, this nexus is not.
                Err((_, e)) if is_reservation_conflict(&e) => fenced = true,
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), op, offset_bytes, error = %e, "child i/o failed");
                    self.fault_after_io(child, reason, region, keep_log, op, offset_bytes)
                        .await?;
                    error = Some(e);
                }
            }
        }
        if fenced {
            self.fenced();
            return Err(inaccessible(op));
        }
        if acked_online {
            Ok(())
        } else {
            Err(error.unwrap_or_else(|| no_healthy_child(op, offset_bytes)))
        }
    }

    fn check_open(&self, op: &'static str, offset_bytes: u64) -> blockdev::Result<()> {
        if !self.is_accessible() {
            return Err(inaccessible(op));
        }
        if self.is_shut_down() {
            return Err(BlockDevError::Io {
                op,
                offset_bytes,
                source: io::Error::other("the nexus is shut down"),
            });
        }
        Ok(())
    }

    /// Runs `op` on every child that takes writes, timed from `timer`: the
    /// nexus's span is the last child's when every child ended its own (local
    /// replicas), else it ends after the children are settled.
    async fn write_op(
        &self,
        offset: u64,
        op: WriteOp<'_>,
        timer: IoTimer,
    ) -> blockdev::Result<Option<IoSpan>> {
        let len = op.len();
        check_io(&self.dev, op.name(), offset, len)?;
        self.check_open(op.name(), offset)?;
        let _gate = self.gate.read().await;
        // Checked again under the gate: `set_inaccessible` waits for the
        // gate, so no write of this nexus runs after it returned.
        if !self.is_accessible() {
            return Err(inaccessible(op.name()));
        }
        let _range = if self.rebuilds_active.load(Ordering::SeqCst) > 0 {
            Some(self.ranges.shared(offset, len).await)
        } else {
            None
        };
        let children = self.children();
        let mut targets = Vec::with_capacity(children.len());
        let mut absent = Vec::new();
        for c in children.iter() {
            match c.write_device() {
                Some((dev, online)) => targets.push((c, dev, online)),
                None => absent.push(c),
            }
        }
        let results = futures::future::join_all(
            targets
                .iter()
                .map(|(_, dev, _)| self.child_io(op.submit(dev, offset, timer))),
        )
        .await;
        let mut last = None;
        let mut all_ended = true;
        for r in &results {
            match r {
                Ok(Some(span)) => last = last.max(Some(*span)),
                _ => all_ended = false,
            }
        }
        // Children that take no writes now replay this range when they
        // come back (partial rebuild).
        for c in absent {
            c.mark_dirty(offset, len);
        }
        let answers = targets
            .iter()
            .zip(results)
            .map(|((c, _, online), r)| (*c, *online, r.map(drop)));
        self.settle_children(answers, op.name(), offset, Some((offset, len)), true)
            .await?;
        Ok(if all_ended && last.is_some() {
            last
        } else {
            timer.stop()
        })
    }

    /// A read from one online child, retried on the next one on error,
    /// timed from `timer` (the span the child ended, else ended here).
    async fn read_children(
        &self,
        offset_bytes: u64,
        buf: &mut [u8],
        timer: IoTimer,
    ) -> blockdev::Result<Option<IoSpan>> {
        check_io(&self.dev, "read", offset_bytes, buf.len() as u64)?;
        self.check_open("read", offset_bytes)?;
        let children = self.children();
        let n = children.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut error = None;
        for i in 0..n {
            let child = &children[(start + i) % n];
            let Some(dev) = child.read_device() else {
                continue;
            };
            match self
                .child_io(dev.read_timed(offset_bytes, buf, timer))
                .await
            {
                Ok(Some(span)) => return Ok(Some(span)),
                Ok(None) => return Ok(timer.stop()),
                Err((_, e)) if is_reservation_conflict(&e) => {
                    self.fenced();
                    return Err(inaccessible("read"));
                }
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), offset_bytes, error = %e, "child read failed");
                    self.fault_after_io(child, reason, None, true, "read", offset_bytes)
                        .await?;
                    error = Some(e);
                }
            }
        }
        Err(error.unwrap_or_else(|| no_healthy_child("read", offset_bytes)))
    }
}

impl BlockDevice for Nexus {
    fn info(&self) -> &DeviceInfo {
        &self.dev
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> blockdev::Result<()> {
        let span = self
            .read_children(offset_bytes, buf, self.io.start_read())
            .await?;
        self.io.read_done(span, buf.len() as u64);
        Ok(())
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> blockdev::Result<()> {
        let span = self
            .write_op(offset_bytes, WriteOp::Write(buf), self.io.start_write())
            .await?;
        self.io.write_done(span, buf.len() as u64);
        Ok(())
    }

    async fn flush(&self) -> blockdev::Result<()> {
        self.check_open("flush", 0)?;
        let children = self.children();
        let targets: Vec<_> = children
            .iter()
            .filter_map(|c| c.write_device().map(|(d, online)| (c, d, online)))
            .collect();
        let results =
            futures::future::join_all(targets.iter().map(|(_, d, _)| self.child_io(d.flush())))
                .await;
        let answers = targets
            .iter()
            .zip(results)
            .map(|((c, _, online), r)| (*c, *online, r));
        self.settle_children(answers, "flush", 0, None, false).await
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Zeroes(len_bytes), IoTimer::off())
            .await
            .map(drop)
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Unmap(len_bytes), IoTimer::off())
            .await
            .map(drop)
    }
}
