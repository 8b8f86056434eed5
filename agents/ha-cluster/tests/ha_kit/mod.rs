//! The cluster agent's tests' kit (with `common`, which the test declares
//! beside it): a published volume on a fresh cluster, and the stand-in
//! node agent, which speaks `HaNodeRpc` (the real one needs a kernel NVMe
//! host, see the VM tests), records every `ReplacePath` and holds its
//! answer until the test lets it go.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use io_engine_api::ha::{
    ha_node_rpc_server::{HaNodeRpc, HaNodeRpcServer},
    ReplacePathReply, ReplacePathRequest,
};
use openapi::{models::*, CoreApi};
use tonic::{Request, Response, Status};

use crate::common::Cluster;

const MIB: u64 = 1 << 20;

/// A pool on every node of `c`, then a 16 MiB volume of `replicas`
/// replicas published on node-1 for `frontend`: its id and the volume.
pub async fn published_volume(c: &Cluster, replicas: u8, frontend: &str) -> (String, Volume) {
    let api = c.rest();
    crate::common::nodes_online(&api, c.nodes.len()).await;
    crate::common::pool_on_every_node(c, &api, "p", 128 * MIB).await;
    let volume = uuid::Uuid::new_v4().to_string();
    api.put_volume(
        &volume,
        CreateVolumeBody {
            policy: VolumePolicy { self_heal: false },
            ..CreateVolumeBody::new(16 * MIB, replicas)
        },
    )
    .await
    .unwrap();
    let v = api
        .put_volume_target(
            &volume,
            PublishVolumeBody::nvmf(Some("node-1"), Some(frontend)),
        )
        .await
        .unwrap();
    (volume, v)
}

/// Records `ReplacePath` calls and answers them once `release` is true.
#[derive(Clone)]
pub struct StandIn {
    pub calls: Arc<Mutex<Vec<ReplacePathRequest>>>,
    release: tokio::sync::watch::Receiver<bool>,
}

impl StandIn {
    /// Serves a stand-in on `addr`; it and the sender that releases its
    /// answers.
    pub fn serve(addr: SocketAddr) -> (StandIn, tokio::sync::watch::Sender<bool>) {
        let (release_tx, release) = tokio::sync::watch::channel(false);
        let standin = StandIn {
            calls: Arc::default(),
            release,
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HaNodeRpcServer::new(standin.clone()))
                .serve(addr),
        );
        (standin, release_tx)
    }
}

#[tonic::async_trait]
impl HaNodeRpc for StandIn {
    async fn replace_path(
        &self,
        request: Request<ReplacePathRequest>,
    ) -> Result<Response<ReplacePathReply>, Status> {
        self.calls.lock().unwrap().push(request.into_inner());
        let mut release = self.release.clone();
        release
            .wait_for(|r| *r)
            .await
            .map_err(|_| Status::aborted("test over"))?;
        Ok(Response::new(ReplacePathReply {
            controller: "nvme-standin".into(),
        }))
    }
}
