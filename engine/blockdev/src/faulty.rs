//! Fault injection around another device.
//!
//! Purpose: tests and drills make a healthy device fail on demand (a nexus
//! child that errors, a pool disk that stops taking writes) without
//! touching real hardware.
//!
//! Invariants:
//! - a request is first validated with [`check_io`] (a faulty device
//!   refuses bad requests like any other), then checked against the
//!   switches, and only then forwarded; an injected failure never reaches
//!   the inner device;
//! - "writes" are every data-modifying request: `write_at`,
//!   `write_zeroes` and `unmap`. `fail_writes_after(n)` lets the next `n`
//!   of them through and fails every later one;
//! - the device reports the inner device's URI and geometry with backend
//!   [`Backend::Faulty`].
//!
//! Threading model: [`FaultControl`] is a set of atomics shared through an
//! `Arc`; switches flipped from any thread apply to requests that start
//! afterwards (relaxed ordering: a request racing with the flip may see
//! either state).
//!
//! I/O path: no locks, no logs; one box per request (the inner future),
//! acceptable for a test and drill tool that is never a production path.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use crate::{check_io, Backend, BlockDevError, BlockDevice, Device, DeviceInfo, Result};

/// Budget value meaning "no write limit".
const UNLIMITED: u64 = u64::MAX;

/// Switches and counters of a [`FaultyDevice`].
#[derive(Debug)]
pub struct FaultControl {
    fail_reads: AtomicBool,
    fail_writes: AtomicBool,
    fail_flush: AtomicBool,
    fail_all: AtomicBool,
    /// Writes still allowed before every write fails (`UNLIMITED`: off).
    write_budget: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    injected: AtomicU64,
}

/// Snapshot of a [`FaultControl`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Reads that reached the inner device.
    pub reads: u64,
    /// Writes (write, write_zeroes, unmap) that reached the inner device.
    pub writes: u64,
    /// Flushes that reached the inner device.
    pub flushes: u64,
    /// Requests failed by injection.
    pub injected: u64,
}

impl Default for FaultControl {
    fn default() -> Self {
        FaultControl {
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            fail_flush: AtomicBool::new(false),
            fail_all: AtomicBool::new(false),
            write_budget: AtomicU64::new(UNLIMITED),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }
}

impl FaultControl {
    /// Fails every read while on.
    pub fn fail_reads(&self, on: bool) {
        self.fail_reads.store(on, Ordering::Relaxed);
    }

