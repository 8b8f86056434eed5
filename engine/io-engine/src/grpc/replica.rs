//! `ReplicaRpc`: create, destroy, list and resize replicas.

use std::sync::Arc;

use io_engine_api::v1::{self, destroy_replica_request, replica_rpc_server::ReplicaRpc};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{parse_uuid, pool_error_status, replica_message, require_name};
use crate::pool::{CreateReplicaArgs, PoolRegistry, ReplicaInfo, ReplicaSelector, ShareProtocol};

/// The `ReplicaRpc` service.
#[derive(Clone)]
pub struct ReplicaService {
    registry: Arc<PoolRegistry>,
}

impl ReplicaService {
    pub fn new(registry: Arc<PoolRegistry>) -> Self {
        Self { registry }
    }
}

/// Validates a create request and turns it into registry arguments.
fn create_args(req: v1::CreateReplicaRequest) -> Result<CreateReplicaArgs, Status> {
    require_name("replica name", &req.name)?;
    let uuid = parse_uuid("replica uuid", &req.uuid)?;
    require_name("pool", &req.pool)?;
    if req.size == 0 {
        return Err(Status::invalid_argument(
            "replica size must be greater than 0",
        ));
    }
    let share = match v1::ShareProtocol::try_from(req.share) {
        Ok(v1::ShareProtocol::None) => ShareProtocol::None,
        Ok(v1::ShareProtocol::Nvmf) => ShareProtocol::Nvmf,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown share protocol {}",
                req.share
            )))
        }
    };
    Ok(CreateReplicaArgs {
        pool: req.pool,
        name: req.name,
        uuid,
        size_bytes: req.size,
        thin: req.thin,
        share,
        allowed_hosts: req.allowed_hosts,
    })
}

/// Validates the replica selector of a destroy request.
fn selector(req: v1::DestroyReplicaRequest) -> Result<ReplicaSelector, Status> {
    match req.replica {
        Some(destroy_replica_request::Replica::Uuid(uuid)) => {
            Ok(ReplicaSelector::Uuid(parse_uuid("replica uuid", &uuid)?))
        }
        Some(destroy_replica_request::Replica::Name(v1::ReplicaName { pool, name })) => {
            require_name("pool", &pool)?;
            require_name("replica name", &name)?;
            Ok(ReplicaSelector::Name { pool, name })
        }
        None => Err(Status::invalid_argument(
            "a replica is named by its uuid or by its pool and name; neither given",
        )),
    }
}

/// Label of a selector for log spans.
fn selector_label(req: &v1::DestroyReplicaRequest) -> String {
    match &req.replica {
        Some(destroy_replica_request::Replica::Uuid(uuid)) => uuid.clone(),
        Some(destroy_replica_request::Replica::Name(n)) => format!("{}/{}", n.pool, n.name),
        None => String::new(),
    }
}

/// Filters of a list request.
struct ListFilter {
    name: Option<String>,
    pool: Option<String>,
    uuid: Option<Uuid>,
}

impl ListFilter {
    fn new(req: v1::ListReplicasRequest) -> Result<Self, Status> {
        let uuid = req
            .uuid
            .as_deref()
            .map(|u| parse_uuid("replica uuid", u))
            .transpose()?;
        Ok(Self {
            name: req.name,
            pool: req.pool,
            uuid,
        })
    }

    fn matches(&self, r: &ReplicaInfo) -> bool {
        self.name.as_ref().is_none_or(|n| &r.name == n)
            && self
                .pool
                .as_ref()
                .is_none_or(|p| &r.pool_name == p || r.pool_uuid.to_string() == *p)
            && self.uuid.is_none_or(|u| r.uuid == u)
    }
}

#[tonic::async_trait]
impl ReplicaRpc for ReplicaService {
    #[instrument(skip_all, fields(pool = %request.get_ref().pool, replica = %request.get_ref().name))]
    async fn create_replica(
        &self,
        request: Request<v1::CreateReplicaRequest>,
    ) -> Result<Response<v1::Replica>, Status> {
        let args = create_args(request.into_inner())?;
        let replica = self
            .registry
            .create_replica(args)
            .await
            .map_err(pool_error_status)?;
        Ok(Response::new(replica_message(replica)))
    }

