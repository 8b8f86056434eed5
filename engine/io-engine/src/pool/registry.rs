//! The pools of one engine and the management operations on them.
//!
//! Every management operation (pool and replica create, destroy, resize,
//! import, export) is serialised by one async lock: they are rare, and it
//! makes uniqueness checks across pools race-free. Lists read a snapshot
//! without waiting for that lock.
//!
//! This module holds the pools and their operations; `replicas` the
//! replica operations.

use std::{collections::HashMap, path::Path, sync::Arc};

use blockdev::{BlockDevice, DiskUri, OpenOptions};
use parking_lot::RwLock;
use pool_format::{Geometry, Owner, PoolMeta, Share, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES};
use tracing::{info, warn};
use uuid::Uuid;

use crate::stats::{tick_us, EntityIoStats, IoCounts};

use super::{
    disk::{probe, wipe_headers, CoreRef, PoolCore, Probe},
    replica::ReplicaState,
    CheckReport, CreatePoolArgs, PoolError, PoolInfo, ShareProtocol,
};

mod replicas;

/// One imported pool.
struct Pool {
    core: CoreRef,
    /// Identity of the disk, to refuse a second pool on it.
    disk_key: String,
    replicas: RwLock<HashMap<Uuid, Arc<ReplicaState>>>,
    /// The I/O counters of the replicas this pool destroyed (folded in
    /// under the `replicas` write lock, so a reader holding the read lock
    /// counts every replica exactly once).
    retired_io: parking_lot::Mutex<IoCounts>,
}

impl Pool {
    /// The pool's I/O counters: its replicas' and those of the replicas it
    /// destroyed (nothing is counted per pool on the I/O path).
    fn io_counts(&self) -> IoCounts {
        let replicas = self.replicas.read();
        let mut c = *self.retired_io.lock();
        for r in replicas.values() {
            c.add(&r.io.counts());
        }
        c
    }

    /// Forgets a destroyed replica, keeping its I/O in the pool's counters.
    fn retire(&self, uuid: &Uuid) {
        let mut replicas = self.replicas.write();
        if let Some(r) = replicas.remove(uuid) {
            self.retired_io.lock().add(&r.io.counts());
        }
    }

    fn info(&self) -> PoolInfo {
        use std::sync::atomic::Ordering::Acquire;
        let c = &self.core;
        PoolInfo {
            name: c.name.clone(),
            uuid: c.uuid,
            disks: vec![c.disk_uri.clone()],
            state: c.state(),
            capacity_bytes: c.geometry.capacity_bytes(),
            used_bytes: c.used_clusters.load(Acquire) * c.geometry.cluster_size_bytes,
            committed_bytes: c.committed_bytes.load(Acquire),
            cluster_size_bytes: c.geometry.cluster_size_bytes,
            replica_count: c.replica_count.load(Acquire),
        }
    }

    fn find_replica(&self, name: &str) -> Option<Arc<ReplicaState>> {
        self.replicas
            .read()
            .values()
            .find(|r| r.record.read().name == name)
            .cloned()
    }
}

/// All pools of this engine.
pub struct PoolRegistry {
    opts: OpenOptions,
    pools: RwLock<Vec<Arc<Pool>>>,
    op_lock: tokio::sync::Mutex<()>,
}

