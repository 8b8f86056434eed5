//! The replica-vs-raw arrangement: one backing file (or device), a pool on
//! it, a thick replica filling it, and the same file opened raw.
//!
//! Layout on the backing disk (default 4 MiB clusters):
//!
//! ```text
//! 0                data_offset                          data_offset + replica size
//! | pool metadata  | replica cluster 0 | cluster 1 | ... | last cluster | slack
//!                  |<-------- raw region == replica's physical range -------->|
//! ```
//!
//! A thick replica on a fresh pool gets the lowest free clusters, in
//! logical order, so its physical range is one contiguous run starting at
//! the pool's data offset. The raw target is driven over exactly that
//! range, so both targets touch the same bytes of the same file; this is
//! checked with marker blocks before any measurement.
//!
//! Both the pool's disk and the raw device are opened through
//! `blockdev::open` with the same [`OpenOptions`] (O_DIRECT unless
//! `buffered`), so they differ only by the replica's translation layer.
//! Each open device has its own io_uring ring thread; the idle one sleeps.
//!
//! A RAM variant ([`Backing::Malloc`]) puts the pool on one malloc disk and
//! drives a second malloc disk of the same size raw: with no disk noise the
//! difference is the replica layer's CPU cost alone.
//!
//! The nexus modes (see [`crate::nexus`]) build one such arrangement per
//! child on a shared [`PoolRegistry`] (`*_in` constructors, each pool with
//! its own name) and release them one by one ([`ReplicaVsRaw::release`]).
//!
//! Threading model: set up and torn down on the caller's runtime; the
//! handles are shared with the benchmark workers through `Arc`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use blockdev::{BlockDevice, Device, DmaBuf, OpenOptions};
use io_engine::pool::{
    CreatePoolArgs, CreateReplicaArgs, PoolRegistry, Replica, ReplicaSelector, ShareProtocol,
};
use pool_format::{Geometry, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES};
use uuid::Uuid;

use crate::{runner::Region, BenchError};

/// Name of the pool `io-bench` creates.
pub const POOL_NAME: &str = "io-bench";
/// Name of the replica `io-bench` creates.
pub const REPLICA_NAME: &str = "io-bench-replica";

/// What the pool and the raw target sit on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// One file or block device, shared by the pool and the raw target.
    File {
        path: PathBuf,
        /// Created by `io-bench` (and removed at teardown).
        created: bool,
    },
    /// Two RAM disks of the same size, one for the pool and one for the
    /// raw target: no disk noise, so the difference is the replica layer's
    /// CPU cost alone.
    Malloc,
}

/// A pool, its replica and the raw view of the same bytes.
pub struct ReplicaVsRaw {
    registry: Arc<PoolRegistry>,
    /// Name of the pool on the backing disk.
    pub pool_name: String,
    pub replica: Arc<Replica>,
    pub replica_uuid: Uuid,
    pub raw: Arc<Device>,
    /// Where the replica's clusters are on the backing disk.
    pub raw_region: Region,
    /// The whole replica.
    pub replica_region: Region,
    pub disk_uri: String,
    pub cluster_size_bytes: u64,
    pub backing: Backing,
}

fn pool_err(source: io_engine::pool::PoolError) -> BenchError {
    BenchError::Pool(source)
}

/// Smallest disk size whose pool holds `data_bytes` (a multiple of `cs`).
pub(crate) fn backing_size(data_bytes: u64, block_size: u32, cs: u64) -> Result<u64, BenchError> {
    let mut disk = data_bytes + cs;
    for _ in 0..64 {
        if let Ok(g) = Geometry::new(disk, block_size, cs, DEFAULT_RT_PAGES) {
            if g.capacity_bytes() >= data_bytes {
                return Ok(disk);
            }
        }
        disk += cs;
    }
    Err(BenchError::Config(format!(
        "cannot size a pool for {data_bytes} bytes of data"
    )))
}

/// The pieces `prepare_on` builds.
struct Parts {
    replica: Arc<Replica>,
    replica_uuid: Uuid,
    raw: Arc<Device>,
    raw_region: Region,
    replica_region: Region,
    cluster_size_bytes: u64,
}

impl ReplicaVsRaw {
    /// Whether the raw target reads and writes the replica's own bytes
    /// (so filling one fills the other).
    pub fn shares_storage(&self) -> bool {
        matches!(self.backing, Backing::File { .. })
    }

    /// Creates (or reuses) `path`, a pool on it and a thick replica of up
    /// to `size_bytes` (rounded up to whole clusters), and opens the same
    /// file raw.
    ///
    /// A path that does not exist is created just large enough and removed
    /// by [`Self::teardown`]. An existing path is used as it is (its
    /// contents are overwritten); a pool named [`POOL_NAME`] on it is
    /// imported and its old benchmark replica replaced, any other pool is
    /// refused.
    pub async fn prepare_file(
        path: &Path,
        size_bytes: u64,
        block_size: u32,
        opts: &OpenOptions,
    ) -> Result<Self, BenchError> {
        let registry = Arc::new(PoolRegistry::new(opts.clone()));
        Self::prepare_file_in(&registry, POOL_NAME, path, size_bytes, block_size, opts).await
    }

