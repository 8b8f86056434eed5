//! A remote namespace as a [`BlockDevice`].
//!
//! Purpose: [`Namespace`] turns block-layer calls into NVMe I/O commands
//! on its [`Controller`]: Read/Write split at MDTS (and at the host's own
//! 1 MiB cap and the 16-bit NLB limit), Flush, Write Zeroes, and Dataset
//! Management (deallocate) for unmap.
//!
//! Invariants:
//! - alignment and range are checked with [`blockdev::check_io`] before
//!   anything is sent;
//! - every failure is a [`BlockDevError::Io`] whose source names the NVMe
//!   status ("LBA out of range", "reservation conflict") or the transport
//!   condition ("controller ... lost: reconnect timed out after N ms");
//! - `unmap` leaves the range reading back as zeroes, as every blockdev
//!   backend does: deallocate is followed by Write Zeroes unless the
//!   namespace reports that deallocated blocks read as zeroes.
//!
//! Hot path (read/write): no allocation and no copy on the host side per
//! write (the data goes to the socket from the caller's buffer), one copy
//! per read (from the receive buffer into the caller's); no logs; no
//! global locks.
//!
//! Threading model: `Send + Sync`; any number of concurrent calls.

use std::io;

use blockdev::{check_io, Backend, BlockDevError, BlockDevice, DeviceInfo};
use nvmf::nvme::io_opc;

use crate::{
    cmd,
    controller::{check, Controller, MAX_IO_BYTES},
    error::HostError,
    queue::Data,
    split::{max_blocks_per_command, Chunks, MAX_NLB_PER_COMMAND},
};

/// Largest range per DSM range descriptor, in blocks.
const DSM_MAX_RANGE_BLOCKS: u64 = u32::MAX as u64;

/// One namespace of a remote controller.
#[derive(Debug, Clone)]
pub struct Namespace {
    ctrl: Controller,
    nsid: u32,
    info: DeviceInfo,
    max_blocks: u32,
    /// Deallocated blocks read back as zeroes (DLFEAT read behaviour 1).
    dealloc_reads_zeroes: bool,
}

impl Controller {
    /// Opens namespace `nsid` (Identify Namespace).
    pub async fn namespace(&self, nsid: u32) -> Result<Namespace, HostError> {
        let id = self.identify_namespace(nsid).await?;
        let info = self.info();
        let opts = self.options();
        let uri = if nsid == 1 {
            format!("nvmf://{}/{}", opts.addr, opts.subnqn)
        } else {
            format!("nvmf://{}/{}#nsid={nsid}", opts.addr, opts.subnqn)
        };
        Ok(Namespace {
            ctrl: self.clone(),
            nsid,
            info: DeviceInfo {
                uri,
                block_size: id.block_size,
                num_blocks: id.nsze,
                backend: Backend::Nvmf,
                direct_io: true,
            },
            max_blocks: max_blocks_per_command(info.mdts_bytes, MAX_IO_BYTES, id.block_size),
            dealloc_reads_zeroes: id.dlfeat & 0x7 == 1,
        })
    }
}

impl Namespace {
    /// Namespace id.
    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    /// The controller serving this namespace.
    pub fn controller(&self) -> &Controller {
        &self.ctrl
    }

    /// Most blocks one Read/Write command carries.
    pub fn max_blocks_per_command(&self) -> u32 {
        self.max_blocks
    }

    fn block_shift(&self) -> u32 {
        self.info.block_size.trailing_zeros()
    }

    async fn zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<(), HostError> {
        let shift = self.block_shift();
        let ident = &self.ctrl.info().identity;
        if !ident.supports_write_zeroes() {
            return self.zeroes_by_writing(offset_bytes, len_bytes).await;
        }
        for c in Chunks::new(
            offset_bytes >> shift,
            len_bytes >> shift,
            MAX_NLB_PER_COMMAND,
        ) {
            let comp = self
                .ctrl
                .submit_io(
                    "write zeroes",
                    cmd::write_zeroes(self.nsid, c.slba, c.nlb),
                    Data::None,
                )
                .await?;
            check(comp, "write zeroes")?;
        }
        Ok(())
    }

