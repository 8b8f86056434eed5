//! The closed set of devices a nexus child can be, dispatched with an enum
//! on the I/O path (no boxed future per child I/O).
//!
//! - [`ChildDevice::Local`]: a replica of one of this engine's pools
//!   (`bdev:///<replica-uuid>`);
//! - [`ChildDevice::Remote`]: a namespace of a remote replica reached
//!   through our NVMe/TCP initiator (`nvmf://`);
//! - [`ChildDevice::Other`]: any other device an opener hands out (tests,
//!   fault injection): the edge where the set is open, through the boxed
//!   [`DynBlockDevice`](blockdev::dynamic::DynBlockDevice) view.
//!
//! Hot path: a clone is one `Arc` increment; each call is a `match` and a
//! static call for the first two kinds. Reads and writes take the nexus's
//! [`IoTimer`]: a local replica counts the I/O and gives back the span it
//! ended with its clock read, which the nexus then reuses.

use std::sync::Arc;

use blockdev::{dynamic::SharedDevice, BlockDevice, DeviceInfo, Result};
use nvmf_host::Namespace;

use crate::{
    pool::Replica,
    stats::{IoSpan, IoTimer},
};

/// A child's open device.
#[derive(Clone)]
pub enum ChildDevice {
    /// A replica of a local pool.
    Local(Arc<Replica>),
    /// A remote namespace over NVMe/TCP.
    Remote(Arc<Namespace>),
    /// Any other device (boxed futures).
    Other(SharedDevice),
}

impl std::fmt::Debug for ChildDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ChildDevice::Local(_) => "local",
            ChildDevice::Remote(_) => "remote",
            ChildDevice::Other(_) => "other",
        };
        f.debug_struct("ChildDevice")
            .field("kind", &kind)
            .field("uri", &self.info().uri)
            .finish()
    }
}

impl From<SharedDevice> for ChildDevice {
    fn from(dev: SharedDevice) -> Self {
        ChildDevice::Other(dev)
    }
}

impl ChildDevice {
    /// A read timed from the nexus's `timer`: a local replica counts it and
    /// gives back its span (ended when the replica's read did); other
    /// children give back `None` (the nexus ends the span itself).
    pub(crate) async fn read_timed(
        &self,
        offset_bytes: u64,
        buf: &mut [u8],
        timer: IoTimer,
    ) -> Result<Option<IoSpan>> {
        match self {
            ChildDevice::Local(d) => d.read_timed(offset_bytes, buf, timer).await,
            ChildDevice::Remote(d) => d.read_at(offset_bytes, buf).await.map(|()| None),
            ChildDevice::Other(d) => d.read_at(offset_bytes, buf).await.map(|()| None),
        }
    }

    /// A write timed from the nexus's `timer`, as [`ChildDevice::read_timed`].
    pub(crate) async fn write_timed(
        &self,
        offset_bytes: u64,
        buf: &[u8],
        timer: IoTimer,
    ) -> Result<Option<IoSpan>> {
        match self {
            ChildDevice::Local(d) => d.write_timed(offset_bytes, buf, timer).await,
            ChildDevice::Remote(d) => d.write_at(offset_bytes, buf).await.map(|()| None),
            ChildDevice::Other(d) => d.write_at(offset_bytes, buf).await.map(|()| None),
        }
    }
}

impl BlockDevice for ChildDevice {
    fn info(&self) -> &DeviceInfo {
        match self {
            ChildDevice::Local(d) => BlockDevice::info(&**d),
            ChildDevice::Remote(d) => BlockDevice::info(&**d),
            ChildDevice::Other(d) => d.info(),
        }
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            ChildDevice::Local(d) => d.read_at(offset_bytes, buf).await,
            ChildDevice::Remote(d) => d.read_at(offset_bytes, buf).await,
            ChildDevice::Other(d) => d.read_at(offset_bytes, buf).await,
        }
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<()> {
        match self {
            ChildDevice::Local(d) => d.write_at(offset_bytes, buf).await,
            ChildDevice::Remote(d) => d.write_at(offset_bytes, buf).await,
            ChildDevice::Other(d) => d.write_at(offset_bytes, buf).await,
        }
    }

    async fn flush(&self) -> Result<()> {
        match self {
            ChildDevice::Local(d) => d.flush().await,
            ChildDevice::Remote(d) => d.flush().await,
            ChildDevice::Other(d) => d.flush().await,
        }
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        match self {
            ChildDevice::Local(d) => d.write_zeroes(offset_bytes, len_bytes).await,
            ChildDevice::Remote(d) => d.write_zeroes(offset_bytes, len_bytes).await,
            ChildDevice::Other(d) => d.write_zeroes(offset_bytes, len_bytes).await,
        }
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        match self {
            ChildDevice::Local(d) => d.unmap(offset_bytes, len_bytes).await,
            ChildDevice::Remote(d) => d.unmap(offset_bytes, len_bytes).await,
            ChildDevice::Other(d) => d.unmap(offset_bytes, len_bytes).await,
        }
    }
}
