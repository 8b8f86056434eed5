//! `Lease`: grant, revoke, keep-alive streams and time-to-live.

use io_engine_api::etcd::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::*;
use super::{error_status, STREAM_QUEUE};
use crate::{EmbeddedStore, LeaseId, StoreError};

pub(super) struct LeaseService {
    pub(super) store: EmbeddedStore,
    pub(super) shutdown: CancellationToken,
}

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let request = request.into_inner();
        let (id, ttl) = self
            .store
            .grant(request.id, request.ttl)
            .await
            .map_err(error_status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: header(self.store.current_revision()),
            id: id.0,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        use crate::Store;
        self.store
            .lease_revoke(LeaseId(request.into_inner().id))
            .await
            .map_err(error_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: header(self.store.current_revision()),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        use crate::Store;
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    request = requests.message() => request,
                };
                let Ok(Some(request)) = request else {
                    break;
                };
                let ttl = match store.lease_keep_alive(LeaseId(request.id)).await {
                    Ok(ttl) => Ok(ttl),
                    Err(StoreError::LeaseNotFound { .. }) => Ok(0),
                    Err(e) => Err(error_status(e)),
                };
                let response = ttl.map(|ttl| pb::LeaseKeepAliveResponse {
                    header: header(store.current_revision()),
                    id: request.id,
                    ttl,
                });
                let failed = response.is_err();
                if tx.send(response).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        let info = self
            .store
            .lease_info(LeaseId(request.id))
            .await
            .map_err(error_status)?;
        let header = header(self.store.current_revision());
        Ok(Response::new(match info {
            Some(info) => pb::LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: info.remaining_secs,
                granted_ttl: info.granted_secs,
                keys: if request.keys { info.keys } else { Vec::new() },
            },
            None => pb::LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: -1,
                ..Default::default()
            },
        }))
    }
}
