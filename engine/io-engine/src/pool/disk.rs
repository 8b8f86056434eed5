//! One pool on one disk: loading, formatting and committing metadata, and
//! the cluster allocation used by replicas.
//!
//! Commit protocol (see `docs/pool-format.md`): for copy A then copy B,
//! write the changed body pages sealed with the new generation, flush,
//! write the header page, flush. A copy is only trusted when its header is
//! at least as new as every body page, so an interrupted commit leaves that
//! copy invalid and the other intact. An operation is acknowledged only
//! after both copies are written.
//!
//! Threading model: metadata lives in [`MetaState`] behind an async mutex
//! (metadata updates do disk I/O while holding it); everything a list or the
//! data path needs is mirrored in atomics.

use std::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Arc,
};

use blockdev::{BlockDevError, BlockDevice, Device, DmaBuf};
use pool_format::{
    check_meta,
    meta::{decode_copy, decode_header, HeaderInfo},
    open_page,
    page::has_magic,
    seal_page, ClusterAllocator, Copy, FormatError, Geometry, Owner, PoolMeta, PAGE_SIZE,
};
use uuid::Uuid;

use super::{PoolError, PoolState};

/// Metadata of a pool as last committed.
pub(crate) struct MetaState {
    pub meta: PoolMeta,
    pub generation: u64,
    /// Payload of every page of a copy as last written.
    payloads: Vec<Vec<u8>>,
    pub alloc: ClusterAllocator,
}

/// The parts of a pool that replicas share.
pub(crate) struct PoolCore {
    pub name: String,
    pub uuid: Uuid,
    pub disk_uri: String,
    pub dev: Device,
    pub geometry: Geometry,
    pub meta: tokio::sync::Mutex<MetaState>,
    state: AtomicU8,
    pub used_clusters: AtomicU64,
    pub committed_bytes: AtomicU64,
    pub replica_count: AtomicU64,
    pub io_errors: AtomicU64,
}

/// A metadata copy as found on disk.
pub(crate) struct LoadedCopy {
    pub copy: Copy,
    pub result: Result<pool_format::meta::DecodedCopy, FormatError>,
}

/// What a disk holds.
pub(crate) enum Probe {
    /// No pool signature at all.
    Blank,
    /// A pool: the newest valid metadata, and whether the copies need repair.
    Pool {
        meta: PoolMeta,
        generation: u64,
        needs_repair: bool,
    },
}

fn disk_err(disk: &str, source: BlockDevError) -> PoolError {
    PoolError::Disk {
        disk: disk.to_string(),
        source,
    }
}

async fn read_bytes(
    dev: &Device,
    disk: &str,
    offset: u64,
    len: usize,
) -> Result<DmaBuf, PoolError> {
    let mut buf = DmaBuf::new(len);
    dev.read_at(offset, &mut buf)
        .await
        .map_err(|e| disk_err(disk, e))?;
    Ok(buf)
}

/// Reads both copies' headers and bodies.
pub(crate) async fn read_copies(
    dev: &Device,
    disk: &str,
) -> Result<(Vec<LoadedCopy>, bool), PoolError> {
    let size = dev.info().size_bytes();
    if size < 2 * PAGE_SIZE as u64 {
        return Ok((Vec::new(), false));
    }
    let heads = read_bytes(dev, disk, 0, 2 * PAGE_SIZE).await?;
    let any_magic = has_magic(&heads[..PAGE_SIZE]) || has_magic(&heads[PAGE_SIZE..]);
    let mut out = Vec::new();
    for copy in Copy::BOTH {
        let page = &heads[copy.index() as usize * PAGE_SIZE..][..PAGE_SIZE];
        let result = match decode_header(page, copy) {
            Err(e) => Err(e),
            Ok(HeaderInfo { geometry, .. }) => {
                if geometry.disk_size_bytes > size {
                    Err(FormatError::Geometry(format!(
                        "the pool was created on {} bytes but the disk has only {size}",
                        geometry.disk_size_bytes
                    )))
                } else {
                    let body_len = (geometry.copy_pages() as usize - 1) * PAGE_SIZE;
                    let body = read_bytes(dev, disk, geometry.body_offset(copy), body_len).await?;
                    decode_copy(page, &body, copy)
                }
            }
        };
        out.push(LoadedCopy { copy, result });
    }
    Ok((out, any_magic))
}