    /// [`Self::prepare_file`] with a pool named `pool_name` in `registry`
    /// (which may hold other pools).
    pub async fn prepare_file_in(
        registry: &Arc<PoolRegistry>,
        pool_name: &str,
        path: &Path,
        size_bytes: u64,
        block_size: u32,
        opts: &OpenOptions,
    ) -> Result<Self, BenchError> {
        let cs = DEFAULT_CLUSTER_SIZE;
        let want = size_bytes.div_ceil(cs).max(1) * cs;
        let created = !path.exists();
        let file_err = |source| BenchError::File {
            path: path.to_path_buf(),
            source,
        };
        if created {
            let len = backing_size(want, block_size, cs)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(file_err)?;
            file.set_len(len).map_err(file_err)?;
        }
        let abs = std::fs::canonicalize(path).map_err(file_err)?;
        let disk_uri = format!("aio://{}?blk_size={block_size}", abs.display());
        let on = On {
            registry,
            pool_name,
            disk_uri: &disk_uri,
            raw_uri: &disk_uri,
        };
        match on.prepare(want, block_size, opts, true).await {
            Ok(p) => Ok(Self::assemble(
                registry,
                pool_name,
                p,
                disk_uri,
                Backing::File { path: abs, created },
            )),
            Err(e) => {
                if created {
                    let _ = std::fs::remove_file(&abs);
                }
                Err(e)
            }
        }
    }

    /// A pool and replica on one RAM disk, and a second RAM disk of the
    /// same size as the raw target.
    pub async fn prepare_malloc(
        size_bytes: u64,
        block_size: u32,
        opts: &OpenOptions,
    ) -> Result<Self, BenchError> {
        let registry = Arc::new(PoolRegistry::new(opts.clone()));
        Self::prepare_malloc_in(&registry, POOL_NAME, size_bytes, block_size, opts).await
    }

    /// [`Self::prepare_malloc`] with a pool named `pool_name` in
    /// `registry`; the RAM disks are `<pool_name>-pool` and
    /// `<pool_name>-raw`. A RAM disk costs memory only where it is
    /// written, so an unused raw disk is free.
    pub async fn prepare_malloc_in(
        registry: &Arc<PoolRegistry>,
        pool_name: &str,
        size_bytes: u64,
        block_size: u32,
        opts: &OpenOptions,
    ) -> Result<Self, BenchError> {
        let cs = DEFAULT_CLUSTER_SIZE;
        let want = size_bytes.div_ceil(cs).max(1) * cs;
        let size_mb = backing_size(want, block_size, cs)?.div_ceil(1 << 20);
        let disk_uri =
            format!("malloc:///{pool_name}-pool?size_mb={size_mb}&blk_size={block_size}");
        let raw_uri = format!("malloc:///{pool_name}-raw?size_mb={size_mb}&blk_size={block_size}");
        let on = On {
            registry,
            pool_name,
            disk_uri: &disk_uri,
            raw_uri: &raw_uri,
        };
        let p = on.prepare(want, block_size, opts, false).await?;
        Ok(Self::assemble(
            registry,
            pool_name,
            p,
            disk_uri,
            Backing::Malloc,
        ))
    }

    fn assemble(
        registry: &Arc<PoolRegistry>,
        pool_name: &str,
        p: Parts,
        disk_uri: String,
        backing: Backing,
    ) -> Self {
        ReplicaVsRaw {
            registry: Arc::clone(registry),
            pool_name: pool_name.to_string(),
            replica: p.replica,
            replica_uuid: p.replica_uuid,
            raw: p.raw,
            raw_region: p.raw_region,
            replica_region: p.replica_region,
            disk_uri,
            cluster_size_bytes: p.cluster_size_bytes,
            backing,
        }
    }

    /// The pool registry the replica's pool is in.
    pub fn registry(&self) -> &Arc<PoolRegistry> {
        &self.registry
    }

    /// The URI a nexus opens this replica by (`bdev:///<uuid>?uuid=<uuid>`).
    pub fn child_uri(&self) -> String {
        format!("bdev:///{0}?uuid={0}", self.replica_uuid)
    }

    /// Destroys the replica and the pool, removes the backing file if
    /// [`Self::prepare_file`] created it (unless `keep_file`), and shuts the
    /// pool registry down.
    pub async fn teardown(self, keep_file: bool) -> Result<(), BenchError> {
        let registry = Arc::clone(&self.registry);
        let released = self.release(keep_file).await;
        registry.shutdown().await;
        released
    }

    /// [`Self::teardown`] without shutting the registry down (other pools
    /// in it stay usable).
    pub async fn release(self, keep_file: bool) -> Result<(), BenchError> {
        let ReplicaVsRaw {
            registry,
            pool_name,
            replica,
            raw,
            backing,
            ..
        } = self;
        drop(replica);
        drop(raw);
        registry.destroy_pool(&pool_name).await.map_err(pool_err)?;
        if let Backing::File {
            path,
            created: true,
        } = backing
        {
            if !keep_file {
                std::fs::remove_file(&path).map_err(|source| BenchError::File { path, source })?;
            }
        }
        Ok(())
    }
}

