//! Pool metadata: geometry, replica table and cluster owner table, and their
//! encoding into page payloads.
//!
//! Layout of the disk (pages of 4 KiB):
//! ```text
//! page 0            header, copy A
//! page 1            header, copy B
//! pages 2..         copy A body: replica table (rt_pages), owner table (ot_pages)
//! following pages   copy B body: same
//! data_offset       cluster 0, cluster 1, ... (data_offset is cluster aligned)
//! ```
//! Within a copy, page index 0 is the header, 1..=rt_pages the replica
//! table, the rest the owner table.

use uuid::Uuid;

use crate::{
    page::{open_page, PageHeader, PageKind, PAGE_SIZE, PAYLOAD_SIZE},
    FormatError,
};

/// Metadata format version.
pub const FORMAT_VERSION: u32 = 1;
/// Default cluster size (as upstream's lvstore).
pub const DEFAULT_CLUSTER_SIZE: u64 = 4 << 20;
/// Smallest cluster size.
pub const MIN_CLUSTER_SIZE: u64 = 64 << 10;
/// Largest cluster size.
pub const MAX_CLUSTER_SIZE: u64 = 64 << 20;
/// Default number of replica-table pages per copy.
pub const DEFAULT_RT_PAGES: u32 = 64;
/// Longest pool or replica name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest host NQN (NVMe base specification).
pub const MAX_NQN_LEN: usize = 223;
/// Most allowed hosts per replica.
pub const MAX_ALLOWED_HOSTS: usize = 64;
/// Owner-table entries per page.
pub const OWNERS_PER_PAGE: usize = PAYLOAD_SIZE / 8;

const MAX_RT_PAGES: u32 = 4096;

/// One of the two metadata copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    A,
    B,
}

impl Copy {
    pub const BOTH: [Copy; 2] = [Copy::A, Copy::B];

    pub fn index(self) -> u8 {
        match self {
            Copy::A => 0,
            Copy::B => 1,
        }
    }

    pub fn letter(self) -> char {
        match self {
            Copy::A => 'A',
            Copy::B => 'B',
        }
    }

    pub fn other(self) -> Copy {
        match self {
            Copy::A => Copy::B,
            Copy::B => Copy::A,
        }
    }
}

/// Where things are on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u32,
    pub cluster_size_bytes: u64,
    /// Disk size when the pool was created.
    pub disk_size_bytes: u64,
    pub num_clusters: u64,
    pub data_offset_bytes: u64,
    pub rt_pages: u32,
    pub ot_pages: u32,
}

