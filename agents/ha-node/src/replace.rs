//! `HaNodeRpc::ReplacePath`: connect the volume's new target through
//! csi-node, wait until the new path is live and its namespace serves
//! (see [`crate::sysfs`]), delete the old path's controllers. Each step is bounded; a new path that does not come live
//! is deleted again (the host is left as it was). Idempotent: a new path
//! already live is kept, an old one already gone is fine. One call per
//! volume at a time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use io_engine_api::ha::{
    ha_node_rpc_server::HaNodeRpc, node_path_rpc_client::NodePathRpcClient, ConnectPathRequest,
    ReplacePathReply, ReplacePathRequest,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::{
    config::AddressMap,
    sysfs::{is_volume_nqn, Sysfs},
};

/// Step limits.
#[derive(Debug, Clone)]
pub struct ReplaceLimits {
    pub connect: Duration,
    pub live: Duration,
    pub delete: Duration,
}

/// The service.
#[derive(Clone)]
pub struct ReplaceService {
    pub sysfs: Sysfs,
    pub map: AddressMap,
    pub csi_node: String,
    pub limits: ReplaceLimits,
    /// False without native multipath: every call is refused.
    pub multipath: bool,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// `IP:PORT` of `nvmf://IP:PORT/<nqn>` and its NQN.
fn parse_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("nvmf://")?;
    let (addr, nqn) = rest.split_once('/')?;
    let nqn = nqn.split('?').next()?;
    (!addr.is_empty() && !nqn.is_empty()).then_some((addr, nqn))
}

impl ReplaceService {
    pub fn new(
        sysfs: Sysfs,
        map: AddressMap,
        csi_node: String,
        limits: ReplaceLimits,
        multipath: bool,
    ) -> Self {
        Self {
            sysfs,
            map,
            csi_node,
            limits,
            multipath,
            locks: Arc::default(),
        }
    }

    fn volume_lock(&self, nqn: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(nqn.to_owned())
            .or_default()
            .clone()
    }

