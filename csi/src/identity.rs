//! The CSI Identity service, served by both binaries: plugin name and
//! version, the plugin capabilities of the binary, and `Probe`, which asks a
//! [`Readiness`] check (the controller: is the REST API reachable; the
//! node: can this host stage volumes).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::v1::{
    identity_server::Identity, plugin_capability, GetPluginCapabilitiesRequest,
    GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse, PluginCapability,
    ProbeRequest, ProbeResponse,
};

/// What `Probe` asks: `None` when ready, else why not (logged, and the
/// probe answers `ready: false`).
#[tonic::async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn not_ready_reason(&self) -> Option<String>;
}

/// The Identity service (see the module header).
#[derive(Clone)]
pub struct IdentityService {
    capabilities: Vec<PluginCapability>,
    readiness: Arc<dyn Readiness>,
}

impl IdentityService {
    pub fn new(capabilities: Vec<PluginCapability>, readiness: Arc<dyn Readiness>) -> Self {
        Self {
            capabilities,
            readiness,
        }
    }

    /// The plugin capabilities of the controller: the controller service,
    /// topology constraints (volumes are reached from the nodes Kubernetes
    /// names), online and offline expansion.
    pub fn controller_capabilities() -> Vec<PluginCapability> {
        use plugin_capability::{service, volume_expansion, Service, Type, VolumeExpansion};
        let service = |t: service::Type| PluginCapability {
            r#type: Some(Type::Service(Service { r#type: t as i32 })),
        };
        let expansion = |t: volume_expansion::Type| PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion { r#type: t as i32 })),
        };
        vec![
            service(service::Type::ControllerService),
            service(service::Type::VolumeAccessibilityConstraints),
            expansion(volume_expansion::Type::Online),
            expansion(volume_expansion::Type::Offline),
        ]
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: crate::PLUGIN_NAME.to_owned(),
            vendor_version: crate::VENDOR_VERSION.to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: self.capabilities.clone(),
        }))
    }

    async fn probe(
        &self,
        _request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        let reason = self.readiness.not_ready_reason().await;
        if let Some(reason) = &reason {
            tracing::warn!(%reason, "probe: not ready");
        }
        Ok(Response::new(ProbeResponse {
            ready: Some(reason.is_none()),
        }))
    }
}
