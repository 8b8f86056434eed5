//! The stand-in node agent of the cluster agent's tests: it speaks
//! `HaNodeRpc` (the real one needs a kernel NVMe host, see the VM tests),
//! records every `ReplacePath` and holds its answer until the test lets
//! it go.

#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use io_engine_api::ha::{
    ha_node_rpc_server::{HaNodeRpc, HaNodeRpcServer},
    ReplacePathReply, ReplacePathRequest,
};
use tonic::{Request, Response, Status};

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