impl Geometry {
    /// Lays out a new pool on a disk of `disk_size_bytes`.
    pub fn new(
        disk_size_bytes: u64,
        block_size: u32,
        cluster_size_bytes: u64,
        rt_pages: u32,
    ) -> Result<Self, FormatError> {
        check_sizes(block_size, cluster_size_bytes, rt_pages)?;
        // Size the owner table for every cluster the disk could hold; the
        // metadata then takes room from the data area, so the final table may
        // need fewer pages, which only leaves slack before the data offset.
        let upper = disk_size_bytes / cluster_size_bytes;
        let meta_bytes = (2 + 2 * (u64::from(rt_pages) + ot_pages_for(upper))) * PAGE_SIZE as u64;
        let data_offset_bytes = meta_bytes.div_ceil(cluster_size_bytes) * cluster_size_bytes;
        let num_clusters = disk_size_bytes.saturating_sub(data_offset_bytes) / cluster_size_bytes;
        let ot_pages = ot_pages_for(num_clusters);
        if num_clusters == 0 {
            return Err(FormatError::Geometry(format!(
                "disk of {disk_size_bytes} bytes is too small: it must hold {data_offset_bytes} bytes of metadata and at least one {cluster_size_bytes}-byte cluster"
            )));
        }
        if num_clusters > u64::from(u32::MAX) {
            return Err(FormatError::Geometry(format!(
                "disk of {disk_size_bytes} bytes has too many clusters; use a larger cluster size"
            )));
        }
        let ot_pages = u32::try_from(ot_pages)
            .map_err(|_| FormatError::Geometry("owner table too large".into()))?;
        let g = Geometry {
            block_size,
            cluster_size_bytes,
            disk_size_bytes,
            num_clusters,
            data_offset_bytes,
            rt_pages,
            ot_pages,
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks a decoded geometry for consistency.
    pub fn validate(&self) -> Result<(), FormatError> {
        check_sizes(self.block_size, self.cluster_size_bytes, self.rt_pages)?;
        if self.num_clusters == 0 || self.num_clusters > u64::from(u32::MAX) {
            return Err(FormatError::Geometry(format!(
                "cluster count {} out of range",
                self.num_clusters
            )));
        }
        if (self.ot_pages as usize) * OWNERS_PER_PAGE < self.num_clusters as usize
            || u64::from(self.ot_pages) != ot_pages_for(self.num_clusters)
        {
            return Err(FormatError::Geometry(format!(
                "{} owner-table pages do not fit {} clusters",
                self.ot_pages, self.num_clusters
            )));
        }
        let meta_end = self.page_offset(Copy::B, self.copy_pages() - 1) + PAGE_SIZE as u64;
        if self.data_offset_bytes < meta_end
            || !self
                .data_offset_bytes
                .is_multiple_of(self.cluster_size_bytes)
        {
            return Err(FormatError::Geometry(format!(
                "data offset {} overlaps metadata or is not cluster aligned",
                self.data_offset_bytes
            )));
        }
        let end = self
            .num_clusters
            .checked_mul(self.cluster_size_bytes)
            .and_then(|b| b.checked_add(self.data_offset_bytes));
        match end {
            Some(end) if end <= self.disk_size_bytes => Ok(()),
            _ => Err(FormatError::Geometry(format!(
                "{} clusters of {} bytes do not fit a disk of {} bytes",
                self.num_clusters, self.cluster_size_bytes, self.disk_size_bytes
            ))),
        }
    }

    /// Pages per copy, header included.
    pub fn copy_pages(&self) -> u64 {
        1 + u64::from(self.rt_pages) + u64::from(self.ot_pages)
    }

    /// Byte offset of page `index` of `copy`.
    pub fn page_offset(&self, copy: Copy, index: u64) -> u64 {
        if index == 0 {
            return u64::from(copy.index()) * PAGE_SIZE as u64;
        }
        let body_pages = self.copy_pages() - 1;
        (2 + u64::from(copy.index()) * body_pages + (index - 1)) * PAGE_SIZE as u64
    }

    /// Byte offset of the body (page 1) of `copy`; the body is contiguous.
    pub fn body_offset(&self, copy: Copy) -> u64 {
        self.page_offset(copy, 1)
    }

    /// Byte offset of data cluster `cluster`.
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset_bytes + u64::from(cluster) * self.cluster_size_bytes
    }

    /// Capacity for replica data.
    pub fn capacity_bytes(&self) -> u64 {
        self.num_clusters * self.cluster_size_bytes
    }

    /// Kind of page `index` of a copy.
    pub fn page_kind(&self, index: u64) -> PageKind {
        if index == 0 {
            PageKind::Header
        } else if index <= u64::from(self.rt_pages) {
            PageKind::ReplicaTable
        } else {
            PageKind::OwnerTable
        }
    }
}

fn ot_pages_for(num_clusters: u64) -> u64 {
    num_clusters.div_ceil(OWNERS_PER_PAGE as u64).max(1)
}

fn check_sizes(block_size: u32, cluster_size_bytes: u64, rt_pages: u32) -> Result<(), FormatError> {
    if block_size != 512 && block_size != 4096 {
        return Err(FormatError::Geometry(format!(
            "block size must be 512 or 4096, got {block_size}"
        )));
    }
    if !cluster_size_bytes.is_power_of_two()
        || !(MIN_CLUSTER_SIZE..=MAX_CLUSTER_SIZE).contains(&cluster_size_bytes)
    {
        return Err(FormatError::Geometry(format!(
            "cluster size must be a power of two between {MIN_CLUSTER_SIZE} and {MAX_CLUSTER_SIZE} bytes, got {cluster_size_bytes}"
        )));
    }
    if rt_pages == 0 || rt_pages > MAX_RT_PAGES {
        return Err(FormatError::Geometry(format!(
            "replica table pages must be 1..={MAX_RT_PAGES}, got {rt_pages}"
        )));
    }
    Ok(())
}

/// How a replica is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Share {
    #[default]
    None = 0,
    Nvmf = 1,
}

/// One replica of the replica table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    /// Small integer naming the replica in the owner table; never 0.
    pub slot: u32,
    pub uuid: Uuid,
    pub name: String,
    pub size_bytes: u64,
    pub thin: bool,
    pub share: Share,
    pub allowed_hosts: Vec<String>,
}

impl ReplicaRecord {
    /// Number of clusters covering the replica.
    pub fn clusters(&self, cluster_size_bytes: u64) -> u64 {
        self.size_bytes.div_ceil(cluster_size_bytes)
    }
}