fn check_name(what: &str, name: &str) -> Result<(), PoolError> {
    if name.is_empty() {
        return Err(PoolError::InvalidArgument(format!("{what} name is empty")));
    }
    if name.len() > pool_format::MAX_NAME_LEN {
        return Err(PoolError::InvalidArgument(format!(
            "{what} name is longer than {} bytes",
            pool_format::MAX_NAME_LEN
        )));
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(PoolError::InvalidArgument(format!(
            "{what} name '{}' contains '/' or control characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

fn check_hosts(hosts: &[String]) -> Result<(), PoolError> {
    if hosts.len() > pool_format::MAX_ALLOWED_HOSTS {
        return Err(PoolError::InvalidArgument(format!(
            "at most {} allowed hosts",
            pool_format::MAX_ALLOWED_HOSTS
        )));
    }
    for h in hosts {
        if !h.starts_with("nqn.")
            || h.len() > pool_format::MAX_NQN_LEN
            || h.chars().any(char::is_control)
        {
            return Err(PoolError::InvalidArgument(format!(
                "allowed host '{}' is not an NQN (nqn.*, at most {} bytes)",
                h.escape_debug(),
                pool_format::MAX_NQN_LEN
            )));
        }
    }
    Ok(())
}

/// A stable identity for a disk, whichever URI names it.
fn disk_key(uri: &DiskUri) -> String {
    match uri {
        DiskUri::Malloc { name, .. } => format!("malloc:{name}"),
        other => {
            let p = other.path().unwrap_or(Path::new(""));
            let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            format!("path:{}", canon.display())
        }
    }
}

fn share_to_format(s: ShareProtocol) -> Share {
    match s {
        ShareProtocol::None => Share::None,
        ShareProtocol::Nvmf => Share::Nvmf,
    }
}

impl PoolRegistry {
    pub fn new(opts: OpenOptions) -> Self {
        PoolRegistry {
            opts,
            pools: RwLock::new(Vec::new()),
            op_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn find_pool(&self, name_or_uuid: &str) -> Option<Arc<Pool>> {
        let pools = self.pools.read();
        pools
            .iter()
            .find(|p| p.core.name == name_or_uuid)
            .or_else(|| {
                Uuid::parse_str(name_or_uuid)
                    .ok()
                    .and_then(|u| pools.iter().find(|p| p.core.uuid == u))
            })
            .cloned()
    }

    fn get_pool(&self, name_or_uuid: &str) -> Result<Arc<Pool>, PoolError> {
        self.find_pool(name_or_uuid)
            .ok_or_else(|| PoolError::PoolNotFound(name_or_uuid.to_string()))
    }

    /// Creates a pool, or imports it when the disk already holds a pool of
    /// that name; returns the existing pool when it is already imported on
    /// the same disk.
    pub async fn create_pool(&self, args: CreatePoolArgs) -> Result<PoolInfo, PoolError> {
        self.create_or_import(args, true).await
    }

    /// Imports the pool the disk holds; fails when the disk holds no pool.
    pub async fn import_pool(&self, args: CreatePoolArgs) -> Result<PoolInfo, PoolError> {
        self.create_or_import(args, false).await
    }

    /// Creates or imports a pool on an already opened device, which then
    /// stands for the disk named in `args` (fault-injection drills wrap a
    /// disk in a [`blockdev::FaultyDevice`] this way).
    pub async fn create_pool_on(
        &self,
        args: CreatePoolArgs,
        dev: blockdev::Device,
    ) -> Result<PoolInfo, PoolError> {
        self.create_or_import_on(args, true, Some(dev)).await
    }

    async fn create_or_import(
        &self,
        args: CreatePoolArgs,
        may_create: bool,
    ) -> Result<PoolInfo, PoolError> {
        self.create_or_import_on(args, may_create, None).await
    }

    async fn create_or_import_on(
        &self,
        args: CreatePoolArgs,
        may_create: bool,
        dev: Option<blockdev::Device>,
    ) -> Result<PoolInfo, PoolError> {
        check_name("pool", &args.name)?;
        let [disk] = args.disks.as_slice() else {
            return Err(PoolError::InvalidArgument(format!(
                "a pool takes exactly one disk, {} given",
                args.disks.len()
            )));
        };
        let uri: DiskUri = disk.parse().map_err(|e| PoolError::Disk {
            disk: disk.clone(),
            source: blockdev::BlockDevError::Uri(e),
        })?;
        let cluster_size = args.cluster_size_bytes.unwrap_or(DEFAULT_CLUSTER_SIZE);
        if !cluster_size.is_power_of_two()
            || !(pool_format::MIN_CLUSTER_SIZE..=pool_format::MAX_CLUSTER_SIZE)
                .contains(&cluster_size)
        {
            return Err(PoolError::InvalidArgument(format!(
                "cluster size must be a power of two between {} and {} bytes, got {cluster_size}",
                pool_format::MIN_CLUSTER_SIZE,
                pool_format::MAX_CLUSTER_SIZE
            )));
        }
        let key = disk_key(&uri);
        let _guard = self.op_lock.lock().await;
        if let Some(p) = self.find_pool(&args.name) {
            if p.disk_key == key {
                if let Some(u) = args.uuid {
                    if u != p.core.uuid {
                        return Err(PoolError::UuidMismatch {
                            name: args.name,
                            disk: p.core.disk_uri.clone(),
                            found: p.core.uuid,
                            wanted: u,
                        });
                    }
                }
                return Ok(p.info());
            }
            return Err(PoolError::PoolExists {
                name: args.name,
                disk: p.core.disk_uri.clone(),
            });
        }
        if let Some(p) = self.pools.read().iter().find(|p| p.disk_key == key) {
            return Err(PoolError::DiskInUse {
                disk: disk.clone(),
                name: p.core.name.clone(),
            });
        }
        let dev = match dev {
            Some(dev) => dev,
            None => blockdev::open(&uri, &self.opts)
                .await
                .map_err(|e| PoolError::Disk {
                    disk: disk.clone(),
                    source: e,
                })?,
        };
        let canonical = uri.to_string();
        let (core, imported) = match probe(&dev, &canonical, &args.name).await? {
            Probe::Pool {
                meta,
                generation,
                needs_repair,
            } => {
                if meta.name != args.name {
                    return Err(PoolError::DiskHoldsOtherPool {
                        disk: canonical,
                        found: meta.name,
                        uuid: meta.uuid,
                        wanted: args.name,
                    });
                }
                if let Some(u) = args.uuid {
                    if u != meta.uuid {
                        return Err(PoolError::UuidMismatch {
                            name: args.name,
                            disk: canonical,
                            found: meta.uuid,
                            wanted: u,
                        });
                    }
                }
                if meta.geometry.block_size != dev.info().block_size {
                    return Err(PoolError::FailedPrecondition {
                        pool: args.name,
                        reason: format!(
                            "the pool was created with {}-byte blocks but the disk was opened with {}-byte blocks (set blk_size={} in the uri)",
                            meta.geometry.block_size,
                            dev.info().block_size,
                            meta.geometry.block_size
                        ),
                    });
                }
                let problems = pool_format::check_meta(&meta);
                if !problems.is_empty() {
                    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                    return Err(PoolError::Corrupt {
                        pool: args.name,
                        reason: list.join("; "),
                    });
                }
                let generation = if needs_repair {
                    let g = generation + 1;
                    warn!(pool = %meta.name, generation = g, "repairing metadata copies");
                    PoolCore::write_full(&dev, &canonical, &meta, g).await?;
                    g
                } else {
                    generation
                };
                (PoolCore::new(canonical, dev, meta, generation)?, true)
            }
            Probe::Blank => {
                if !may_create {
                    return Err(PoolError::FailedPrecondition {
                        pool: args.name,
                        reason: format!("disk {canonical} holds no pool to import"),
                    });
                }
                let info = dev.info().clone();
                let geometry = Geometry::new(
                    info.size_bytes(),
                    info.block_size,
                    cluster_size,
                    DEFAULT_RT_PAGES,
                )
                .map_err(|e| PoolError::InvalidArgument(format!("disk {canonical}: {e}")))?;
                let uuid = args.uuid.unwrap_or_else(Uuid::new_v4);
                let meta = PoolMeta::new(uuid, &args.name, geometry)
                    .map_err(|e| PoolError::InvalidArgument(e.to_string()))?;
                PoolCore::write_full(&dev, &canonical, &meta, 1).await?;
                (PoolCore::new(canonical, dev, meta, 1)?, false)
            }
        };
        let core = Arc::new(core);
        let replicas = {
            let st = core.meta.lock().await;
            let cs = core.geometry.cluster_size_bytes;
            let mut owned: HashMap<u32, Vec<(u32, u32)>> = HashMap::new();
            for (physical, o) in st.meta.owners.iter().enumerate() {
                if !o.is_free() {
                    owned
                        .entry(o.slot)
                        .or_default()
                        .push((physical as u32, o.logical));
                }
            }
            st.meta
                .replicas
                .iter()
                .map(|r| {
                    let clusters = owned.remove(&r.slot).unwrap_or_default();
                    (
                        r.uuid,
                        Arc::new(ReplicaState::new(r.clone(), &clusters, cs)),
                    )
                })
                .collect()
        };
        let pool = Arc::new(Pool {
            core,
            disk_key: key,
            replicas: RwLock::new(replicas),
            retired_io: parking_lot::Mutex::new(IoCounts::default()),
        });
        let info = pool.info();
        info!(
            pool = %info.name,
            uuid = %info.uuid,
            disk = %info.disks[0],
            replicas = info.replica_count,
            imported,
            "pool ready"
        );
        self.pools.write().push(pool);
        Ok(info)
    }

    /// Flushes and forgets a pool, leaving it on disk.
    pub async fn export_pool(&self, name: &str) -> Result<(), PoolError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.get_pool(name)?;
        let _st = pool.core.meta.lock().await;
        if let Err(e) = pool.core.dev.flush().await {
            warn!(pool = %name, error = %e, "flush on export failed");
        }
        self.remove(&pool);
        Ok(())
    }

    /// Destroys a pool and all its replicas: the disk no longer holds a
    /// pool afterwards.
    pub async fn destroy_pool(&self, name: &str) -> Result<(), PoolError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.get_pool(name)?;
        let _st = pool.core.meta.lock().await;
        for r in pool.replicas.read().values() {
            r.destroyed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let res = wipe_headers(&pool.core.dev, &pool.core.disk_uri).await;
        if let Err(e) = &res {
            // A disk that cannot be written any more is still released.
            warn!(pool = %name, error = %e, "could not wipe the pool's metadata");
        }
        self.remove(&pool);
        info!(pool = %name, "pool destroyed");
        Ok(())
    }

    fn remove(&self, pool: &Arc<Pool>) {
        self.pools.write().retain(|p| !Arc::ptr_eq(p, pool));
    }

    pub fn list_pools(&self) -> Vec<PoolInfo> {
        let mut v: Vec<_> = self.pools.read().iter().map(|p| p.info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// I/O statistics of every pool, sorted by name.
    pub fn pool_io_stats(&self) -> Vec<EntityIoStats> {
        let mut v: Vec<_> = self
            .pools
            .read()
            .iter()
            .map(|p| EntityIoStats {
                name: p.core.name.clone(),
                uuid: p.core.uuid,
                pool: None,
                stats: p.io_counts().snapshot(),
                tick_us: tick_us(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn pool(&self, name_or_uuid: &str) -> Result<PoolInfo, PoolError> {
        Ok(self.get_pool(name_or_uuid)?.info())
    }

    /// Verifies a pool's metadata on disk and in memory.
    pub async fn check_pool(&self, name: &str) -> Result<CheckReport, PoolError> {
        let pool = self.get_pool(name)?;
        let st = pool.core.meta.lock().await;
        let mut problems = pool.core.check(&st).await?;
        // The live cluster maps must agree with the owner table.
        let cs = pool.core.geometry.cluster_size_bytes;
        for r in pool.replicas.read().values() {
            let rec = r.record.read();
            let Some(meta_rec) = st.meta.replicas.iter().find(|m| m.uuid == r.uuid) else {
                problems.push(format!(
                    "replica '{}' is open but not in the replica table",
                    rec.name
                ));
                continue;
            };
            if *meta_rec != *rec {
                problems.push(format!(
                    "replica '{}' differs from its table entry",
                    rec.name
                ));
            }
            let map = r.map.read();
            if map.len() as u64 != rec.clusters(cs) {
                problems.push(format!(
                    "replica '{}' map has {} entries",
                    rec.name,
                    map.len()
                ));
            }
            for (logical, phys) in map.iter().enumerate() {
                let phys = phys.load(std::sync::atomic::Ordering::Acquire);
                if phys == 0 {
                    continue;
                }
                let owner = st
                    .meta
                    .owners
                    .get(phys as usize - 1)
                    .copied()
                    .unwrap_or(Owner::FREE);
                if owner.slot != r.slot || owner.logical as usize != logical {
                    problems.push(format!(
                        "replica '{}' maps logical cluster {logical} to cluster {} owned by slot {} logical {}",
                        rec.name,
                        phys - 1,
                        owner.slot,
                        owner.logical
                    ));
                }
            }
        }
        if pool.replicas.read().len() != st.meta.replicas.len() {
            problems.push("open replicas and the replica table differ in number".to_string());
        }
        Ok(CheckReport {
            pool: pool.core.name.clone(),
            problems,
            clusters_total: pool.core.geometry.num_clusters,
            clusters_used: u64::from(st.alloc.used_clusters()),
            replicas: st.meta.replicas.len() as u64,
            generation: st.generation,
        })
    }

    /// Flushes every pool and forgets them (engine shutdown).
    pub async fn shutdown(&self) {
        let _guard = self.op_lock.lock().await;
        let pools: Vec<_> = self.pools.write().drain(..).collect();
        for p in pools {
            let _st = p.core.meta.lock().await;
            if let Err(e) = p.core.dev.flush().await {
                warn!(pool = %p.core.name, error = %e, "flush on shutdown failed");
            }
        }
    }
}