    /// Fails every write, write-zeroes and unmap while on.
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::Relaxed);
    }

    /// Fails every flush while on.
    pub fn fail_flush(&self, on: bool) {
        self.fail_flush.store(on, Ordering::Relaxed);
    }

    /// Fails every request while on.
    pub fn fail_all(&self, on: bool) {
        self.fail_all.store(on, Ordering::Relaxed);
    }

    /// Lets the next `n` writes through, then fails every write (the
    /// n+1-th onwards) until [`Self::clear`] or another call.
    pub fn fail_writes_after(&self, n: u64) {
        self.write_budget
            .store(n.min(UNLIMITED - 1), Ordering::Relaxed);
    }

    /// Turns every switch off (counters are kept).
    pub fn clear(&self) {
        self.fail_reads(false);
        self.fail_writes(false);
        self.fail_flush(false);
        self.fail_all(false);
        self.write_budget.store(UNLIMITED, Ordering::Relaxed);
    }

    /// Counters since creation.
    pub fn counters(&self) -> FaultCounters {
        FaultCounters {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
        }
    }

    fn inject(&self, op: &'static str) -> Result<()> {
        self.injected.fetch_add(1, Ordering::Relaxed);
        Err(BlockDevError::Injected { op })
    }

    fn admit_read(&self) -> Result<()> {
        if self.fail_all.load(Ordering::Relaxed) || self.fail_reads.load(Ordering::Relaxed) {
            return self.inject("read");
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn admit_write(&self, op: &'static str) -> Result<()> {
        if self.fail_all.load(Ordering::Relaxed) || self.fail_writes.load(Ordering::Relaxed) {
            return self.inject(op);
        }
        let budget = self
            .write_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| match b {
                UNLIMITED => Some(UNLIMITED),
                0 => None,
                b => Some(b - 1),
            });
        if budget.is_err() {
            return self.inject(op);
        }
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn admit_flush(&self) -> Result<()> {
        if self.fail_all.load(Ordering::Relaxed) || self.fail_flush.load(Ordering::Relaxed) {
            return self.inject("flush");
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A device whose requests can be made to fail on demand.
#[derive(Debug)]
pub struct FaultyDevice {
    inner: Device,
    ctl: Arc<FaultControl>,
    info: DeviceInfo,
}

/// The inner device's future, boxed: `Device` contains `FaultyDevice`, so
/// an unboxed future would have infinite size. The box is a test/drill
/// cost, not a hot-path one. The boxing happens in the free functions
/// below, outside the trait impl, so that proving the inner future `Send`
/// does not need the hidden type of the impl's own future (a cycle).
type Boxed<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

fn inner_read<'a>(d: &'a Device, offset_bytes: u64, buf: &'a mut [u8]) -> Boxed<'a> {
    Box::pin(d.read_at(offset_bytes, buf))
}

fn inner_write<'a>(d: &'a Device, offset_bytes: u64, buf: &'a [u8]) -> Boxed<'a> {
    Box::pin(d.write_at(offset_bytes, buf))
}

fn inner_flush(d: &Device) -> Boxed<'_> {
    Box::pin(d.flush())
}

fn inner_write_zeroes(d: &Device, offset_bytes: u64, len_bytes: u64) -> Boxed<'_> {
    Box::pin(d.write_zeroes(offset_bytes, len_bytes))
}

fn inner_unmap(d: &Device, offset_bytes: u64, len_bytes: u64) -> Boxed<'_> {
    Box::pin(d.unmap(offset_bytes, len_bytes))
}

impl FaultyDevice {
    /// Wraps `inner`; all switches start off.
    pub fn new(inner: Device) -> (Self, Arc<FaultControl>) {
        let ctl = Arc::new(FaultControl::default());
        let info = DeviceInfo {
            backend: Backend::Faulty,
            ..inner.info().clone()
        };
        (
            FaultyDevice {
                inner,
                ctl: ctl.clone(),
                info,
            },
            ctl,
        )
    }

    /// The switches of this device.
    pub fn control(&self) -> &Arc<FaultControl> {
        &self.ctl
    }

    /// The wrapped device.
    pub fn inner(&self) -> &Device {
        &self.inner
    }
}

impl BlockDevice for FaultyDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        check_io(&self.info, "read", offset_bytes, buf.len() as u64)?;
        self.ctl.admit_read()?;
        inner_read(&self.inner, offset_bytes, buf).await
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<()> {
        check_io(&self.info, "write", offset_bytes, buf.len() as u64)?;
        self.ctl.admit_write("write")?;
        inner_write(&self.inner, offset_bytes, buf).await
    }

    async fn flush(&self) -> Result<()> {
        self.ctl.admit_flush()?;
        inner_flush(&self.inner).await
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "write_zeroes", offset_bytes, len_bytes)?;
        self.ctl.admit_write("write_zeroes")?;
        inner_write_zeroes(&self.inner, offset_bytes, len_bytes).await
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        check_io(&self.info, "unmap", offset_bytes, len_bytes)?;
        self.ctl.admit_write("unmap")?;
        inner_unmap(&self.inner, offset_bytes, len_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MallocDevice;

    fn faulty() -> (Device, Arc<FaultControl>) {
        let m = MallocDevice::new(&"malloc:///f0?size_mb=1".parse().unwrap()).unwrap();
        let (f, ctl) = FaultyDevice::new(Device::Malloc(m));
        (Device::Faulty(Box::new(f)), ctl)
    }

    #[tokio::test]
    async fn switches() {
        let (d, ctl) = faulty();
        assert_eq!(d.info().backend, Backend::Faulty);
        assert_eq!(d.info().uri, "malloc:///f0?size_mb=1&blk_size=512");
        let mut buf = [0u8; 512];
        d.write_at(0, &buf).await.unwrap();

        ctl.fail_reads(true);
        assert!(matches!(
            d.read_at(0, &mut buf).await,
            Err(BlockDevError::Injected { op: "read" })
        ));
        d.write_at(0, &buf).await.unwrap();
        ctl.fail_reads(false);
        d.read_at(0, &mut buf).await.unwrap();

        ctl.fail_writes(true);
        assert!(matches!(
            d.write_at(0, &buf).await,
            Err(BlockDevError::Injected { op: "write" })
        ));
        assert!(matches!(
            d.write_zeroes(0, 512).await,
            Err(BlockDevError::Injected { op: "write_zeroes" })
        ));
        assert!(matches!(
            d.unmap(0, 512).await,
            Err(BlockDevError::Injected { op: "unmap" })
        ));
        d.flush().await.unwrap();
        ctl.fail_writes(false);

        ctl.fail_flush(true);
        assert!(matches!(
            d.flush().await,
            Err(BlockDevError::Injected { op: "flush" })
        ));
        ctl.fail_flush(false);

        ctl.fail_all(true);
        assert!(d.read_at(0, &mut buf).await.is_err());
        assert!(d.write_at(0, &buf).await.is_err());
        assert!(d.flush().await.is_err());
        ctl.clear();

        ctl.fail_writes_after(2);
        d.write_at(0, &buf).await.unwrap();
        d.write_zeroes(0, 512).await.unwrap();
        assert!(d.write_at(0, &buf).await.is_err());
        assert!(d.write_at(0, &buf).await.is_err());
        d.read_at(0, &mut buf).await.unwrap();
        ctl.clear();
        d.write_at(0, &buf).await.unwrap();

        let c = ctl.counters();
        assert_eq!(c.injected, 10);
        assert_eq!(c.reads, 2);
        assert_eq!(c.flushes, 1);
        assert_eq!(c.writes, 5);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_injection() {
        let (d, ctl) = faulty();
        ctl.fail_all(true);
        let mut buf = [0u8; 100];
        assert!(matches!(
            d.read_at(0, &mut buf).await,
            Err(BlockDevError::Unaligned { .. })
        ));
        assert_eq!(ctl.counters().injected, 0);
    }
}