/// Tells what `dev` holds, recovering from one damaged copy.
pub(crate) async fn probe(dev: &Device, disk: &str, pool_name: &str) -> Result<Probe, PoolError> {
    let (copies, any_magic) = read_copies(dev, disk).await?;
    if !any_magic {
        return Ok(Probe::Blank);
    }
    let corrupt = |reason: String| PoolError::Corrupt {
        pool: pool_name.to_string(),
        reason,
    };
    let valid: Vec<_> = copies
        .iter()
        .filter_map(|c| c.result.as_ref().ok().map(|d| (c.copy, d)))
        .collect();
    if let Some((_, best)) = valid.iter().max_by_key(|(_, d)| d.generation) {
        let needs_repair = valid.len() < 2
            || valid
                .windows(2)
                .any(|w| w[0].1.generation != w[1].1.generation || w[0].1.meta != w[1].1.meta);
        return Ok(Probe::Pool {
            meta: best.meta.clone(),
            generation: best.generation,
            needs_repair,
        });
    }
    // Neither copy is whole: when both headers are of the same generation
    // every page is current in both copies, so the pages can be merged.
    if let Some(merged) = merge_copies(dev, disk).await? {
        return Ok(Probe::Pool {
            meta: merged.meta,
            generation: merged.generation,
            needs_repair: true,
        });
    }
    let reasons: Vec<String> = copies
        .iter()
        .filter_map(|c| {
            c.result
                .as_ref()
                .err()
                .map(|e| format!("copy {}: {e}", c.copy.letter()))
        })
        .collect();
    Err(corrupt(format!(
        "both metadata copies are damaged ({})",
        reasons.join("; ")
    )))
}

