//! The replica operations of the registry: create, destroy, list, resize,
//! share and open the replicas of its pools.

use std::sync::Arc;

use pool_format::{Owner, ReplicaRecord};
use tracing::info;
use uuid::Uuid;

use super::{check_hosts, check_name, share_to_format, Pool, PoolRegistry};
use crate::pool::{
    replica::{Replica, ReplicaState},
    CreateReplicaArgs, PoolError, ReplicaInfo, ReplicaSelector, ShareProtocol,
};
use crate::stats::{tick_us, EntityIoStats};

impl PoolRegistry {
    fn find_replica_anywhere(&self, uuid: &Uuid) -> Option<(Arc<Pool>, Arc<ReplicaState>)> {
        self.pools
            .read()
            .iter()
            .find_map(|p| p.replicas.read().get(uuid).map(|r| (p.clone(), r.clone())))
    }

    fn select(&self, sel: &ReplicaSelector) -> Result<(Arc<Pool>, Arc<ReplicaState>), PoolError> {
        match sel {
            ReplicaSelector::Uuid(u) => self
                .find_replica_anywhere(u)
                .ok_or_else(|| PoolError::ReplicaNotFound(u.to_string())),
            ReplicaSelector::Name { pool, name } => {
                let p = self.get_pool(pool)?;
                let r = p
                    .find_replica(name)
                    .ok_or_else(|| PoolError::ReplicaNotFound(format!("{pool}/{name}")))?;
                Ok((p, r))
            }
        }
    }

    /// Creates a replica. Creating the same replica again (same uuid, name,
    /// pool, size and thin flag) returns it unchanged.
    pub async fn create_replica(&self, args: CreateReplicaArgs) -> Result<ReplicaInfo, PoolError> {
        check_name("replica", &args.name)?;
        check_hosts(&args.allowed_hosts)?;
        if args.size_bytes == 0 {
            return Err(PoolError::InvalidArgument(
                "replica size must be greater than 0".into(),
            ));
        }
        let _guard = self.op_lock.lock().await;
        let pool = self.get_pool(&args.pool)?;
        let core = &pool.core;
        let bs = u64::from(core.geometry.block_size);
        let cs = core.geometry.cluster_size_bytes;
        let size_bytes = args
            .size_bytes
            .checked_next_multiple_of(bs)
            .filter(|s| s.div_ceil(cs) <= u64::from(u32::MAX))
            .ok_or_else(|| {
                PoolError::InvalidArgument(format!("replica size {} is too large", args.size_bytes))
            })?;
        if let Some((p, r)) = self.find_replica_anywhere(&args.uuid) {
            let rec = r.record.read();
            if Arc::ptr_eq(&p, &pool)
                && rec.name == args.name
                && rec.size_bytes == size_bytes
                && rec.thin == args.thin
            {
                return Ok(r.info(&p.core));
            }
            return Err(PoolError::ReplicaUuidExists(args.uuid));
        }
        if pool.find_replica(&args.name).is_some() {
            return Err(PoolError::ReplicaNameExists {
                pool: core.name.clone(),
                name: args.name,
            });
        }
        let clusters = size_bytes.div_ceil(cs);
        let mut st = core.meta.lock().await;
        core.check_writable()?;
        if !args.thin && clusters > u64::from(st.alloc.free_clusters()) {
            return Err(PoolError::NoSpace {
                pool: core.name.clone(),
                needed_bytes: clusters * cs,
                free_bytes: u64::from(st.alloc.free_clusters()) * cs,
            });
        }
        let mut used_slots: Vec<u32> = st.meta.replicas.iter().map(|r| r.slot).collect();
        used_slots.sort_unstable();
        let slot = (1..)
            .zip(used_slots.iter())
            .find(|(want, have)| want != *have)
            .map_or(used_slots.len() as u32 + 1, |(want, _)| want);
        let record = ReplicaRecord {
            slot,
            uuid: args.uuid,
            name: args.name.clone(),
            size_bytes,
            thin: args.thin,
            share: share_to_format(args.share),
            allowed_hosts: args.allowed_hosts.clone(),
        };
        let physical = if args.thin {
            Vec::new()
        } else {
            st.alloc
                .allocate(clusters as u32)
                .ok_or_else(|| PoolError::NoSpace {
                    pool: core.name.clone(),
                    needed_bytes: clusters * cs,
                    free_bytes: 0,
                })?
        };
        let undo = |st: &mut crate::pool::disk::MetaState, physical: &[u32]| {
            for c in physical {
                st.meta.owners[*c as usize] = Owner::FREE;
                st.alloc.release(*c);
            }
            st.meta.replicas.retain(|r| r.slot != slot);
        };
        if let Err(e) = core.zero_clusters(&physical).await {
            undo(&mut st, &physical);
            return Err(e);
        }
        let pairs: Vec<(u32, u32)> = physical
            .iter()
            .enumerate()
            .map(|(l, p)| (*p, l as u32))
            .collect();
        for (p, l) in &pairs {
            st.meta.owners[*p as usize] = Owner { slot, logical: *l };
        }
        let pos = st.meta.replicas.partition_point(|r| r.slot < slot);
        st.meta.replicas.insert(pos, record.clone());
        if let Err(e) = core.commit(&mut st).await {
            undo(&mut st, &physical);
            return Err(e);
        }
        drop(st);
        let state = Arc::new(ReplicaState::new(record, &pairs, cs));
        let info = state.info(core);
        pool.replicas.write().insert(args.uuid, state);
        info!(replica = %info.uuid, name = %info.name, size_bytes, thin = args.thin, "replica created");
        Ok(info)
    }

