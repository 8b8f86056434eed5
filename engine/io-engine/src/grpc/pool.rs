//! `PoolRpc`: create, import, destroy, export, list and check pools.
//!
//! Create and import go through the share manager, which exports the
//! pool's shared replicas over NVMe/TCP again; destroy and export go through
//! it too, which withdraws them first.

use std::sync::Arc;

use io_engine_api::v1::{self, pool_rpc_server::PoolRpc};
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use super::{error_status, parse_uuid, pool_message, require_name};
use crate::{pool::CreatePoolArgs, share::ShareManager};

/// The `PoolRpc` service.
#[derive(Clone)]
pub struct PoolService {
    share: Arc<ShareManager>,
}

impl PoolService {
    pub fn new(share: Arc<ShareManager>) -> Self {
        Self { share }
    }
}

/// Validates a create/import request and turns it into registry arguments.
fn create_args(req: v1::CreatePoolRequest) -> Result<CreatePoolArgs, Status> {
    require_name("pool name", &req.name)?;
    let uuid = req
        .uuid
        .as_deref()
        .map(|u| parse_uuid("pool uuid", u))
        .transpose()?;
    match req.disks.as_slice() {
        [] => {
            return Err(Status::invalid_argument(
                "a pool needs one disk, none given",
            ))
        }
        [disk] => require_name("disk uri", disk)?,
        disks => {
            return Err(Status::invalid_argument(format!(
                "a pool has exactly one disk, {} given",
                disks.len()
            )))
        }
    }
    if let Some(cluster_size) = req.cluster_size {
        if !cluster_size.is_power_of_two() {
            return Err(Status::invalid_argument(format!(
                "cluster size {cluster_size} is not a power of two"
            )));
        }
    }
    Ok(CreatePoolArgs {
        name: req.name,
        uuid,
        disks: req.disks,
        cluster_size_bytes: req.cluster_size,
    })
}

#[tonic::async_trait]
impl PoolRpc for PoolService {
    #[instrument(skip_all, fields(pool = %request.get_ref().name))]
    async fn create_pool(
        &self,
        request: Request<v1::CreatePoolRequest>,
    ) -> Result<Response<v1::Pool>, Status> {
        let args = create_args(request.into_inner())?;
        let pool = self.share.create_pool(args).await.map_err(error_status)?;
        Ok(Response::new(pool_message(pool)))
    }

    #[instrument(skip_all, fields(pool = %request.get_ref().name))]
    async fn import_pool(
        &self,
        request: Request<v1::CreatePoolRequest>,
    ) -> Result<Response<v1::Pool>, Status> {
        let args = create_args(request.into_inner())?;
        let pool = self.share.import_pool(args).await.map_err(error_status)?;
        Ok(Response::new(pool_message(pool)))
    }

    #[instrument(skip_all, fields(pool = %request.get_ref().name))]
    async fn destroy_pool(
        &self,
        request: Request<v1::DestroyPoolRequest>,
    ) -> Result<Response<v1::DestroyPoolResponse>, Status> {
        let req = request.into_inner();
        require_name("pool name", &req.name)?;
        self.share
            .destroy_pool(&req.name)
            .await
            .map_err(error_status)?;
        Ok(Response::new(v1::DestroyPoolResponse {}))
    }

    #[instrument(skip_all, fields(pool = %request.get_ref().name))]
    async fn export_pool(
        &self,
        request: Request<v1::ExportPoolRequest>,
    ) -> Result<Response<v1::ExportPoolResponse>, Status> {
        let req = request.into_inner();
        require_name("pool name", &req.name)?;
        self.share
            .export_pool(&req.name)
            .await
            .map_err(error_status)?;
        info!("pool exported");
        Ok(Response::new(v1::ExportPoolResponse {}))
    }

    #[instrument(skip_all)]
    async fn list_pools(
        &self,
        request: Request<v1::ListPoolsRequest>,
    ) -> Result<Response<v1::ListPoolsResponse>, Status> {
        let req = request.into_inner();
        let mut pools: Vec<_> = self
            .share
            .registry()
            .list_pools()
            .into_iter()
            .filter(|p| req.name.as_ref().is_none_or(|name| &p.name == name))
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(v1::ListPoolsResponse {
            pools: pools.into_iter().map(pool_message).collect(),
        }))
    }

    #[instrument(skip_all, fields(pool = %request.get_ref().name))]
    async fn check_pool(
        &self,
        request: Request<v1::CheckPoolRequest>,
    ) -> Result<Response<v1::CheckPoolResponse>, Status> {
        let req = request.into_inner();
        require_name("pool name", &req.name)?;
        let report = self
            .share
            .registry()
            .check_pool(&req.name)
            .await
            .map_err(error_status)?;
        if report.problems.is_empty() {
            info!(generation = report.generation, "pool is consistent");
        } else {
            tracing::warn!(problems = ?report.problems, "pool check found problems");
        }
        Ok(Response::new(v1::CheckPoolResponse {
            pool: report.pool,
            problems: report.problems,
            clusters_total: report.clusters_total,
            clusters_used: report.clusters_used,
            replicas: report.replicas,
            generation: report.generation,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(name: &str, disks: &[&str]) -> v1::CreatePoolRequest {
        v1::CreatePoolRequest {
            name: name.into(),
            uuid: None,
            disks: disks.iter().map(|d| d.to_string()).collect(),
            cluster_size: None,
        }
    }

    #[test]
    fn create_request_validation() {
        assert!(create_args(request("p", &["aio:///d"])).is_ok());
        let err = |r| {
            create_args(r)
                .err()
                .map(|s| s.message().to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            err(request("", &["aio:///d"])),
            "pool name must not be empty"
        );
        assert_eq!(err(request("p", &[])), "a pool needs one disk, none given");
        assert_eq!(
            err(request("p", &["a", "b"])),
            "a pool has exactly one disk, 2 given"
        );
        assert_eq!(err(request("p", &[""])), "disk uri must not be empty");
        let mut r = request("p", &["aio:///d"]);
        r.uuid = Some("nope".into());
        assert!(err(r).starts_with("pool uuid \"nope\" is not a valid uuid"));
        let mut r = request("p", &["aio:///d"]);
        r.cluster_size = Some(3 << 20);
        assert_eq!(err(r), "cluster size 3145728 is not a power of two");
        let mut r = request("p", &["aio:///d"]);
        r.cluster_size = Some(0);
        assert!(create_args(r).is_err());
    }
}
