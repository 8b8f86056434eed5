//! Object-safe view of [`BlockDevice`], for the edges where the set of
//! devices is open (an NVMe/TCP namespace may be a replica, a nexus or a
//! remote namespace): one boxed future per call. The hot paths inside the
//! engine keep using the static trait.

use std::{future::Future, pin::Pin, sync::Arc};

use crate::{BlockDevice, DeviceInfo, Result};

/// A boxed I/O future.
pub type IoFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// [`BlockDevice`] with boxed futures, usable as `dyn DynBlockDevice`.
pub trait DynBlockDevice: Send + Sync {
    fn info(&self) -> &DeviceInfo;
    fn read_at<'a>(&'a self, offset_bytes: u64, buf: &'a mut [u8]) -> IoFuture<'a>;
    fn write_at<'a>(&'a self, offset_bytes: u64, buf: &'a [u8]) -> IoFuture<'a>;
    fn flush(&self) -> IoFuture<'_>;
    fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> IoFuture<'_>;
    fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> IoFuture<'_>;
}

impl<T: BlockDevice> DynBlockDevice for T {
    fn info(&self) -> &DeviceInfo {
        BlockDevice::info(self)
    }
    fn read_at<'a>(&'a self, offset_bytes: u64, buf: &'a mut [u8]) -> IoFuture<'a> {
        Box::pin(BlockDevice::read_at(self, offset_bytes, buf))
    }
    fn write_at<'a>(&'a self, offset_bytes: u64, buf: &'a [u8]) -> IoFuture<'a> {
        Box::pin(BlockDevice::write_at(self, offset_bytes, buf))
    }
    fn flush(&self) -> IoFuture<'_> {
        Box::pin(BlockDevice::flush(self))
    }
    fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> IoFuture<'_> {
        Box::pin(BlockDevice::write_zeroes(self, offset_bytes, len_bytes))
    }
    fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> IoFuture<'_> {
        Box::pin(BlockDevice::unmap(self, offset_bytes, len_bytes))
    }
}

/// A shared dynamic device.
pub type SharedDevice = Arc<dyn DynBlockDevice>;