/// Owner of one data cluster: `slot == 0` means free.
#[derive(Debug, Clone, std::marker::Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub slot: u32,
    /// Cluster index within the replica.
    pub logical: u32,
}

impl Owner {
    pub const FREE: Owner = Owner {
        slot: 0,
        logical: 0,
    };

    pub fn is_free(&self) -> bool {
        self.slot == 0
    }
}

/// The whole metadata of a pool (one generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMeta {
    pub uuid: Uuid,
    pub name: String,
    pub geometry: Geometry,
    /// Sorted by slot.
    pub replicas: Vec<ReplicaRecord>,
    /// One entry per data cluster.
    pub owners: Vec<Owner>,
}

impl PoolMeta {
    /// A new, empty pool.
    pub fn new(uuid: Uuid, name: &str, geometry: Geometry) -> Result<Self, FormatError> {
        check_name("pool", name)?;
        Ok(PoolMeta {
            uuid,
            name: name.to_string(),
            geometry,
            replicas: Vec::new(),
            owners: vec![Owner::FREE; geometry.num_clusters as usize],
        })
    }

    /// Header of page `index` of `copy` at `generation`.
    pub fn page_header(&self, copy: Copy, index: u64, generation: u64) -> PageHeader {
        PageHeader {
            kind: self.geometry.page_kind(index),
            copy: copy.index(),
            index: index as u32,
            generation,
            pool_uuid: self.uuid,
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), FormatError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\0') {
        return Err(FormatError::ReplicaTable(format!(
            "{what} name must be 1..={MAX_NAME_LEN} bytes without NUL"
        )));
    }
    Ok(())
}

/// Encodes `meta` into one payload per page of a copy (header first), each
/// exactly [`PAYLOAD_SIZE`] bytes.
pub fn encode_payloads(meta: &PoolMeta) -> Result<Vec<Vec<u8>>, FormatError> {
    let g = &meta.geometry;
    if meta.owners.len() as u64 != g.num_clusters {
        return Err(FormatError::OwnerTable(format!(
            "{} owners for {} clusters",
            meta.owners.len(),
            g.num_clusters
        )));
    }
    let rt = encode_replica_table(&meta.replicas)?;
    let rt_cap = g.rt_pages as usize * PAYLOAD_SIZE;
    if rt.len() > rt_cap {
        return Err(FormatError::ReplicaTable(format!(
            "replica table needs {} bytes, the pool has room for {rt_cap}",
            rt.len()
        )));
    }
    let mut out = Vec::with_capacity(g.copy_pages() as usize);
    // Header payload.
    let mut h = Vec::with_capacity(PAYLOAD_SIZE);
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h.extend_from_slice(&g.block_size.to_le_bytes());
    h.extend_from_slice(&g.cluster_size_bytes.to_le_bytes());
    h.extend_from_slice(&g.disk_size_bytes.to_le_bytes());
    h.extend_from_slice(&g.num_clusters.to_le_bytes());
    h.extend_from_slice(&g.data_offset_bytes.to_le_bytes());
    h.extend_from_slice(&g.rt_pages.to_le_bytes());
    h.extend_from_slice(&g.ot_pages.to_le_bytes());
    h.extend_from_slice(&(rt.len() as u32).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    check_name("pool", &meta.name)?;
    h.extend_from_slice(&(meta.name.len() as u16).to_le_bytes());
    h.extend_from_slice(meta.name.as_bytes());
    h.resize(PAYLOAD_SIZE, 0);
    out.push(h);
    // Replica table pages.
    for i in 0..g.rt_pages as usize {
        let start = (i * PAYLOAD_SIZE).min(rt.len());
        let end = ((i + 1) * PAYLOAD_SIZE).min(rt.len());
        let mut p = rt[start..end].to_vec();
        p.resize(PAYLOAD_SIZE, 0);
        out.push(p);
    }
    // Owner table pages.
    for chunk in 0..g.ot_pages as usize {
        let mut p = Vec::with_capacity(PAYLOAD_SIZE);
        let start = chunk * OWNERS_PER_PAGE;
        let end = (start + OWNERS_PER_PAGE).min(meta.owners.len());
        for o in meta.owners.get(start..end).unwrap_or(&[]) {
            p.extend_from_slice(&o.slot.to_le_bytes());
            p.extend_from_slice(&o.logical.to_le_bytes());
        }
        p.resize(PAYLOAD_SIZE, 0);
        out.push(p);
    }
    Ok(out)
}

fn encode_replica_table(replicas: &[ReplicaRecord]) -> Result<Vec<u8>, FormatError> {
    let mut b = Vec::new();
    b.extend_from_slice(&(replicas.len() as u32).to_le_bytes());
    for r in replicas {
        if r.slot == 0 {
            return Err(FormatError::ReplicaTable("slot 0 is reserved".into()));
        }
        check_name("replica", &r.name)?;
        if r.allowed_hosts.len() > MAX_ALLOWED_HOSTS {
            return Err(FormatError::ReplicaTable(format!(
                "at most {MAX_ALLOWED_HOSTS} allowed hosts"
            )));
        }
        b.extend_from_slice(&r.slot.to_le_bytes());
        b.extend_from_slice(r.uuid.as_bytes());
        b.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
        b.extend_from_slice(r.name.as_bytes());
        b.extend_from_slice(&r.size_bytes.to_le_bytes());
        b.push(u8::from(r.thin));
        b.push(r.share as u8);
        b.extend_from_slice(&(r.allowed_hosts.len() as u16).to_le_bytes());
        for h in &r.allowed_hosts {
            if h.is_empty() || h.len() > MAX_NQN_LEN {
                return Err(FormatError::ReplicaTable(format!(
                    "host nqn must be 1..={MAX_NQN_LEN} bytes"
                )));
            }
            b.extend_from_slice(&(h.len() as u16).to_le_bytes());
            b.extend_from_slice(h.as_bytes());
        }
    }
    Ok(b)
}

/// Bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("truncated at byte {}", self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, max: usize) -> Result<String, String> {
        let n = self.u16()? as usize;
        if n == 0 || n > max {
            return Err(format!("string length {n} out of range 1..={max}"));
        }
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "string is not utf-8".to_string())?;
        if s.contains('\0') {
            return Err("string contains NUL".into());
        }
        Ok(s.to_string())
    }
}

