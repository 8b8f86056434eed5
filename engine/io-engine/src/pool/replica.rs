//! Replicas: a range of a pool's clusters exposed as a block device.
//!
//! I/O path (no allocation per I/O, no info logs, no pool-wide lock unless a
//! thin replica touches an unallocated cluster): an I/O is cut at cluster
//! boundaries, each piece is looked up in the replica's cluster map (one
//! atomic per logical cluster, 0 = unallocated, else physical index + 1) and
//! sent to the pool's disk at the translated offset. Reads of unallocated
//! clusters return zeroes; writes to them first allocate, zero and commit a
//! cluster under the pool's metadata lock. Each completed read and write
//! is counted for the replica (per-thread counters, two clock reads per
//! I/O shared with a nexus above; its pool's figures are the sum of its
//! replicas'; see [`crate::stats`]).

use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    Arc,
};

use blockdev::{check_io, Backend, BlockDevError, BlockDevice, DeviceInfo};
use parking_lot::RwLock;
use pool_format::ReplicaRecord;
use uuid::Uuid;

use crate::stats::{IoSpan, IoStats, IoTimer};

use super::{
    disk::{CoreRef, PoolCore},
    PoolError, ReplicaInfo, ShareProtocol,
};

/// State of a replica shared by its pool and every open handle.
pub(crate) struct ReplicaState {
    pub slot: u32,
    pub uuid: Uuid,
    pub record: RwLock<ReplicaRecord>,
    /// Logical cluster -> physical cluster + 1 (0 = unallocated).
    pub map: RwLock<Vec<AtomicU32>>,
    pub allocated: AtomicU64,
    pub destroyed: AtomicBool,
    /// Reads and writes of this replica (see [`crate::stats`]).
    pub io: IoStats,
}

impl ReplicaState {
    pub(crate) fn new(record: ReplicaRecord, clusters: &[(u32, u32)], cluster_size: u64) -> Self {
        let n = record.clusters(cluster_size) as usize;
        let map: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        for (physical, logical) in clusters {
            if let Some(slot) = map.get(*logical as usize) {
                slot.store(physical + 1, Ordering::Relaxed);
            }
        }
        ReplicaState {
            slot: record.slot,
            uuid: record.uuid,
            allocated: AtomicU64::new(clusters.len() as u64),
            record: RwLock::new(record),
            map: RwLock::new(map),
            destroyed: AtomicBool::new(false),
            io: IoStats::new(),
        }
    }

    pub(crate) fn info(&self, core: &PoolCore) -> ReplicaInfo {
        let r = self.record.read();
        ReplicaInfo {
            name: r.name.clone(),
            uuid: r.uuid,
            pool_name: core.name.clone(),
            pool_uuid: core.uuid,
            size_bytes: r.size_bytes,
            thin: r.thin,
            allocated_bytes: self.allocated.load(Ordering::Acquire)
                * core.geometry.cluster_size_bytes,
            share: match r.share {
                pool_format::Share::None => ShareProtocol::None,
                pool_format::Share::Nvmf => ShareProtocol::Nvmf,
            },
            uri: format!("bdev:///{}?uuid={}", r.uuid, r.uuid),
            allowed_hosts: r.allowed_hosts.clone(),
        }
    }
}

/// An open replica: a block device over its pool's disk.
pub struct Replica {
    core: CoreRef,
    state: Arc<ReplicaState>,
    info: DeviceInfo,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("uuid", &self.state.uuid)
            .field("info", &self.info)
            .finish()
    }
}

/// One piece of an I/O, within a single cluster.
struct Piece {
    logical: u32,
    offset_in_cluster: u64,
    buf_start: usize,
    len: usize,
}

impl Replica {
    pub(crate) fn new(core: CoreRef, state: Arc<ReplicaState>) -> Self {
        let block_size = core.geometry.block_size;
        let size = state.record.read().size_bytes;
        let info = DeviceInfo {
            uri: format!("bdev:///{}", state.uuid),
            block_size,
            num_blocks: size / u64::from(block_size),
            backend: core.dev.info().backend,
            direct_io: core.dev.info().direct_io,
        };
        Replica { core, state, info }
    }

    /// A read timed from `timer` (started by the caller: a nexus hands
    /// down its own), counted for the replica (its pool adds its replicas
    /// up when read); the span is handed back so the caller counts the
    /// same one without reading the clock again.
    pub(crate) async fn read_timed(
        &self,
        offset_bytes: u64,
        buf: &mut [u8],
        timer: IoTimer,
    ) -> Result<Option<IoSpan>, BlockDevError> {
        self.read_pieces(offset_bytes, buf).await?;
        let span = timer.stop();
        let bytes = buf.len() as u64;
        self.state.io.read_done(span, bytes);
        Ok(span)
    }

    /// A write timed from `timer`, as [`Replica::read_timed`].
    pub(crate) async fn write_timed(
        &self,
        offset_bytes: u64,
        buf: &[u8],
        timer: IoTimer,
    ) -> Result<Option<IoSpan>, BlockDevError> {
        self.write_pieces(offset_bytes, buf).await?;
        let span = timer.stop();
        let bytes = buf.len() as u64;
        self.state.io.write_done(span, bytes);
        Ok(span)
    }

    /// The replica's uuid.
    pub fn uuid(&self) -> Uuid {
        self.state.uuid
    }

