//! `NodePathRpc` (the HA contract): agent-ha-node asks csi-node, the owner
//! of the host's NVMe connections, to connect one more path of a volume
//! that is connected here, to its new target after a switch-over. The new
//! path gets the parameters of the volume's existing controllers (host
//! NQN, ctrl-loss timeout, reconnect delay, keep-alive, queues, the block
//! layer's I/O timeout), so it behaves as the staged one did.

use tonic::{Request, Response, Status};

use super::{
    config::{parse_uri, ConnectParams, NodeConfig},
    error::NodeError,
    nvme,
};
use crate::ha::{node_path_rpc_server::NodePathRpc, ConnectPathReply, ConnectPathRequest};

/// The service.
#[derive(Clone)]
pub struct NodePathService {
    cfg: NodeConfig,
}

impl NodePathService {
    pub fn new(cfg: NodeConfig) -> Self {
        Self { cfg }
    }
}

#[tonic::async_trait]
impl NodePathRpc for NodePathService {
    #[tracing::instrument(skip_all, fields(uri = %request.get_ref().uri))]
    async fn connect_path(
        &self,
        request: Request<ConnectPathRequest>,
    ) -> Result<Response<ConnectPathReply>, Status> {
        let uri = request.into_inner().uri;
        let (host, port, nqn) = parse_uri(&uri).map_err(NodeError::invalid)?;
        let existing = nvme::controllers(&nqn);
        let Some(model) = existing.first() else {
            return Err(NodeError::FailedPrecondition(format!(
                "{nqn} is not connected on this node: stage the volume instead"
            ))
            .into());
        };
        let address = format!("{host}:{port}");
        if let Some(c) = existing.iter().find(|c| c.address == address && c.live()) {
            tracing::info!(controller = %c.name, "the path is connected already");
            return Ok(Response::new(ConnectPathReply {}));
        }
        let d = &self.cfg.nvme;
        let num = |attr: &str| nvme::controller_number(&model.name, attr);
        let params = ConnectParams {
            host,
            port,
            nqn: nqn.clone(),
            ctrl_loss_tmo_s: num("ctrl_loss_tmo").unwrap_or(d.ctrl_loss_tmo_s),
            keep_alive_tmo_s: num("kato").unwrap_or(d.keep_alive_tmo_s),
            reconnect_delay_s: num("reconnect_delay").unwrap_or(d.reconnect_delay_s),
            nr_io_queues: num("queue_count")
                .and_then(|q| q.checked_sub(1))
                .filter(|q| *q > 0)
                .or(d.nr_io_queues),
            io_timeout_s: nvme::io_timeout_s(&nqn).or(d.io_timeout_s),
        };
        tracing::info!(target = %address, "connecting a further path");
        let c = nvme::connect_path(&params, &self.cfg.host_nqn()).await?;
        if let Some(secs) = params.io_timeout_s {
            // The new path's device takes the volume's I/O timeout (its
            // device may appear only once the path is live: best effort).
            if let Err(e) = nvme::set_io_timeout(&nqn, secs) {
                tracing::warn!(error = %e, "cannot set the I/O timeout of the new path");
            }
        }
        tracing::info!(controller = %c.name, state = %c.state, "path connected");
        Ok(Response::new(ConnectPathReply {}))
    }
}