    /// Destroys a replica and frees its clusters.
    pub async fn destroy_replica(&self, sel: &ReplicaSelector) -> Result<(), PoolError> {
        let _guard = self.op_lock.lock().await;
        let (pool, r) = self.select(sel)?;
        let core = &pool.core;
        let mut st = core.meta.lock().await;
        core.check_writable()?;
        let saved_replicas = st.meta.replicas.clone();
        let mut freed = Vec::new();
        for (i, o) in st.meta.owners.iter_mut().enumerate() {
            if o.slot == r.slot {
                freed.push((i as u32, *o));
                *o = Owner::FREE;
            }
        }
        st.meta.replicas.retain(|x| x.slot != r.slot);
        if let Err(e) = core.commit(&mut st).await {
            st.meta.replicas = saved_replicas;
            for (i, o) in freed {
                st.meta.owners[i as usize] = o;
            }
            return Err(e);
        }
        for (i, _) in &freed {
            st.alloc.release(*i);
        }
        core.used_clusters.store(
            u64::from(st.alloc.used_clusters()),
            std::sync::atomic::Ordering::Release,
        );
        r.destroyed
            .store(true, std::sync::atomic::Ordering::Release);
        pool.retire(&r.uuid);
        info!(replica = %r.uuid, pool = %core.name, "replica destroyed");
        Ok(())
    }