    /// The backend of the pool's disk (for reports).
    pub fn disk_backend(&self) -> Backend {
        self.core.dev.info().backend
    }

    fn pieces(&self, offset: u64, len: usize) -> impl Iterator<Item = Piece> {
        let cs = self.core.geometry.cluster_size_bytes;
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= len {
                return None;
            }
            let abs = offset + pos as u64;
            let offset_in_cluster = abs % cs;
            let n = ((cs - offset_in_cluster) as usize).min(len - pos);
            let p = Piece {
                logical: (abs / cs) as u32,
                offset_in_cluster,
                buf_start: pos,
                len: n,
            };
            pos += n;
            Some(p)
        })
    }

    fn lookup(&self, logical: u32) -> u32 {
        self.state
            .map
            .read()
            .get(logical as usize)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    fn live(&self) -> Result<(), BlockDevError> {
        if self.state.destroyed.load(Ordering::Acquire) {
            return Err(BlockDevError::Closed);
        }
        Ok(())
    }

    fn io_err(&self, e: BlockDevError) -> BlockDevError {
        self.core.note_io_error();
        e
    }

    fn physical_offset(&self, physical_plus_one: u32, p: &Piece) -> u64 {
        self.core.geometry.cluster_offset(physical_plus_one - 1) + p.offset_in_cluster
    }

    async fn read_pieces(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), BlockDevError> {
        check_io(&self.info, "read", offset_bytes, buf.len() as u64)?;
        self.live()?;
        for p in self.pieces(offset_bytes, buf.len()) {
            let dst = &mut buf[p.buf_start..p.buf_start + p.len];
            match self.lookup(p.logical) {
                0 => dst.fill(0),
                phys => self
                    .core
                    .dev
                    .read_at(self.physical_offset(phys, &p), dst)
                    .await
                    .map_err(|e| self.io_err(e))?,
            }
        }
        Ok(())
    }

    async fn write_pieces(&self, offset_bytes: u64, buf: &[u8]) -> Result<(), BlockDevError> {
        check_io(&self.info, "write", offset_bytes, buf.len() as u64)?;
        self.live()?;
        for p in self.pieces(offset_bytes, buf.len()) {
            let phys = match self.lookup(p.logical) {
                0 => self.ensure_allocated(p.logical, offset_bytes).await?,
                phys => phys,
            };
            self.core
                .dev
                .write_at(
                    self.physical_offset(phys, &p),
                    &buf[p.buf_start..p.buf_start + p.len],
                )
                .await
                .map_err(|e| self.io_err(e))?;
        }
        Ok(())
    }

    /// Returns the physical cluster + 1 backing `logical`, allocating it
    /// when the replica is thin.
    async fn ensure_allocated(&self, logical: u32, offset: u64) -> Result<u32, BlockDevError> {
        let mut st = self.core.meta.lock().await;
        let cur = self.lookup(logical);
        if cur != 0 {
            return Ok(cur);
        }
        self.live()?;
        match self
            .core
            .allocate_cluster(&mut st, self.state.slot, logical)
            .await
        {
            Ok(physical) => {
                if let Some(slot) = self.state.map.read().get(logical as usize) {
                    slot.store(physical + 1, Ordering::Release);
                }
                self.state.allocated.fetch_add(1, Ordering::AcqRel);
                Ok(physical + 1)
            }
            Err(PoolError::NoSpace { .. }) => Err(BlockDevError::Io {
                op: "write",
                offset_bytes: offset,
                source: std::io::Error::from_raw_os_error(ENOSPC),
            }),
            Err(e) => Err(BlockDevError::Io {
                op: "write",
                offset_bytes: offset,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// Linux errno for "no space left on device", reported by thin writes
/// that cannot get a cluster.
const ENOSPC: i32 = 28;

impl BlockDevice for Replica {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    async fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), BlockDevError> {
        self.read_timed(offset_bytes, buf, self.state.io.start_read())
            .await
            .map(drop)
    }

    async fn write_at(&self, offset_bytes: u64, buf: &[u8]) -> Result<(), BlockDevError> {
        self.write_timed(offset_bytes, buf, self.state.io.start_write())
            .await
            .map(drop)
    }

    async fn flush(&self) -> Result<(), BlockDevError> {
        self.live()?;
        self.core.dev.flush().await.map_err(|e| self.io_err(e))
    }

    async fn write_zeroes(&self, offset_bytes: u64, len_bytes: u64) -> Result<(), BlockDevError> {
        check_io(&self.info, "write_zeroes", offset_bytes, len_bytes)?;
        self.live()?;
        let len = usize::try_from(len_bytes).map_err(|_| BlockDevError::OutOfRange {
            op: "write_zeroes",
            offset_bytes,
            len_bytes,
            size_bytes: self.info.size_bytes(),
        })?;
        for p in self.pieces(offset_bytes, len) {
            // Unallocated clusters already read as zeroes.
            let phys = self.lookup(p.logical);
            if phys != 0 {
                self.core
                    .dev
                    .write_zeroes(self.physical_offset(phys, &p), p.len as u64)
                    .await
                    .map_err(|e| self.io_err(e))?;
            }
        }
        Ok(())
    }

    async fn unmap(&self, offset_bytes: u64, len_bytes: u64) -> Result<(), BlockDevError> {
        // Clusters stay allocated: unmapped ranges read back as zeroes.
        self.write_zeroes(offset_bytes, len_bytes).await
    }
}