    async fn connect(&self, uri: &str) -> Result<(), Status> {
        let endpoint = format!("http://{}", self.csi_node);
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .map_err(|e| Status::internal(format!("csi-node endpoint {endpoint}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(self.limits.connect)
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("csi-node {endpoint} unreachable: {e}")))?;
        NodePathRpcClient::new(channel)
            .connect_path(ConnectPathRequest {
                uri: uri.to_owned(),
            })
            .await
            .map_err(|s| Status::new(s.code(), format!("csi-node ConnectPath: {}", s.message())))?;
        Ok(())
    }
}

#[tonic::async_trait]
impl HaNodeRpc for ReplaceService {
    #[tracing::instrument(skip_all, fields(nqn = %request.get_ref().nqn))]
    async fn replace_path(
        &self,
        request: Request<ReplacePathRequest>,
    ) -> Result<Response<ReplacePathReply>, Status> {
        if !self.multipath {
            return Err(Status::failed_precondition(
                "the kernel's native NVMe multipath is off on this host: paths cannot be replaced",
            ));
        }
        let r = request.into_inner();
        if !is_volume_nqn(&r.nqn) {
            return Err(Status::invalid_argument(format!(
                "{:?} is not a volume NQN",
                r.nqn
            )));
        }
        let (new_cluster, uri_nqn) = parse_uri(&r.new_uri).ok_or_else(|| {
            Status::invalid_argument(format!("new uri {:?} is not nvmf://IP:PORT/NQN", r.new_uri))
        })?;
        if uri_nqn != r.nqn {
            return Err(Status::invalid_argument(format!(
                "new uri {:?} is not of {}",
                r.new_uri, r.nqn
            )));
        }
        let new = self.map.local(new_cluster).to_owned();
        let old = self.map.local(&r.old_address).to_owned();
        if new == old {
            return Err(Status::invalid_argument(format!(
                "the new target {new} is the old one"
            )));
        }
        let lock = self.volume_lock(&r.nqn);
        let _volume = lock.lock().await;
        let already = self.sysfs.at(&r.nqn, &new).iter().any(|c| c.live());
        let controller = if already {
            info!(target = %new, "the new path is live already");
            self.sysfs
                .wait_live(&r.nqn, &new, self.limits.live)
                .await
                .map_err(|e| Status::unavailable(format!("new path {new}: {e}")))?
        } else {
            let local_uri = format!("nvmf://{new}/{}", r.nqn);
            info!(target = %local_uri, "connecting the new path through csi-node");
            let connected = self.connect(&local_uri).await;
            let live = match connected {
                Ok(()) => self.sysfs.wait_live(&r.nqn, &new, self.limits.live).await,
                Err(e) => Err(e.message().to_owned()),
            };
            match live {
                Ok(c) => c,
                Err(e) => {
                    // Undo: a new path that is not live leaves the host.
                    warn!(target = %new, error = %e, "the new path failed; removing it");
                    if let Err(u) = self.sysfs.delete(&r.nqn, &new, self.limits.delete).await {
                        warn!(target = %new, error = %u, "cannot remove the failed new path");
                    }
                    return Err(Status::unavailable(format!("new path {new}: {e}")));
                }
            }
        };
        if old.is_empty() {
            // The old target's address is unknown (its engine lost it).
            info!(controller = %controller, target = %new, "new path live; no old path named");
        } else {
            info!(controller = %controller, target = %new, "new path live; deleting the old one");
            self.sysfs
                .delete(&r.nqn, &old, self.limits.delete)
                .await
                .map_err(Status::internal)?;
        }
        Ok(Response::new(ReplacePathReply { controller }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::tests::{ctrl, VOL};

    fn service(root: &std::path::Path, multipath: bool) -> ReplaceService {
        ReplaceService::new(
            Sysfs::new(root),
            AddressMap::new(&[("127.0.0.9:8420".into(), "10.0.2.100:4421".into())]),
            "127.0.0.1:1".into(),
            ReplaceLimits {
                connect: Duration::from_secs(1),
                live: Duration::from_secs(1),
                delete: Duration::from_millis(300),
            },
            multipath,
        )
    }

    fn req(new: &str, old: &str) -> Request<ReplacePathRequest> {
        Request::new(ReplacePathRequest {
            nqn: VOL.into(),
            new_uri: format!("nvmf://{new}/{VOL}"),
            old_address: old.into(),
        })
    }

    #[tokio::test]
    async fn refused_without_multipath_and_on_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path(), false);
        let e = s
            .replace_path(req("127.0.0.9:8420", "10.0.2.100:4420"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        let s = service(dir.path(), true);
        let e = s
            .replace_path(req("10.0.2.100:4420", "10.0.2.100:4420"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let mut bad = req("127.0.0.9:8420", "10.0.2.100:4420");
        bad.get_mut().new_uri = "nvmf://127.0.0.9:8420/nqn.other".into();
        let e = s.replace_path(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_live_new_path_is_kept_and_an_unreachable_csi_node_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        ctrl(dir.path(), "nvme0", VOL, "connecting", "10.0.2.100:4420");
        let s = service(dir.path(), true);
        // csi-node unreachable: an error, and the old path is still there.
        let e = s
            .replace_path(req("127.0.0.9:8420", "10.0.2.100:4420"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert_eq!(s.sysfs.controllers().len(), 1);
        // The new path (reached through the address map) is live already:
        // the answer names it; the old one's deletion is attempted (a
        // made-up tree cannot delete, so it times out and says so).
        ctrl(dir.path(), "nvme1", VOL, "live", "10.0.2.100:4421");
        crate::sysfs::tests::ns_path(dir.path(), "nvme1", "optimized");
        let e = s
            .replace_path(req("127.0.0.9:8420", "10.0.2.100:4420"))
            .await
            .unwrap_err();
        assert!(e.message().contains("still there"), "{e:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("class/nvme/nvme0/delete_controller")).unwrap(),
            "1"
        );
        assert!(!dir
            .path()
            .join("class/nvme/nvme1/delete_controller")
            .exists());
    }
}