    /// Fallback for controllers without Write Zeroes.
    async fn zeroes_by_writing(&self, offset_bytes: u64, len_bytes: u64) -> Result<(), HostError> {
        let shift = self.block_shift();
        let zero = vec![0u8; (u64::from(self.max_blocks) << shift) as usize];
        for c in Chunks::new(offset_bytes >> shift, len_bytes >> shift, self.max_blocks) {
            let n = (u64::from(c.nlb) << shift) as usize;
            let comp = self
                .ctrl
                .submit_io(
                    "write",
                    cmd::rw(io_opc::WRITE, self.nsid, c.slba, c.nlb),
                    Data::Write(&zero[..n]),
                )
                .await?;
            check(comp, "write")?;
        }
        Ok(())
    }

    async fn deallocate(&self, offset_bytes: u64, len_bytes: u64) -> Result<(), HostError> {
        let shift = self.block_shift();
        let ranges: Vec<_> = Chunks::new(
            offset_bytes >> shift,
            len_bytes >> shift,
            DSM_MAX_RANGE_BLOCKS as u32,
        )
        .collect();
        for group in ranges.chunks(cmd::DSM_MAX_RANGES) {
            let mut data = Vec::with_capacity(group.len() * cmd::DSM_RANGE_BYTES);
            for r in group {
                cmd::push_dsm_range(&mut data, r.slba, r.nlb);
            }
            let comp = self
                .ctrl
                .submit_io(
                    "dataset management",
                    cmd::dsm_deallocate(self.nsid, group.len()),
                    Data::Write(&data),
                )
                .await?;
            check(comp, "dataset management (deallocate)")?;
        }
        Ok(())
    }
}

fn io_err(op: &'static str, offset_bytes: u64, e: HostError) -> BlockDevError {
    BlockDevError::Io {
        op,
        offset_bytes,
        source: io::Error::other(e),
    }
}

impl BlockDevice for Namespace {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> blockdev::Result<()> {
        check_io(&self.info, "read", offset_bytes, buf.len() as u64)?;
        let shift = self.block_shift();
        for c in Chunks::new(
            offset_bytes >> shift,
            (buf.len() as u64) >> shift,
            self.max_blocks,
        ) {
            let start = (c.index_blocks << shift) as usize;
            let end = start + ((c.nlb as usize) << shift);
            let piece = &mut buf[start..end];
            self.ctrl
                .submit_io(
                    "read",
                    cmd::rw(io_opc::READ, self.nsid, c.slba, c.nlb),
                    Data::Read(piece),
                )
                .await
                .and_then(|comp| check(comp, "read"))
                .map_err(|e| io_err("read", c.slba << shift, e))?;
        }
        Ok(())
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> blockdev::Result<()> {
        check_io(&self.info, "write", offset_bytes, buf.len() as u64)?;
        let shift = self.block_shift();
        for c in Chunks::new(
            offset_bytes >> shift,
            (buf.len() as u64) >> shift,
            self.max_blocks,
        ) {
            let start = (c.index_blocks << shift) as usize;
            let end = start + ((c.nlb as usize) << shift);
            self.ctrl
                .submit_io(
                    "write",
                    cmd::rw(io_opc::WRITE, self.nsid, c.slba, c.nlb),
                    Data::Write(&buf[start..end]),
                )
                .await
                .and_then(|comp| check(comp, "write"))
                .map_err(|e| io_err("write", c.slba << shift, e))?;
        }
        Ok(())
    }

    async fn flush(&self) -> blockdev::Result<()> {
        self.ctrl
            .submit_io("flush", cmd::flush(self.nsid), Data::None)
            .await
            .and_then(|comp| check(comp, "flush"))
            .map(|_| ())
            .map_err(|e| io_err("flush", 0, e))
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        check_io(&self.info, "write_zeroes", offset_bytes, len_bytes)?;
        self.zeroes(offset_bytes, len_bytes)
            .await
            .map_err(|e| io_err("write_zeroes", offset_bytes, e))
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> blockdev::Result<()> {
        check_io(&self.info, "unmap", offset_bytes, len_bytes)?;
        if len_bytes == 0 {
            return Ok(());
        }
        let ident = &self.ctrl.info().identity;
        if ident.supports_dsm() {
            self.deallocate(offset_bytes, len_bytes)
                .await
                .map_err(|e| io_err("unmap", offset_bytes, e))?;
            if self.dealloc_reads_zeroes {
                return Ok(());
            }
        }
        self.zeroes(offset_bytes, len_bytes)
            .await
            .map_err(|e| io_err("unmap", offset_bytes, e))
    }
}