/// Page-by-page merge of two copies whose headers carry the same
/// generation.
async fn merge_copies(
    dev: &Device,
    disk: &str,
) -> Result<Option<pool_format::meta::DecodedCopy>, PoolError> {
    let heads = read_bytes(dev, disk, 0, 2 * PAGE_SIZE).await?;
    let (Ok(ha), Ok(hb)) = (
        decode_header(&heads[..PAGE_SIZE], Copy::A),
        decode_header(&heads[PAGE_SIZE..], Copy::B),
    ) else {
        return Ok(None);
    };
    if ha.page.generation != hb.page.generation
        || ha.geometry != hb.geometry
        || ha.name != hb.name
        || ha.rt_len_bytes != hb.rt_len_bytes
        || ha.page.pool_uuid != hb.page.pool_uuid
    {
        return Ok(None);
    }
    let g = ha.geometry;
    let body_len = (g.copy_pages() as usize - 1) * PAGE_SIZE;
    let a = read_bytes(dev, disk, g.body_offset(Copy::A), body_len).await?;
    let b = read_bytes(dev, disk, g.body_offset(Copy::B), body_len).await?;
    let mut merged = vec![0u8; body_len];
    for i in 0..body_len / PAGE_SIZE {
        let pa = &a[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
        let pb = &b[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
        let page = match (open_page(pa, 0), open_page(pb, 0)) {
            (Ok(_), _) => pa.to_vec(),
            (Err(_), Ok((h, payload))) => {
                // Re-seal copy B's page in copy A's place.
                let mut h = h;
                h.copy = Copy::A.index();
                seal_page(&h, payload).to_vec()
            }
            (Err(_), Err(_)) => return Ok(None),
        };
        merged[i * PAGE_SIZE..(i + 1) * PAGE_SIZE].copy_from_slice(&page);
    }
    Ok(decode_copy(&heads[..PAGE_SIZE], &merged, Copy::A).ok())
}

impl PoolCore {
    /// Wraps loaded (or freshly formatted) metadata.
    pub(crate) fn new(
        disk_uri: String,
        dev: Device,
        meta: PoolMeta,
        generation: u64,
    ) -> Result<Self, PoolError> {
        let payloads = pool_format::encode_payloads(&meta).map_err(|e| PoolError::Corrupt {
            pool: meta.name.clone(),
            reason: e.to_string(),
        })?;
        let alloc = ClusterAllocator::from_owners(&meta.owners);
        let cs = meta.geometry.cluster_size_bytes;
        let core = PoolCore {
            name: meta.name.clone(),
            uuid: meta.uuid,
            disk_uri,
            dev,
            geometry: meta.geometry,
            state: AtomicU8::new(PoolState::Online as u8),
            used_clusters: AtomicU64::new(u64::from(alloc.used_clusters())),
            committed_bytes: AtomicU64::new(meta.replicas.iter().map(|r| r.size_bytes).sum()),
            replica_count: AtomicU64::new(meta.replicas.len() as u64),
            io_errors: AtomicU64::new(0),
            meta: tokio::sync::Mutex::new(MetaState {
                meta,
                generation,
                payloads,
                alloc,
            }),
        };
        let _ = cs;
        Ok(core)
    }

    pub(crate) fn state(&self) -> PoolState {
        match self.state.load(Ordering::Acquire) {
            0 => PoolState::Online,
            1 => PoolState::Degraded,
            _ => PoolState::Faulted,
        }
    }

    /// Records a data-path I/O error: the pool becomes Degraded.
    pub(crate) fn note_io_error(&self) {
        self.io_errors.fetch_add(1, Ordering::Relaxed);
        let _ = self.state.compare_exchange(
            PoolState::Online as u8,
            PoolState::Degraded as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn set_faulted(&self) {
        self.state
            .store(PoolState::Faulted as u8, Ordering::Release);
    }

    pub(crate) fn check_writable(&self) -> Result<(), PoolError> {
        if self.state() == PoolState::Faulted {
            return Err(PoolError::Faulted {
                pool: self.name.clone(),
            });
        }
        Ok(())
    }

    fn disk_err(&self, e: BlockDevError) -> PoolError {
        disk_err(&self.disk_uri, e)
    }

    /// Writes full copies of `meta` at `generation` (format and repair).
    pub(crate) async fn write_full(
        dev: &Device,
        disk: &str,
        meta: &PoolMeta,
        generation: u64,
    ) -> Result<Vec<Vec<u8>>, PoolError> {
        let payloads = pool_format::encode_payloads(meta)
            .map_err(|e| PoolError::InvalidArgument(e.to_string()))?;
        let g = meta.geometry;
        for copy in Copy::BOTH {
            let body_pages = g.copy_pages() as usize - 1;
            let mut body = DmaBuf::new(body_pages * PAGE_SIZE);
            for (i, p) in payloads.iter().enumerate().skip(1) {
                let page = seal_page(&meta.page_header(copy, i as u64, generation), p);
                body[(i - 1) * PAGE_SIZE..i * PAGE_SIZE].copy_from_slice(&page);
            }
            dev.write_at(g.body_offset(copy), &body)
                .await
                .map_err(|e| disk_err(disk, e))?;
            dev.flush().await.map_err(|e| disk_err(disk, e))?;
            let mut head = DmaBuf::new(PAGE_SIZE);
            head.copy_from_slice(&seal_page(
                &meta.page_header(copy, 0, generation),
                &payloads[0],
            ));
            dev.write_at(g.page_offset(copy, 0), &head)
                .await
                .map_err(|e| disk_err(disk, e))?;
            dev.flush().await.map_err(|e| disk_err(disk, e))?;
        }
        Ok(payloads)
    }

    /// Commits `st.meta` as the next generation. On error nothing in `st`
    /// changes, the pool is Faulted (the disk may hold either generation)
    /// and the caller must undo its change to `st.meta`.
    pub(crate) async fn commit(&self, st: &mut MetaState) -> Result<(), PoolError> {
        self.check_writable()?;
        let payloads = pool_format::encode_payloads(&st.meta).map_err(|e| match e {
            FormatError::ReplicaTable(reason) => PoolError::FailedPrecondition {
                pool: self.name.clone(),
                reason,
            },
            e => PoolError::InvalidArgument(e.to_string()),
        })?;
        let generation = st.generation + 1;
        let changed: Vec<usize> = (1..payloads.len())
            .filter(|i| payloads[*i] != st.payloads[*i])
            .collect();
        let res = self
            .write_pages(&st.meta, &payloads, &changed, generation)
            .await;
        if let Err(e) = res {
            self.set_faulted();
            tracing::error!(pool = %self.name, error = %e, "metadata commit failed, pool faulted");
            return Err(e);
        }
        st.payloads = payloads;
        st.generation = generation;
        self.used_clusters
            .store(u64::from(st.alloc.used_clusters()), Ordering::Release);
        self.committed_bytes.store(
            st.meta.replicas.iter().map(|r| r.size_bytes).sum(),
            Ordering::Release,
        );
        self.replica_count
            .store(st.meta.replicas.len() as u64, Ordering::Release);
        Ok(())
    }

    async fn write_pages(
        &self,
        meta: &PoolMeta,
        payloads: &[Vec<u8>],
        changed: &[usize],
        generation: u64,
    ) -> Result<(), PoolError> {
        let g = &self.geometry;
        for copy in Copy::BOTH {
            // Changed body pages, coalesced into runs of adjacent pages.
            let mut i = 0;
            while i < changed.len() {
                let mut j = i + 1;
                while j < changed.len() && changed[j] == changed[j - 1] + 1 {
                    j += 1;
                }
                let mut buf = DmaBuf::new((j - i) * PAGE_SIZE);
                for (k, idx) in changed[i..j].iter().enumerate() {
                    let page = seal_page(
                        &meta.page_header(copy, *idx as u64, generation),
                        &payloads[*idx],
                    );
                    buf[k * PAGE_SIZE..(k + 1) * PAGE_SIZE].copy_from_slice(&page);
                }
                self.dev
                    .write_at(g.page_offset(copy, changed[i] as u64), &buf)
                    .await
                    .map_err(|e| self.disk_err(e))?;
                i = j;
            }
            if !changed.is_empty() {
                self.dev.flush().await.map_err(|e| self.disk_err(e))?;
            }
            let mut head = DmaBuf::new(PAGE_SIZE);
            head.copy_from_slice(&seal_page(
                &meta.page_header(copy, 0, generation),
                &payloads[0],
            ));
            self.dev
                .write_at(g.page_offset(copy, 0), &head)
                .await
                .map_err(|e| self.disk_err(e))?;
            self.dev.flush().await.map_err(|e| self.disk_err(e))?;
        }
        Ok(())
    }

    /// Zeroes clusters on disk and flushes, before they are handed to a
    /// replica (a freed cluster still holds its previous owner's data).
    pub(crate) async fn zero_clusters(&self, clusters: &[u32]) -> Result<(), PoolError> {
        let cs = self.geometry.cluster_size_bytes;
        let mut sorted = clusters.to_vec();
        sorted.sort_unstable();
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i + 1;
            while j < sorted.len() && sorted[j] == sorted[j - 1] + 1 {
                j += 1;
            }
            let off = self.geometry.cluster_offset(sorted[i]);
            if let Err(e) = self.dev.write_zeroes(off, (j - i) as u64 * cs).await {
                self.note_io_error();
                return Err(self.disk_err(e));
            }
            i = j;
        }
        if !sorted.is_empty() {
            if let Err(e) = self.dev.flush().await {
                self.note_io_error();
                return Err(self.disk_err(e));
            }
        }
        Ok(())
    }

    /// Allocates, zeroes and commits one cluster for `logical` of the
    /// replica in `slot`. Called with the metadata lock held.
    pub(crate) async fn allocate_cluster(
        &self,
        st: &mut MetaState,
        slot: u32,
        logical: u32,
    ) -> Result<u32, PoolError> {
        self.check_writable()?;
        let Some(cluster) = st.alloc.allocate_one() else {
            return Err(PoolError::NoSpace {
                pool: self.name.clone(),
                needed_bytes: self.geometry.cluster_size_bytes,
                free_bytes: 0,
            });
        };
        if let Err(e) = self.zero_clusters(&[cluster]).await {
            st.alloc.release(cluster);
            return Err(e);
        }
        st.meta.owners[cluster as usize] = Owner { slot, logical };
        if let Err(e) = self.commit(st).await {
            st.meta.owners[cluster as usize] = Owner::FREE;
            st.alloc.release(cluster);
            return Err(e);
        }
        Ok(cluster)
    }

    /// Verifies the on-disk metadata against itself and against memory.
    pub(crate) async fn check(&self, st: &MetaState) -> Result<Vec<String>, PoolError> {
        let mut problems = Vec::new();
        let (copies, _) = read_copies(&self.dev, &self.disk_uri).await?;
        let mut decoded = Vec::new();
        for c in &copies {
            match &c.result {
                Ok(d) => decoded.push((c.copy, d)),
                Err(e) => problems.push(format!("metadata copy {}: {e}", c.copy.letter())),
            }
        }
        for (copy, d) in &decoded {
            if d.generation != st.generation {
                problems.push(format!(
                    "metadata copy {} is at generation {}, the pool at {}",
                    copy.letter(),
                    d.generation,
                    st.generation
                ));
            }
            if d.meta != st.meta {
                problems.push(format!(
                    "metadata copy {} differs from the pool's in-memory metadata",
                    copy.letter()
                ));
            }
        }
        problems.extend(check_meta(&st.meta).into_iter().map(|p| p.to_string()));
        let alloc = ClusterAllocator::from_owners(&st.meta.owners);
        if alloc != st.alloc {
            problems.push("allocator disagrees with the owner table".to_string());
        }
        Ok(problems)
    }
}

/// Wipes both metadata headers so the disk no longer holds a pool.
pub(crate) async fn wipe_headers(dev: &Device, disk: &str) -> Result<(), PoolError> {
    for copy in Copy::BOTH {
        let zero = DmaBuf::new(PAGE_SIZE);
        dev.write_at(u64::from(copy.index()) * PAGE_SIZE as u64, &zero)
            .await
            .map_err(|e| disk_err(disk, e))?;
        dev.flush().await.map_err(|e| disk_err(disk, e))?;
    }
    Ok(())
}

/// Shared handle.
pub(crate) type CoreRef = Arc<PoolCore>;