/// What a header page says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    pub page: PageHeader,
    pub name: String,
    pub geometry: Geometry,
    pub rt_len_bytes: u32,
}

/// Decodes the header page of `copy` (disk page `copy.index()`).
pub fn decode_header(page: &[u8], copy: Copy) -> Result<HeaderInfo, FormatError> {
    let disk_index = u64::from(copy.index());
    let (hdr, payload) = open_page(page, disk_index)?;
    let bad = |reason: String| FormatError::BadPage {
        index: disk_index,
        reason,
    };
    if hdr.kind != PageKind::Header || hdr.index != 0 || hdr.copy != copy.index() {
        return Err(bad(format!(
            "expected the header of copy {}, found {:?} page {} of copy {}",
            copy.letter(),
            hdr.kind,
            hdr.index,
            hdr.copy
        )));
    }
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let version = r.u32().map_err(bad)?;
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    let geometry = Geometry {
        block_size: r.u32().map_err(bad)?,
        cluster_size_bytes: r.u64().map_err(bad)?,
        disk_size_bytes: r.u64().map_err(bad)?,
        num_clusters: r.u64().map_err(bad)?,
        data_offset_bytes: r.u64().map_err(bad)?,
        rt_pages: r.u32().map_err(bad)?,
        ot_pages: r.u32().map_err(bad)?,
    };
    let rt_len_bytes = r.u32().map_err(bad)?;
    let _reserved = r.u32().map_err(bad)?;
    let name = r
        .string(MAX_NAME_LEN)
        .map_err(|e| bad(format!("pool name: {e}")))?;
    geometry.validate()?;
    if rt_len_bytes as usize > geometry.rt_pages as usize * PAYLOAD_SIZE {
        return Err(bad(format!(
            "replica table length {rt_len_bytes} exceeds its pages"
        )));
    }
    Ok(HeaderInfo {
        page: hdr,
        name,
        geometry,
        rt_len_bytes,
    })
}

/// A decoded copy: the metadata, its generation and each page's generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCopy {
    pub meta: PoolMeta,
    pub generation: u64,
    /// Generation of every page of the copy (index 0 = header).
    pub page_generations: Vec<u64>,
}

