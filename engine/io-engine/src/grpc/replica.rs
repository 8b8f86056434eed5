//! `ReplicaRpc`: create, destroy, list, resize, share and unshare replicas.
//!
//! Every replica returned goes through [`ShareManager::present`], so a
//! shared replica is reported with its `nvmf://` URI.

use std::sync::Arc;

use io_engine_api::v1::{
    self, destroy_replica_request, replica_rpc_server::ReplicaRpc, share_replica_request,
    unshare_replica_request,
};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{error_status, parse_uuid, replica_message, require_name};
use crate::{
    pool::{CreateReplicaArgs, ReplicaInfo, ReplicaSelector, ShareProtocol},
    share::ShareManager,
};

/// The `ReplicaRpc` service.
#[derive(Clone)]
pub struct ReplicaService {
    share: Arc<ShareManager>,
}

impl ReplicaService {
    pub fn new(share: Arc<ShareManager>) -> Self {
        Self { share }
    }

    /// Wire form of a replica, with its URI as shared.
    fn message(&self, r: ReplicaInfo) -> v1::Replica {
        replica_message(self.share.present(r))
    }
}

/// Parses a wire share protocol.
fn share_protocol(value: i32) -> Result<ShareProtocol, Status> {
    match v1::ShareProtocol::try_from(value) {
        Ok(v1::ShareProtocol::None) => Ok(ShareProtocol::None),
        Ok(v1::ShareProtocol::Nvmf) => Ok(ShareProtocol::Nvmf),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown share protocol {value}"
        ))),
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
    let share = share_protocol(req.share)?;
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

/// The replica a request names: by uuid or by pool and name (the
/// `oneof replica` of destroy, share and unshare requests).
enum WireSelector<'a> {
    Uuid(&'a str),
    Name(&'a v1::ReplicaName),
}

/// Requests that name one replica.
trait NamesReplica {
    fn wire_selector(&self) -> Option<WireSelector<'_>>;
}

/// Implements [`NamesReplica`] for a request with a `oneof replica`.
macro_rules! names_replica {
    ($request:ty, $oneof:ident) => {
        impl NamesReplica for $request {
            fn wire_selector(&self) -> Option<WireSelector<'_>> {
                match &self.replica {
                    Some($oneof::Replica::Uuid(uuid)) => Some(WireSelector::Uuid(uuid)),
                    Some($oneof::Replica::Name(name)) => Some(WireSelector::Name(name)),
                    None => None,
                }
            }
        }
    };
}

names_replica!(v1::DestroyReplicaRequest, destroy_replica_request);
names_replica!(v1::ShareReplicaRequest, share_replica_request);
names_replica!(v1::UnshareReplicaRequest, unshare_replica_request);

/// Validates the replica selector of a request.
fn selector(req: &impl NamesReplica) -> Result<ReplicaSelector, Status> {
    match req.wire_selector() {
        Some(WireSelector::Uuid(uuid)) => {
            Ok(ReplicaSelector::Uuid(parse_uuid("replica uuid", uuid)?))
        }
        Some(WireSelector::Name(v1::ReplicaName { pool, name })) => {
            require_name("pool", pool)?;
            require_name("replica name", name)?;
            Ok(ReplicaSelector::Name {
                pool: pool.clone(),
                name: name.clone(),
            })
        }
        None => Err(Status::invalid_argument(
            "a replica is named by its uuid or by its pool and name; neither given",
        )),
    }
}

/// Label of a selector for log spans.
fn selector_label(req: &impl NamesReplica) -> String {
    match req.wire_selector() {
        Some(WireSelector::Uuid(uuid)) => uuid.to_string(),
        Some(WireSelector::Name(n)) => format!("{}/{}", n.pool, n.name),
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
            .share
            .create_replica(args)
            .await
            .map_err(error_status)?;
        Ok(Response::new(self.message(replica)))
    }

    #[instrument(skip_all, fields(replica = %selector_label(request.get_ref())))]
    async fn destroy_replica(
        &self,
        request: Request<v1::DestroyReplicaRequest>,
    ) -> Result<Response<v1::DestroyReplicaResponse>, Status> {
        let sel = selector(request.get_ref())?;
        self.share
            .destroy_replica(&sel)
            .await
            .map_err(error_status)?;
        Ok(Response::new(v1::DestroyReplicaResponse {}))
    }

    #[instrument(skip_all)]
    async fn list_replicas(
        &self,
        request: Request<v1::ListReplicasRequest>,
    ) -> Result<Response<v1::ListReplicasResponse>, Status> {
        let filter = ListFilter::new(request.into_inner())?;
        let mut replicas: Vec<_> = self
            .share
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
            .share
            .resize_replica(&ReplicaSelector::Uuid(uuid), req.requested_size)
            .await
            .map_err(error_status)?;
        Ok(Response::new(self.message(replica)))
    }

    #[instrument(skip_all, fields(replica = %selector_label(request.get_ref())))]
    async fn share_replica(
        &self,
        request: Request<v1::ShareReplicaRequest>,
    ) -> Result<Response<v1::Replica>, Status> {
        let sel = selector(request.get_ref())?;
        let req = request.into_inner();
        match share_protocol(req.protocol)? {
            ShareProtocol::Nvmf => {}
            ShareProtocol::None => {
                return Err(Status::invalid_argument(
                    "share protocol must be nvmf (use UnshareReplica to stop sharing)",
                ))
            }
        }
        let replica = self
            .share
            .share_replica(&sel, req.allowed_hosts)
            .await
            .map_err(error_status)?;
        Ok(Response::new(replica_message(replica)))
    }

    #[instrument(skip_all, fields(replica = %selector_label(request.get_ref())))]
    async fn unshare_replica(
        &self,
        request: Request<v1::UnshareReplicaRequest>,
    ) -> Result<Response<v1::Replica>, Status> {
        let sel = selector(request.get_ref())?;
        let replica = self
            .share
            .unshare_replica(&sel)
            .await
            .map_err(error_status)?;
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
        assert!(selector(&v1::DestroyReplicaRequest { replica: None }).is_err());
        let by_uuid = v1::DestroyReplicaRequest {
            replica: Some(destroy_replica_request::Replica::Uuid(UUID.into())),
        };
        assert!(matches!(selector(&by_uuid), Ok(ReplicaSelector::Uuid(_))));
        assert_eq!(selector_label(&by_uuid), UUID);
        let by_name = v1::DestroyReplicaRequest {
            replica: Some(destroy_replica_request::Replica::Name(v1::ReplicaName {
                pool: "p".into(),
                name: String::new(),
            })),
        };
        assert!(selector(&by_name).is_err());
        assert_eq!(selector_label(&by_name), "p/");
        let share = v1::ShareReplicaRequest {
            replica: Some(share_replica_request::Replica::Name(v1::ReplicaName {
                pool: "p".into(),
                name: "r".into(),
            })),
            protocol: v1::ShareProtocol::Nvmf.into(),
            allowed_hosts: vec![],
        };
        assert!(matches!(
            selector(&share),
            Ok(ReplicaSelector::Name { pool, name }) if pool == "p" && name == "r"
        ));
        let unshare = v1::UnshareReplicaRequest {
            replica: Some(unshare_replica_request::Replica::Uuid("nope".into())),
        };
        assert!(selector(&unshare).is_err());
    }
}