/// Where [`On::prepare`] puts a pool: its registry, name and disk, and the
/// URI of the raw target.
struct On<'a> {
    registry: &'a PoolRegistry,
    pool_name: &'a str,
    disk_uri: &'a str,
    raw_uri: &'a str,
}

impl On<'_> {
    async fn prepare(
        &self,
        want: u64,
        block_size: u32,
        opts: &OpenOptions,
        verify: bool,
    ) -> Result<Parts, BenchError> {
        let On {
            registry,
            pool_name,
            disk_uri,
            raw_uri,
        } = *self;
        registry
            .create_pool(CreatePoolArgs {
                name: pool_name.to_string(),
                uuid: None,
                disks: vec![disk_uri.to_string()],
                cluster_size_bytes: None,
            })
            .await
            .map_err(pool_err)?;
        let old = ReplicaSelector::Name {
            pool: pool_name.to_string(),
            name: REPLICA_NAME.to_string(),
        };
        if registry.replica(&old).is_ok() {
            registry.destroy_replica(&old).await.map_err(pool_err)?;
        }
        // Read after the old replica is gone, so its clusters count as free.
        let pool = registry.pool(pool_name).map_err(pool_err)?;
        let cs = pool.cluster_size_bytes;
        let free = pool.capacity_bytes.saturating_sub(pool.used_bytes);
        let size = want.min(free / cs * cs);
        if size == 0 {
            return Err(BenchError::Config(format!(
                "pool on {disk_uri} has no free cluster for the replica"
            )));
        }
        let info = registry
            .create_replica(CreateReplicaArgs {
                pool: pool_name.to_string(),
                name: REPLICA_NAME.to_string(),
                uuid: Uuid::new_v4(),
                size_bytes: size,
                thin: false,
                share: ShareProtocol::None,
                allowed_hosts: Vec::new(),
            })
            .await
            .map_err(pool_err)?;
        let replica = registry.open_replica(&info.uuid).map_err(pool_err)?;
        let raw = Arc::new(blockdev::open_uri(raw_uri, opts).await.map_err(|source| {
            BenchError::Open {
                uri: raw_uri.to_string(),
                source,
            }
        })?);
        let geometry = Geometry::new(raw.info().size_bytes(), block_size, cs, DEFAULT_RT_PAGES)
            .map_err(|e| BenchError::Config(format!("pool geometry of {disk_uri}: {e}")))?;
        let raw_region = Region {
            offset_bytes: geometry.data_offset_bytes,
            len_bytes: info.size_bytes,
        };
        let replica_region = Region {
            offset_bytes: 0,
            len_bytes: info.size_bytes,
        };
        if verify {
            verify_layout(&replica, &raw, raw_region, cs).await?;
        }
        Ok(Parts {
            replica,
            replica_uuid: info.uuid,
            raw,
            raw_region,
            replica_region,
            cluster_size_bytes: cs,
        })
    }
}

/// Checks that logical offset `x` of the replica is raw offset
/// `region.offset_bytes + x`, at the first, a middle and the last cluster.
async fn verify_layout(
    replica: &Replica,
    raw: &Device,
    region: Region,
    cs: u64,
) -> Result<(), BenchError> {
    let bs = u64::from(raw.info().block_size);
    let clusters = region.len_bytes / cs;
    let mut probes = vec![0, (clusters / 2) * cs + bs, region.len_bytes - bs];
    probes.dedup();
    let io = |op: &'static str, offset_bytes: u64| {
        move |source| BenchError::Io {
            op,
            offset_bytes,
            source,
        }
    };
    for (i, logical) in probes.into_iter().enumerate() {
        let mut marker = DmaBuf::new(bs as usize);
        for (j, b) in marker.iter_mut().enumerate() {
            *b = (j as u8) ^ 0x5a ^ (i as u8);
        }
        replica
            .write_at(logical, &marker)
            .await
            .map_err(io("write", logical))?;
        let physical = region.offset_bytes + logical;
        let mut back = DmaBuf::new(bs as usize);
        raw.read_at(physical, &mut back)
            .await
            .map_err(io("read", physical))?;
        if back[..] != marker[..] {
            return Err(BenchError::Layout(format!(
                "replica offset {logical} is not at raw offset {physical}: the replica's clusters are not one contiguous run after the metadata"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_size_fits_the_data() {
        for (data, bs) in [(4u64 << 20, 512u32), (1 << 30, 4096), (64 << 20, 512)] {
            let len = backing_size(data, bs, DEFAULT_CLUSTER_SIZE).unwrap();
            let g = Geometry::new(len, bs, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES).unwrap();
            assert!(g.capacity_bytes() >= data);
            // Not wildly oversized: metadata plus at most a few clusters.
            assert!(len <= data + 4 * DEFAULT_CLUSTER_SIZE, "{len} for {data}");
        }
    }
}