/// Decodes a whole copy from its header page and its contiguous body
/// (`geometry.copy_pages() - 1` pages read from `body_offset(copy)`).
pub fn decode_copy(header: &[u8], body: &[u8], copy: Copy) -> Result<DecodedCopy, FormatError> {
    let info = decode_header(header, copy)?;
    let g = info.geometry;
    let body_pages = (g.copy_pages() - 1) as usize;
    if body.len() != body_pages * PAGE_SIZE {
        return Err(FormatError::BadPage {
            index: 2,
            reason: format!(
                "copy {} body is {} bytes, expected {}",
                copy.letter(),
                body.len(),
                body_pages * PAGE_SIZE
            ),
        });
    }
    let header_gen = info.page.generation;
    let mut page_generations = Vec::with_capacity(body_pages + 1);
    page_generations.push(header_gen);
    let mut rt = Vec::with_capacity(g.rt_pages as usize * PAYLOAD_SIZE);
    let mut owners = Vec::with_capacity(g.num_clusters as usize);
    for i in 0..body_pages {
        let index = i as u64 + 1;
        let disk_index = g.page_offset(copy, index) / PAGE_SIZE as u64;
        let page = &body[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
        let (hdr, payload) = open_page(page, disk_index)?;
        let expect_kind = g.page_kind(index);
        if hdr.kind != expect_kind
            || u64::from(hdr.index) != index
            || hdr.copy != copy.index()
            || hdr.pool_uuid != info.page.pool_uuid
        {
            return Err(FormatError::BadPage {
                index: disk_index,
                reason: format!(
                    "expected {:?} page {} of copy {} of pool {}, found {:?} page {} of copy {} of pool {}",
                    expect_kind,
                    index,
                    copy.letter(),
                    info.page.pool_uuid,
                    hdr.kind,
                    hdr.index,
                    hdr.copy,
                    hdr.pool_uuid
                ),
            });
        }
        if hdr.generation > header_gen {
            return Err(FormatError::Interrupted {
                copy: copy.letter(),
                index: disk_index,
                page_gen: hdr.generation,
                header_gen,
            });
        }
        page_generations.push(hdr.generation);
        match expect_kind {
            PageKind::ReplicaTable => rt.extend_from_slice(payload),
            _ => {
                for e in payload.chunks_exact(8) {
                    if owners.len() as u64 == g.num_clusters {
                        break;
                    }
                    owners.push(Owner {
                        slot: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
                        logical: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                    });
                }
            }
        }
    }
    let replicas = decode_replica_table(&rt[..info.rt_len_bytes as usize])
        .map_err(FormatError::ReplicaTable)?;
    Ok(DecodedCopy {
        meta: PoolMeta {
            uuid: info.page.pool_uuid,
            name: info.name,
            geometry: g,
            replicas,
            owners,
        },
        generation: header_gen,
        page_generations,
    })
}

fn decode_replica_table(buf: &[u8]) -> Result<Vec<ReplicaRecord>, String> {
    let mut r = Reader { buf, pos: 0 };
    let count = r.u32()? as usize;
    // Each record takes at least 36 bytes: refuse absurd counts early.
    if count > buf.len() / 36 + 1 {
        return Err(format!("{count} replicas cannot fit {} bytes", buf.len()));
    }
    let mut out: Vec<ReplicaRecord> = Vec::with_capacity(count);
    for _ in 0..count {
        let slot = r.u32()?;
        let mut u = [0u8; 16];
        u.copy_from_slice(r.take(16)?);
        let name = r.string(MAX_NAME_LEN)?;
        let size_bytes = r.u64()?;
        let thin = match r.u8()? {
            0 => false,
            1 => true,
            v => return Err(format!("replica '{name}': bad thin flag {v}")),
        };
        let share = match r.u8()? {
            0 => Share::None,
            1 => Share::Nvmf,
            v => return Err(format!("replica '{name}': bad share protocol {v}")),
        };
        let nhosts = r.u16()? as usize;
        if nhosts > MAX_ALLOWED_HOSTS {
            return Err(format!("replica '{name}': {nhosts} allowed hosts"));
        }
        let mut allowed_hosts = Vec::with_capacity(nhosts);
        for _ in 0..nhosts {
            allowed_hosts.push(r.string(MAX_NQN_LEN)?);
        }
        if slot == 0 {
            return Err(format!("replica '{name}' uses reserved slot 0"));
        }
        if let Some(prev) = out.last() {
            if prev.slot >= slot {
                return Err(format!("replica slots not strictly increasing at '{name}'"));
            }
        }
        out.push(ReplicaRecord {
            slot,
            uuid: Uuid::from_bytes(u),
            name,
            size_bytes,
            thin,
            share,
            allowed_hosts,
        });
    }
    if r.pos != buf.len() {
        return Err(format!("{} trailing bytes", buf.len() - r.pos));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
