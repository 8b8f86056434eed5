//! Block-device layer of the io-engine.
//!
//! Every storage backend (RAM, files, raw block devices and, in later layers,
//! replicas, remote NVMe/TCP namespaces and the nexus) implements one async
//! trait, [`BlockDevice`]. The closed set of *disk* backends is dispatched
//! through the [`Device`] enum so the hot path has no dynamic dispatch.
//!
//! Invariants shared by every backend:
//! - offsets and lengths are in bytes and must be multiples of the device's
//!   block size; I/O beyond the end of the device is refused
//!   ([`BlockDevError::OutOfRange`]) before anything is submitted;
//! - a completed `write_at` is visible to every later `read_at`; it is
//!   durable against power loss only after a later `flush` completed (the
//!   durability contract is written down in `docs/durability.md`);
//! - an I/O future that is dropped before completion waits (blocking) for
//!   the kernel to finish with the caller's buffer, so buffers are never
//!   written after they are released;
//! - errors are returned, never panicked: a failing disk must not bring the
//!   engine down.
//!
//! Dependency rule: this crate is the only engine crate that may depend on
//! `io-uring` and `libc`.

// Unit tests may unwrap; library code may not (the lint stays on for the
// non-test build).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod buf;
mod disk;
pub mod dynamic;
pub mod faulty;
pub mod malloc;
pub mod pread;
pub mod uri;
pub mod uring;

use std::{future::Future, io, path::PathBuf};

pub use buf::DmaBuf;
pub use faulty::{FaultControl, FaultCounters, FaultyDevice};
pub use malloc::MallocDevice;
pub use pread::PreadDevice;
pub use uri::{DiskUri, MallocSize, UriError};
pub use uring::{UringDevice, UringStats};

/// Which implementation serves a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// RAM (`malloc:///`).
    Malloc,
    /// A file or a block device through io_uring.
    Uring,
    /// A file or a block device through positional reads/writes on a
    /// blocking thread pool (used when io_uring is unavailable).
    Pread,
    /// A fault-injection wrapper around another device (tests, drills).
    Faulty,
    /// A remote NVMe-oF namespace through the NVMe/TCP initiator
    /// (`nvmf-host`).
    Nvmf,
    /// A nexus: an N-way mirror over child devices (`io-engine`).
    Nexus,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Malloc => "malloc",
            Backend::Uring => "uring",
            Backend::Pread => "pread",
            Backend::Faulty => "faulty",
            Backend::Nvmf => "nvmf",
            Backend::Nexus => "nexus",
        })
    }
}

/// What a device is: fixed for its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Canonical URI of the device (`aio:///path?blk_size=512`, ...).
    pub uri: String,
    /// Logical block size in bytes (512 or 4096).
    pub block_size: u32,
    /// Number of logical blocks.
    pub num_blocks: u64,
    /// Which backend serves it.
    pub backend: Backend,
    /// Whether the page cache is bypassed (O_DIRECT).
    pub direct_io: bool,
}

impl DeviceInfo {
    /// Size of the device in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.num_blocks * u64::from(self.block_size)
    }
}

