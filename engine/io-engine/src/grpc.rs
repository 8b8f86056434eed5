//! The engine gRPC API (`io_engine.v1`, see `engine/api`).
//!
//! One tonic service per area, each a thin shell over the shared
//! [`ShareManager`] (and through it the [`PoolRegistry`]): a handler
//! validates its request (clear `INVALID_ARGUMENT` errors before anything
//! reaches the pool layer), calls the share manager for anything that may
//! change what the NVMe/TCP target exports (pool create/import/export/
//! destroy, replica create/destroy/share/unshare) and the registry for the
//! rest, and converts the result to the wire types. Replicas are always
//! reported through [`ShareManager::present`], so a shared replica's URI is
//! its `nvmf://` one. Pool-layer and share errors become [`tonic::Status`]
//! in exactly one place, [`error_status`].
//!
//! Threading model: handlers run on the tokio runtime, one task per request;
//! they hold no lock of their own and share only the share manager (`Arc`).

mod host;
mod nexus;
mod pool;
mod replica;
mod stats;

pub use host::{scan_block_devices, HostService};
pub use nexus::{nexus_message, NexusService, RebuildService};
pub use pool::PoolService;
pub use replica::ReplicaService;
pub use stats::{io_stats_message, StatsService};

use std::{net::SocketAddr, sync::Arc};

use io_engine_api::v1;
use tonic::{transport::server::Router, Status};
use uuid::Uuid;

use crate::{
    nexus::NexusRegistry,
    pool::{ErrorKind, PoolInfo, PoolRegistry, PoolState, ReplicaInfo, ShareProtocol},
    share::{ShareError, ShareManager},
};

/// Who this engine is, as reported by `GetHostInfo`.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    pub node_name: String,
    /// The address the gRPC listener is bound to.
    pub grpc_endpoint: SocketAddr,
}

/// Builds the gRPC router serving every service of the API.
pub fn router(share: Arc<ShareManager>, nexus: Arc<NexusRegistry>, host: HostIdentity) -> Router {
    let registry: Arc<PoolRegistry> = share.registry().clone();
    tonic::transport::Server::builder()
        .add_service(v1::nexus_rpc_server::NexusRpcServer::new(
            NexusService::new(nexus.clone()),
        ))
        .add_service(v1::stats_rpc_server::StatsRpcServer::new(
            StatsService::new(registry.clone(), nexus.clone()),
        ))
        .add_service(v1::rebuild_rpc_server::RebuildRpcServer::new(
            RebuildService::new(nexus),
        ))
        .add_service(v1::pool_rpc_server::PoolRpcServer::new(PoolService::new(
            share.clone(),
        )))
        .add_service(v1::replica_rpc_server::ReplicaRpcServer::new(
            ReplicaService::new(share),
        ))
        .add_service(v1::host_rpc_server::HostRpcServer::new(HostService::new(
            registry, host,
        )))
}

/// The one mapping from engine errors (pool layer, share manager and
/// NVMe/TCP target; a [`crate::pool::PoolError`] converts into a
/// [`ShareError`]) to gRPC statuses.
///
/// The status message is the error's `Display` text, so clients can show it
/// as is.
pub fn error_status(err: impl Into<ShareError>) -> Status {
    let err = err.into();
    status_for(err.kind(), err.to_string())
}

/// The status of an error of kind `kind`.
pub fn status_for(kind: ErrorKind, message: String) -> Status {
    match kind {
        ErrorKind::InvalidArgument => Status::invalid_argument(message),
        ErrorKind::NotFound => Status::not_found(message),
        ErrorKind::AlreadyExists => Status::already_exists(message),
        ErrorKind::FailedPrecondition => Status::failed_precondition(message),
        ErrorKind::NoSpace => Status::resource_exhausted(message),
        ErrorKind::Io => {
            tracing::warn!(error = %message, "engine operation failed");
            Status::internal(message)
        }
    }
}

/// Checks that a name-like field is set and printable.
fn require_name(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?} contains control characters"
        )));
    }
    Ok(())
}

/// Parses a uuid field.
fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    Uuid::parse_str(value).map_err(|e| {
        Status::invalid_argument(format!("{field} {value:?} is not a valid uuid: {e}"))
    })
}

fn pool_state(state: PoolState) -> v1::PoolState {
    match state {
        PoolState::Online => v1::PoolState::PoolOnline,
        PoolState::Degraded => v1::PoolState::PoolDegraded,
        PoolState::Faulted => v1::PoolState::PoolFaulted,
    }
}

fn share_protocol(share: ShareProtocol) -> v1::ShareProtocol {
    match share {
        ShareProtocol::None => v1::ShareProtocol::None,
        ShareProtocol::Nvmf => v1::ShareProtocol::Nvmf,
    }
}

/// Wire form of a pool.
fn pool_message(p: PoolInfo) -> v1::Pool {
    v1::Pool {
        name: p.name,
        uuid: p.uuid.to_string(),
        disks: p.disks,
        state: pool_state(p.state).into(),
        capacity: p.capacity_bytes,
        used: p.used_bytes,
        committed: p.committed_bytes,
        cluster_size: p.cluster_size_bytes,
        replica_count: p.replica_count,
    }
}

/// Wire form of a replica.
fn replica_message(r: ReplicaInfo) -> v1::Replica {
    v1::Replica {
        name: r.name,
        uuid: r.uuid.to_string(),
        pool_name: r.pool_name,
        pool_uuid: r.pool_uuid.to_string(),
        size: r.size_bytes,
        thin: r.thin,
        allocated: r.allocated_bytes,
        share: share_protocol(r.share).into(),
        uri: r.uri,
        allowed_hosts: r.allowed_hosts,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pool::PoolError;
    use tonic::Code;

    #[test]
    fn errors_map_by_kind_with_display_message() {
        let cases = [
            (
                PoolError::InvalidArgument("bad".into()),
                Code::InvalidArgument,
            ),
            (PoolError::PoolNotFound("x".into()), Code::NotFound),
            (PoolError::ReplicaNotFound("r".into()), Code::NotFound),
            (
                PoolError::ReplicaNameExists {
                    pool: "p".into(),
                    name: "r".into(),
                },
                Code::AlreadyExists,
            ),
            (
                PoolError::DiskInUse {
                    disk: "aio:///d".into(),
                    name: "p".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                PoolError::NoSpace {
                    pool: "p".into(),
                    needed_bytes: 2,
                    free_bytes: 1,
                },
                Code::ResourceExhausted,
            ),
            (
                PoolError::Corrupt {
                    pool: "p".into(),
                    reason: "crc".into(),
                },
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let status = error_status(err);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
        let status = error_status(PoolError::PoolNotFound("x".into()));
        assert_eq!(status.message(), "pool 'x' not found");
        let status = error_status(ShareError::NoTarget);
        assert_eq!(status.code(), Code::FailedPrecondition);
        let status = error_status(ShareError::InvalidArgument("bad nqn".into()));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid argument: bad nqn");
    }

    #[test]
    fn field_checks() {
        assert!(require_name("name", "tpool").is_ok());
        assert_eq!(
            require_name("name", "").map_err(|s| s.message().to_string()),
            Err("name must not be empty".to_string())
        );
        assert!(require_name("name", "a\nb").is_err());
        assert!(parse_uuid("uuid", "not-a-uuid").is_err());
        assert!(parse_uuid("uuid", "").is_err());
        assert!(parse_uuid("uuid", "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f").is_ok());
    }
}
