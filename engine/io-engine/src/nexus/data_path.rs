//! The nexus I/O path: reads round-robin over online children, writes
//! (and write-zeroes, unmap, flush) to every child that takes writes, each
//! child I/O under the child I/O timeout, failures faulting the child.
//!
//! Hot path: no allocation per child I/O beyond the per-request list of
//! targets, no info logs (a failing child is logged once, when it is
//! faulted), no nexus-wide lock (the write gate is shared). Child devices
//! are a closed enum ([`ChildDevice`]): each child I/O is a static call.

use std::{future::Future, io, sync::atomic::Ordering, time::Duration};

use blockdev::{check_io, BlockDevError, BlockDevice, DeviceInfo};
use tracing::warn;

use super::{ChildDevice, FaultReason, Nexus};

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

    /// Runs the operation on one child: a static call per child kind.
    async fn submit(self, dev: &ChildDevice, offset: u64) -> blockdev::Result<()> {
        match self {
            WriteOp::Write(b) => dev.write_at(offset, b).await,
            WriteOp::Zeroes(l) => dev.write_zeroes(offset, l).await,
            WriteOp::Unmap(l) => dev.unmap(offset, l).await,
        }
    }
}

impl Nexus {
    /// Runs one child I/O under the child I/O timeout.
    pub(crate) async fn child_io(
        &self,
        fut: impl Future<Output = blockdev::Result<()>>,
    ) -> Result<(), (FaultReason, BlockDevError)> {
        match tokio::time::timeout(self.cfg.child_io_timeout, fut).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((reason_of(&e), e)),
            Err(_) => Err((FaultReason::TimedOut, timed_out(self.cfg.child_io_timeout))),
        }
    }

    fn check_open(&self, op: &'static str, offset_bytes: u64) -> blockdev::Result<()> {
        if self.is_shut_down() {
            return Err(BlockDevError::Io {
                op,
                offset_bytes,
                source: io::Error::other("the nexus is shut down"),
            });
        }
        Ok(())
    }

    async fn write_op(&self, offset: u64, op: WriteOp<'_>) -> blockdev::Result<()> {
        let len = op.len();
        check_io(&self.dev, op.name(), offset, len)?;
        self.check_open(op.name(), offset)?;
        let _gate = self.gate.read().await;
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
                .map(|(_, dev, _)| self.child_io(op.submit(dev, offset))),
        )
        .await;
        let mut acked_online = false;
        let mut error = None;
        for ((child, _, online), res) in targets.iter().zip(results) {
            match res {
                Ok(()) => acked_online |= *online,
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), op = op.name(), offset, error = %e, "child i/o failed");
                    match self
                        .fault_on_io(child, reason, Some((offset, len)), true)
                        .await
                    {
                        Ok(_) => {}
                        Err(store) => {
                            return Err(BlockDevError::Io {
                                op: op.name(),
                                offset_bytes: offset,
                                source: io::Error::other(store.to_string()),
                            })
                        }
                    }
                    error = Some(e);
                }
            }
        }
        for c in absent {
            c.mark_dirty(offset, len);
        }
        if acked_online {
            Ok(())
        } else {
            Err(error.unwrap_or_else(|| no_healthy_child(op.name(), offset)))
        }
    }
}

impl BlockDevice for Nexus {
    fn info(&self) -> &DeviceInfo {
        &self.dev
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> blockdev::Result<()> {
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
            match self.child_io(dev.read_at(offset_bytes, buf)).await {
                Ok(()) => return Ok(()),
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), offset_bytes, error = %e, "child read failed");
                    if let Err(store) = self.fault_on_io(child, reason, None, true).await {
                        return Err(BlockDevError::Io {
                            op: "read",
                            offset_bytes,
                            source: io::Error::other(store.to_string()),
                        });
                    }
                    error = Some(e);
                }
            }
        }
        Err(error.unwrap_or_else(|| no_healthy_child("read", offset_bytes)))
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Write(buf)).await
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
        let mut acked_online = false;
        let mut error = None;
        for ((child, _, online), res) in targets.iter().zip(results) {
            match res {
                Ok(()) => acked_online |= *online,
                Err((reason, e)) => {
                    warn!(nexus = %self.uuid, child = child.uri(), error = %e, "child flush failed");
                    if let Err(store) = self.fault_on_io(child, reason, None, false).await {
                        return Err(BlockDevError::Io {
                            op: "flush",
                            offset_bytes: 0,
                            source: io::Error::other(store.to_string()),
                        });
                    }
                    error = Some(e);
                }
            }
        }
        if acked_online {
            Ok(())
        } else {
            Err(error.unwrap_or_else(|| no_healthy_child("flush", 0)))
        }
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Zeroes(len_bytes))
            .await
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        self.write_op(offset_bytes, WriteOp::Unmap(len_bytes)).await
    }
}
