//! [`serve_embedded`]: the etcd v3 subset (`KV`, `Watch`, `Lease`) served
//! over gRPC on top of an [`EmbeddedStore`], so that [`crate::EtcdStore`]
//! (or an etcd client using the same calls) in other processes can share
//! it.
//!
//! Supported: single keys and key ranges (`range_end`, `"\0"` for "every
//! key from"), limits, keys-only and count-only reads at the latest
//! revision; puts and range deletes with `prev_kv`; transactions over
//! value/version/create/mod/lease compares on single keys with range, put
//! and delete-range operations; compaction; watches with start revisions,
//! `NOPUT`/`NODELETE` filters and several watchers per stream; leases with
//! keep-alive streams and time-to-live. Refused with `UNIMPLEMENTED`: reads
//! at a past revision, range compares. A watch asking for `prev_kv` is
//! canceled with a reason.
//!
//! Errors carry etcd's codes and messages (one mapping, [`error_status`]).
//! Shutdown ends every watch and keep-alive stream, so a graceful stop of
//! the gRPC server does not wait for clients to hang up.

use std::{future::Future, net::SocketAddr};

use io_engine_api::etcd::etcdserverpb as pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::info;

use crate::{EmbeddedStore, StoreError};

mod convert;
mod kv;
mod lease;
mod maintenance;
mod watch;

use kv::KvService;
use lease::LeaseService;
use maintenance::MaintenanceService;
use watch::WatchService;

/// Largest request accepted (a transaction's keys and values).
const MAX_REQUEST_BYTES: usize = 36 << 20;
/// Responses queued per watch or keep-alive stream.
const STREAM_QUEUE: usize = 64;

/// The one mapping from store errors to gRPC statuses, with etcd's codes
/// and messages so etcd clients recognise them.
pub fn error_status(err: StoreError) -> Status {
    match err {
        StoreError::LeaseNotFound { .. } => {
            Status::not_found("etcdserver: requested lease not found")
        }
        StoreError::Compacted { .. } => {
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted")
        }
        StoreError::FutureRevision { .. } => {
            Status::out_of_range("etcdserver: mvcc: required revision is a future revision")
        }
        StoreError::InvalidArgument(message) => {
            Status::invalid_argument(format!("etcdserver: {message}"))
        }
        StoreError::Unavailable { .. } => Status::unavailable(err.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// Serves the store's etcd API on `listener` until `shutdown` resolves;
/// then ends every watch and keep-alive stream, lets unary calls finish
/// and returns. The store stays open (drop it to close it).
pub async fn serve_embedded(
    store: EmbeddedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let address: Option<SocketAddr> = listener.local_addr().ok();
    let streams = CancellationToken::new();
    let router = tonic::transport::Server::builder()
        .add_service(
            pb::kv_server::KvServer::new(KvService {
                store: store.clone(),
            })
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(pb::watch_server::WatchServer::new(WatchService {
            store: store.clone(),
            shutdown: streams.clone(),
        }))
        .add_service(pb::lease_server::LeaseServer::new(LeaseService {
            store: store.clone(),
            shutdown: streams.clone(),
        }))
        .add_service(pb::maintenance_server::MaintenanceServer::new(
            MaintenanceService { store },
        ));
    let stop = {
        let streams = streams.clone();
        async move {
            shutdown.await;
            streams.cancel();
        }
    };
    let served = router
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), stop)
        .await;
    streams.cancel();
    info!(address = ?address, "store gRPC server stopped");
    served.map_err(|e| StoreError::Unavailable {
        reason: "the store's gRPC server failed".to_string(),
        source: Some(Box::new(e)),
    })
}
