//! Pools and replicas.
//!
//! A pool owns exactly one disk. Its metadata (see `docs/pool-format.md`) is
//! kept in two mirrored copies at the start of the disk; every change is
//! committed to copy A then copy B, each with data pages first and the
//! header last, so at every instant one copy holds the newest committed
//! generation. A replica is a range of clusters of its pool, exposed as a
//! [`blockdev::BlockDevice`].
//!
//! Threading model: the [`PoolRegistry`] is shared (`Arc`) by the gRPC
//! services and data-path users. Metadata changes of one pool are serialised
//! by that pool's async metadata lock; the replica I/O path reads the
//! cluster map through atomics and takes no pool-wide lock unless it has to
//! allocate a cluster (thin replicas).

mod disk;
mod registry;
mod replica;

pub use registry::PoolRegistry;
pub use replica::Replica;

use serde::Serialize;
use uuid::Uuid;

/// State of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolState {
    /// Imported and healthy.
    Online,
    /// Imported, but the disk returned I/O errors on the data path.
    Degraded,
    /// The disk failed a metadata update or cannot be read: no metadata
    /// change is accepted any more.
    Faulted,
}

impl std::fmt::Display for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolState::Online => "online",
            PoolState::Degraded => "degraded",
            PoolState::Faulted => "faulted",
        })
    }
}

/// How a replica is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareProtocol {
    /// Not shared: reachable only inside this engine (`bdev:///<uuid>`).
    #[default]
    None,
    /// Exported over NVMe/TCP.
    Nvmf,
}

/// A point-in-time view of a pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolInfo {
    pub name: String,
    pub uuid: Uuid,
    /// Canonical disk URIs (one).
    pub disks: Vec<String>,
    pub state: PoolState,
    /// Bytes available for replica data (disk size minus metadata).
    pub capacity_bytes: u64,
    /// Bytes of clusters allocated to replicas.
    pub used_bytes: u64,
    /// Sum of the sizes of all replicas (thin replicas count in full).
    pub committed_bytes: u64,
    pub cluster_size_bytes: u64,
    /// Number of replicas in the pool.
    pub replica_count: u64,
}

/// A point-in-time view of a replica.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaInfo {
    pub name: String,
    pub uuid: Uuid,
    pub pool_name: String,
    pub pool_uuid: Uuid,
    pub size_bytes: u64,
    pub thin: bool,
    /// Bytes of clusters currently allocated to this replica.
    pub allocated_bytes: u64,
    pub share: ShareProtocol,
    /// URI under which the replica is reachable: `bdev:///<uuid>` when not
    /// shared.
    pub uri: String,
    pub allowed_hosts: Vec<String>,
}

/// Arguments of [`PoolRegistry::create_pool`].
#[derive(Debug, Clone)]
pub struct CreatePoolArgs {
    pub name: String,
    /// Required uuid; when set and the disk already holds this pool, it must
    /// match.
    pub uuid: Option<Uuid>,
    /// Exactly one disk URI.
    pub disks: Vec<String>,
    /// Cluster size for a new pool (power of two, 1 MiB..=64 MiB); default
    /// 4 MiB. Ignored on import.
    pub cluster_size_bytes: Option<u64>,
}

/// Arguments of [`PoolRegistry::create_replica`].
#[derive(Debug, Clone)]
pub struct CreateReplicaArgs {
    /// Pool name or pool uuid.
    pub pool: String,
    pub name: String,
    pub uuid: Uuid,
    pub size_bytes: u64,
    pub thin: bool,
    pub share: ShareProtocol,
    pub allowed_hosts: Vec<String>,
}

/// Which replica.
#[derive(Debug, Clone)]
pub enum ReplicaSelector {
    Uuid(Uuid),
    /// Pool (name or uuid) and replica name.
    Name {
        pool: String,
        name: String,
    },
}

/// Outcome of [`PoolRegistry::check_pool`].
#[derive(Debug, Clone, Serialize, Default)]
pub struct CheckReport {
    pub pool: String,
    /// Empty when the pool is consistent.
    pub problems: Vec<String>,
    pub clusters_total: u64,
    pub clusters_used: u64,
    pub replicas: u64,
    pub generation: u64,
}

/// Stable error kinds, for mapping to gRPC status codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The request conflicts with the current state (disk in use by another
    /// pool, replica shrink, pool faulted...).
    FailedPrecondition,
    /// Not enough free clusters.
    NoSpace,
    /// The disk failed or its metadata is unreadable.
    Io,
}

/// Errors of the pool layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("pool '{0}' not found")]
    PoolNotFound(String),
    #[error("replica '{0}' not found")]
    ReplicaNotFound(String),
    #[error("pool '{name}' already exists on {disk}")]
    PoolExists { name: String, disk: String },
    #[error("disk {disk} is already used by pool '{name}'")]
    DiskInUse { disk: String, name: String },
    #[error("disk {disk} holds pool '{found}' ({uuid}), refusing to create pool '{wanted}' on it")]
    DiskHoldsOtherPool {
        disk: String,
        found: String,
        uuid: Uuid,
        wanted: String,
    },
    #[error("pool '{name}' on {disk} has uuid {found}, not the requested {wanted}")]
    UuidMismatch {
        name: String,
        disk: String,
        found: Uuid,
        wanted: Uuid,
    },
    #[error("replica '{name}' already exists in pool '{pool}'")]
    ReplicaNameExists { pool: String, name: String },
    #[error("replica {0} already exists")]
    ReplicaUuidExists(Uuid),
    #[error("pool '{pool}' has {free_bytes} bytes free, {needed_bytes} needed")]
    NoSpace {
        pool: String,
        needed_bytes: u64,
        free_bytes: u64,
    },
    #[error("pool '{pool}' is faulted; no change is accepted")]
    Faulted { pool: String },
    #[error("pool '{pool}': {reason}")]
    FailedPrecondition { pool: String, reason: String },
    #[error("pool '{pool}': metadata unreadable: {reason}")]
    Corrupt { pool: String, reason: String },
    #[error("disk {disk}: {source}")]
    Disk {
        disk: String,
        #[source]
        source: blockdev::BlockDevError,
    },
}

impl PoolError {
    /// The stable kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PoolError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            PoolError::PoolNotFound(_) | PoolError::ReplicaNotFound(_) => ErrorKind::NotFound,
            PoolError::PoolExists { .. }
            | PoolError::ReplicaNameExists { .. }
            | PoolError::ReplicaUuidExists(_) => ErrorKind::AlreadyExists,
            PoolError::DiskInUse { .. }
            | PoolError::DiskHoldsOtherPool { .. }
            | PoolError::UuidMismatch { .. }
            | PoolError::Faulted { .. }
            | PoolError::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            PoolError::NoSpace { .. } => ErrorKind::NoSpace,
            PoolError::Corrupt { .. } => ErrorKind::Io,
            PoolError::Disk { source, .. } => match source {
                blockdev::BlockDevError::Uri(_) => ErrorKind::InvalidArgument,
                blockdev::BlockDevError::Open { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    ErrorKind::NotFound
                }
                // A directory, a character device or another path that is
                // not a disk: the request named the wrong thing.
                blockdev::BlockDevError::Open { source, .. }
                    if matches!(
                        source.kind(),
                        std::io::ErrorKind::IsADirectory
                            | std::io::ErrorKind::InvalidInput
                            | std::io::ErrorKind::Unsupported
                    ) =>
                {
                    ErrorKind::InvalidArgument
                }
                blockdev::BlockDevError::TooSmall { .. } => ErrorKind::InvalidArgument,
                _ => ErrorKind::Io,
            },
        }
    }
}
