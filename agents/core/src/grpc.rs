//! `RegistrationRpc`: engines register on start and every heartbeat.

use std::sync::Arc;

use io_engine_api::v1::{
    self, registration_rpc_server::RegistrationRpc, RegisterRequest, RegisterResponse,
};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::core::Core;

/// The registration service.
#[derive(Clone)]
pub struct RegistrationService {
    core: Arc<Core>,
}

impl RegistrationService {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }
}

fn check(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() || value.chars().any(|c| c.is_control() || c == '/') {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?} must be non-empty and printable, without '/'"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl RegistrationRpc for RegistrationService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        check("node id", &r.id)?;
        r.grpc_endpoint
            .parse::<std::net::SocketAddr>()
            .map_err(|_| {
                Status::invalid_argument(format!(
                    "grpc endpoint {:?} is not IP:PORT",
                    r.grpc_endpoint
                ))
            })?;
        let appeared = self
            .core
            .registry
            .register(
                &r.id,
                &r.grpc_endpoint,
                &r.instance_uuid,
                &r.node_nqn,
                &r.version,
                self.core.engine_timeout(),
            )
            .map_err(Status::invalid_argument)?;
        if appeared {
            info!(node = %r.id, endpoint = %r.grpc_endpoint, instance = %r.instance_uuid, "node online");
            let core = self.core.clone();
            let id = r.id.clone();
            tokio::spawn(async move {
                core.refresh(&id).await;
                if let Err(e) = core.ensure_node_spec(&id).await {
                    tracing::warn!(node = %id, error = %e, "cannot store the node spec");
                }
            });
        }
        Ok(Response::new(RegisterResponse {}))
    }

    async fn deregister(
        &self,
        request: Request<v1::DeregisterRequest>,
    ) -> Result<Response<v1::DeregisterResponse>, Status> {
        let r = request.into_inner();
        self.core.registry.deregister(&r.id, &r.instance_uuid);
        info!(node = %r.id, "node deregistered");
        Ok(Response::new(v1::DeregisterResponse {}))
    }
}
