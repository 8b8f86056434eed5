//! `Maintenance`: only `Status`, for the server's version.

use io_engine_api::etcd::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use super::convert::*;
use super::error_status;
use crate::EmbeddedStore;

/// `Maintenance`: only `Status`, for the server's version.
pub(super) struct MaintenanceService {
    pub(super) store: EmbeddedStore,
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for MaintenanceService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let revision = self.store.revision().await.map_err(error_status)?;
        Ok(Response::new(pb::StatusResponse {
            header: header(revision),
            version: mayastor_version::version().to_string(),
        }))
    }
}
