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
//! static call for the first two kinds.

use std::sync::Arc;

use blockdev::{dynamic::SharedDevice, BlockDevice, DeviceInfo, Result};
use nvmf_host::Namespace;

use crate::pool::Replica;

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