/// Errors of the block-device layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockDevError {
    #[error("invalid disk uri: {0}")]
    Uri(#[from] UriError),
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is empty or smaller than one block")]
    TooSmall { path: PathBuf },
    #[error("{op} at offset {offset_bytes} length {len_bytes} is not aligned to the block size {block_size}")]
    Unaligned {
        op: &'static str,
        offset_bytes: u64,
        len_bytes: u64,
        block_size: u32,
    },
    #[error("{op} at offset {offset_bytes} length {len_bytes} is beyond the end of the device ({size_bytes} bytes)")]
    OutOfRange {
        op: &'static str,
        offset_bytes: u64,
        len_bytes: u64,
        size_bytes: u64,
    },
    #[error("{op} at offset {offset_bytes} failed: {source}")]
    Io {
        op: &'static str,
        offset_bytes: u64,
        #[source]
        source: io::Error,
    },
    #[error("{op} at offset {offset_bytes}: short transfer ({done_bytes} of {len_bytes} bytes)")]
    Short {
        op: &'static str,
        offset_bytes: u64,
        done_bytes: u64,
        len_bytes: u64,
    },
    #[error("injected {op} failure")]
    Injected { op: &'static str },
    #[error("device is closed")]
    Closed,
    /// The device serves no I/O on this path any more (a volume target
    /// handed over or fenced off by a newer one): a multipath host retries
    /// the I/O on another path.
    #[error("{op}: this path is inaccessible (the target was handed over or fenced)")]
    PathInaccessible { op: &'static str },
    #[error("io_uring is unavailable: {0}")]
    UringUnavailable(#[source] io::Error),
}

pub type Result<T, E = BlockDevError> = std::result::Result<T, E>;

/// One async interface for every block device.
///
/// Buffers are borrowed for the duration of the call. Backends that hand
/// the buffer to the kernel keep the future's drop safe (see the crate
/// header).
pub trait BlockDevice: Send + Sync {
    /// Geometry and identity of the device.
    fn info(&self) -> &DeviceInfo;

    /// Reads `buf.len()` bytes at `offset_bytes`.
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8])
        -> impl Future<Output = Result<()>> + Send;

    /// Writes `buf` at `offset_bytes`.
    fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Makes every completed write durable.
    fn flush(&self) -> impl Future<Output = Result<()>> + Send;

    /// Makes `[offset, offset+len)` read back as zeroes.
    fn write_zeroes(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Hints that `[offset, offset+len)` is no longer needed. Reads of an
    /// unmapped range return zeroes on every backend of this crate.
    fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> impl Future<Output = Result<()>> + Send;
}

/// Checks alignment and range of a request against `info`.
pub fn check_io(
    info: &DeviceInfo,
    op: &'static str,
    offset_bytes: u64,
    len_bytes: u64,
) -> Result<()> {
    let bs = u64::from(info.block_size);
    if !offset_bytes.is_multiple_of(bs) || !len_bytes.is_multiple_of(bs) {
        return Err(BlockDevError::Unaligned {
            op,
            offset_bytes,
            len_bytes,
            block_size: info.block_size,
        });
    }
    let size_bytes = info.size_bytes();
    match offset_bytes.checked_add(len_bytes) {
        Some(end) if end <= size_bytes => Ok(()),
        _ => Err(BlockDevError::OutOfRange {
            op,
            offset_bytes,
            len_bytes,
            size_bytes,
        }),
    }
}

/// How to open a disk.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Never use io_uring (forces the portable backend).
    pub force_pread: bool,
    /// Do not try O_DIRECT.
    pub buffered: bool,
}

/// The closed set of disk backends, dispatched without `dyn`.
#[derive(Debug)]
pub enum Device {
    Malloc(MallocDevice),
    Uring(UringDevice),
    Pread(PreadDevice),
    Faulty(Box<FaultyDevice>),
}

macro_rules! dispatch {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Device::Malloc($d) => $e,
            Device::Uring($d) => $e,
            Device::Pread($d) => $e,
            Device::Faulty($d) => $e,
        }
    };
}

impl BlockDevice for Device {
    fn info(&self) -> &DeviceInfo {
        dispatch!(self, d => d.info())
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        dispatch!(self, d => d.read_at(offset_bytes, buf).await)
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<()> {
        dispatch!(self, d => d.write_at(offset_bytes, buf).await)
    }

    async fn flush(&self) -> Result<()> {
        dispatch!(self, d => d.flush().await)
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        dispatch!(self, d => d.write_zeroes(offset_bytes, len_bytes).await)
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<()> {
        dispatch!(self, d => d.unmap(offset_bytes, len_bytes).await)
    }
}

/// Opens the disk named by `uri`.
///
/// `aio://` and plain paths use io_uring when the kernel allows it and the
/// portable backend otherwise; `uring://` requires io_uring.
pub async fn open(uri: &DiskUri, opts: &OpenOptions) -> Result<Device> {
    match uri {
        DiskUri::Malloc { .. } => Ok(Device::Malloc(MallocDevice::new(uri)?)),
        DiskUri::Aio { .. } => {
            if !opts.force_pread {
                match UringDevice::open(uri, opts).await {
                    Ok(d) => return Ok(Device::Uring(d)),
                    Err(BlockDevError::UringUnavailable(e)) => {
                        tracing::warn!(error = %e, "io_uring unavailable, using the portable backend");
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(Device::Pread(PreadDevice::open(uri, opts).await?))
        }
        DiskUri::Uring { .. } => Ok(Device::Uring(UringDevice::open(uri, opts).await?)),
    }
}

/// Parses `uri` and opens it.
pub async fn open_uri(uri: &str, opts: &OpenOptions) -> Result<Device> {
    let parsed: DiskUri = uri.parse()?;
    open(&parsed, opts).await
}
