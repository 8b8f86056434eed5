//! On-disk format of io-engine pools.
//!
//! This crate is pure: no I/O, no runtime, no allocation beyond the
//! structures it returns. It turns pool metadata into 4 KiB pages and back,
//! and allocates clusters, so both can be property-tested and fuzzed alone.
//! The byte layout is documented in `docs/pool-format.md`.
//!
//! Summary:
//! - every metadata page is [`PAGE_SIZE`] bytes: a 48-byte [`PageHeader`]
//!   (magic, kind, copy, index, generation, pool uuid, CRC32C) then payload;
//! - the metadata exists twice (copy A and copy B); each copy is a header
//!   page (pages 0 and 1 of the disk) plus body pages (replica table, then
//!   cluster owner table);
//! - a copy is valid when its header and all its body pages check out and no
//!   body page carries a generation newer than its header: a writer puts
//!   body pages first and the header last, so an interrupted update leaves
//!   that copy invalid and the other one intact.
//!
//! Dependency rule: only `crc32c`, `uuid` and `thiserror`.

#![forbid(unsafe_code)]

pub mod alloc;
pub mod check;
pub mod meta;
pub mod page;

pub use alloc::ClusterAllocator;
pub use check::{check_meta, Problem};
pub use meta::{
    decode_copy, encode_payloads, Copy, Geometry, Owner, PoolMeta, ReplicaRecord, Share,
    DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES, MAX_ALLOWED_HOSTS, MAX_CLUSTER_SIZE, MAX_NAME_LEN,
    MAX_NQN_LEN, MIN_CLUSTER_SIZE,
};
pub use page::{
    open_page, seal_page, PageHeader, PageKind, PAGE_HEADER_SIZE, PAGE_SIZE, PAYLOAD_SIZE,
};

/// Errors decoding metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("page {index}: no pool signature")]
    NoMagic { index: u64 },
    #[error("page {index}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        index: u64,
        stored: u32,
        computed: u32,
    },
    #[error("page {index}: {reason}")]
    BadPage { index: u64, reason: String },
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error("invalid geometry: {0}")]
    Geometry(String),
    #[error("replica table: {0}")]
    ReplicaTable(String),
    #[error("owner table: {0}")]
    OwnerTable(String),
    #[error("copy {copy}: page {index} has generation {page_gen} newer than its header ({header_gen}): interrupted update")]
    Interrupted {
        copy: char,
        index: u64,
        page_gen: u64,
        header_gen: u64,
    },
}