    pub fn list_replicas(&self) -> Vec<ReplicaInfo> {
        let mut v: Vec<ReplicaInfo> = self
            .pools
            .read()
            .iter()
            .flat_map(|p| {
                p.replicas
                    .read()
                    .values()
                    .map(|r| r.info(&p.core))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by(|a, b| (&a.pool_name, &a.name).cmp(&(&b.pool_name, &b.name)));
        v
    }

    /// I/O statistics of every replica, sorted by pool and name.
    pub fn replica_io_stats(&self) -> Vec<EntityIoStats> {
        let mut v: Vec<EntityIoStats> = self
            .pools
            .read()
            .iter()
            .flat_map(|p| {
                p.replicas
                    .read()
                    .values()
                    .map(|r| EntityIoStats {
                        name: r.record.read().name.clone(),
                        uuid: r.uuid,
                        pool: Some((p.core.name.clone(), p.core.uuid)),
                        stats: r.io.snapshot(),
                        tick_us: tick_us(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by(|a, b| (&a.pool, &a.name).cmp(&(&b.pool, &b.name)));
        v
    }

    pub fn replica(&self, sel: &ReplicaSelector) -> Result<ReplicaInfo, PoolError> {
        let (p, r) = self.select(sel)?;
        Ok(r.info(&p.core))
    }

    /// Grows a replica (shrinking is refused). Open handles keep their old
    /// size; open the replica again to see the new one.
    pub async fn resize_replica(
        &self,
        sel: &ReplicaSelector,
        size_bytes: u64,
    ) -> Result<ReplicaInfo, PoolError> {
        let _guard = self.op_lock.lock().await;
        let (pool, r) = self.select(sel)?;
        let core = &pool.core;
        let bs = u64::from(core.geometry.block_size);
        let cs = core.geometry.cluster_size_bytes;
        let new_size = size_bytes
            .checked_next_multiple_of(bs)
            .filter(|s| s.div_ceil(cs) <= u64::from(u32::MAX))
            .ok_or_else(|| {
                PoolError::InvalidArgument(format!("replica size {size_bytes} is too large"))
            })?;
        let old = r.record.read().clone();
        if new_size == old.size_bytes {
            return Ok(r.info(core));
        }
        if new_size < old.size_bytes {
            return Err(PoolError::FailedPrecondition {
                pool: core.name.clone(),
                reason: format!(
                    "replica '{}' is {} bytes; shrinking to {new_size} is not supported",
                    old.name, old.size_bytes
                ),
            });
        }
        let mut st = core.meta.lock().await;
        core.check_writable()?;
        let old_clusters = old.clusters(cs);
        let new_clusters = new_size.div_ceil(cs);
        let extra = new_clusters - old_clusters;
        let physical = if old.thin || extra == 0 {
            Vec::new()
        } else {
            st.alloc
                .allocate(extra as u32)
                .ok_or_else(|| PoolError::NoSpace {
                    pool: core.name.clone(),
                    needed_bytes: extra * cs,
                    free_bytes: u64::from(st.alloc.free_clusters()) * cs,
                })?
        };
        if let Err(e) = core.zero_clusters(&physical).await {
            for c in &physical {
                st.alloc.release(*c);
            }
            return Err(e);
        }
        let pairs: Vec<(u32, u32)> = physical
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, (old_clusters + i as u64) as u32))
            .collect();
        for (p, l) in &pairs {
            st.meta.owners[*p as usize] = Owner {
                slot: r.slot,
                logical: *l,
            };
        }
        let saved = st.meta.replicas.clone();
        if let Some(rec) = st.meta.replicas.iter_mut().find(|x| x.slot == r.slot) {
            rec.size_bytes = new_size;
        }
        if let Err(e) = core.commit(&mut st).await {
            st.meta.replicas = saved;
            for (p, _) in &pairs {
                st.meta.owners[*p as usize] = Owner::FREE;
                st.alloc.release(*p);
            }
            return Err(e);
        }
        {
            let mut map = r.map.write();
            map.resize_with(new_clusters as usize, || {
                std::sync::atomic::AtomicU32::new(0)
            });
            for (p, l) in &pairs {
                map[*l as usize].store(p + 1, std::sync::atomic::Ordering::Release);
            }
        }
        r.allocated
            .fetch_add(pairs.len() as u64, std::sync::atomic::Ordering::AcqRel);
        r.record.write().size_bytes = new_size;
        info!(replica = %r.uuid, size_bytes = new_size, "replica resized");
        Ok(r.info(core))
    }

    /// Changes how a replica is shared (used by the NVMe/TCP target).
    pub async fn set_replica_share(
        &self,
        sel: &ReplicaSelector,
        share: ShareProtocol,
        allowed_hosts: Vec<String>,
    ) -> Result<ReplicaInfo, PoolError> {
        check_hosts(&allowed_hosts)?;
        let _guard = self.op_lock.lock().await;
        let (pool, r) = self.select(sel)?;
        let core = &pool.core;
        let mut st = core.meta.lock().await;
        let saved = st.meta.replicas.clone();
        if let Some(rec) = st.meta.replicas.iter_mut().find(|x| x.slot == r.slot) {
            rec.share = share_to_format(share);
            rec.allowed_hosts = allowed_hosts.clone();
        }
        if let Err(e) = core.commit(&mut st).await {
            st.meta.replicas = saved;
            return Err(e);
        }
        {
            let mut rec = r.record.write();
            rec.share = share_to_format(share);
            rec.allowed_hosts = allowed_hosts;
        }
        Ok(r.info(core))
    }

    /// Opens a replica for I/O.
    pub fn open_replica(&self, uuid: &Uuid) -> Result<Arc<Replica>, PoolError> {
        let (p, r) = self
            .find_replica_anywhere(uuid)
            .ok_or_else(|| PoolError::ReplicaNotFound(uuid.to_string()))?;
        Ok(Arc::new(Replica::new(p.core.clone(), r)))
    }
}