    #[instrument(skip_all, fields(replica = %selector_label(request.get_ref())))]
    async fn destroy_replica(
        &self,
        request: Request<v1::DestroyReplicaRequest>,
    ) -> Result<Response<v1::DestroyReplicaResponse>, Status> {
        let sel = selector(request.into_inner())?;
        self.registry
            .destroy_replica(&sel)
            .await
            .map_err(pool_error_status)?;
        Ok(Response::new(v1::DestroyReplicaResponse {}))
    }

    #[instrument(skip_all)]
    async fn list_replicas(
        &self,
        request: Request<v1::ListReplicasRequest>,
    ) -> Result<Response<v1::ListReplicasResponse>, Status> {
        let filter = ListFilter::new(request.into_inner())?;
        let mut replicas: Vec<_> = self
            .registry
            .list_replicas()
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        replicas.sort_by(|a, b| (&a.pool_name, &a.name).cmp(&(&b.pool_name, &b.name)));
        Ok(Response::new(v1::ListReplicasResponse {
            replicas: replicas.into_iter().map(replica_message).collect(),
        }))
    }

    #[instrument(skip_all, fields(replica = %request.get_ref().uuid))]
    async fn resize_replica(
        &self,
        request: Request<v1::ResizeReplicaRequest>,
    ) -> Result<Response<v1::Replica>, Status> {
        let req = request.into_inner();
        let uuid = parse_uuid("replica uuid", &req.uuid)?;
        if req.requested_size == 0 {
            return Err(Status::invalid_argument(
                "requested size must be greater than 0",
            ));
        }
        let replica = self
            .registry
            .resize_replica(&ReplicaSelector::Uuid(uuid), req.requested_size)
            .await
            .map_err(pool_error_status)?;
        Ok(Response::new(replica_message(replica)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const UUID: &str = "0b1a4b8e-3f5d-4a57-9d8e-1c2b3a4d5e6f";

    fn request() -> v1::CreateReplicaRequest {
        v1::CreateReplicaRequest {
            name: "r1".into(),
            uuid: UUID.into(),
            pool: "p".into(),
            size: 1 << 20,
            thin: false,
            share: v1::ShareProtocol::None.into(),
            allowed_hosts: vec![],
        }
    }

    fn message(r: Result<CreateReplicaArgs, Status>) -> String {
        r.err().map(|s| s.message().to_string()).unwrap_or_default()
    }

    #[test]
    fn create_request_validation() {
        assert!(create_args(request()).is_ok());
        assert_eq!(
            message(create_args(v1::CreateReplicaRequest {
                size: 0,
                ..request()
            })),
            "replica size must be greater than 0"
        );
        assert_eq!(
            message(create_args(v1::CreateReplicaRequest {
                name: String::new(),
                ..request()
            })),
            "replica name must not be empty"
        );
        assert_eq!(
            message(create_args(v1::CreateReplicaRequest {
                pool: String::new(),
                ..request()
            })),
            "pool must not be empty"
        );
        assert!(message(create_args(v1::CreateReplicaRequest {
            uuid: "x".into(),
            ..request()
        }))
        .starts_with("replica uuid \"x\" is not a valid uuid"));
        assert_eq!(
            message(create_args(v1::CreateReplicaRequest {
                share: 7,
                ..request()
            })),
            "unknown share protocol 7"
        );
    }

    #[test]
    fn destroy_selector() {
        assert!(selector(v1::DestroyReplicaRequest { replica: None }).is_err());
        let by_uuid = v1::DestroyReplicaRequest {
            replica: Some(destroy_replica_request::Replica::Uuid(UUID.into())),
        };
        assert!(matches!(selector(by_uuid), Ok(ReplicaSelector::Uuid(_))));
        let by_name = v1::DestroyReplicaRequest {
            replica: Some(destroy_replica_request::Replica::Name(v1::ReplicaName {
                pool: "p".into(),
                name: String::new(),
            })),
        };
        assert!(selector(by_name).is_err());
    }
}
