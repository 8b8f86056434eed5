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

use std::{collections::HashMap, future::Future, net::SocketAddr};

use futures::StreamExt;
use io_engine_api::etcd::{etcdserverpb as pb, mvccpb};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use crate::{
    embedded::{KeyRange, RangeRequest, RequestOp, ResponseOp, TxnRequest},
    Compare, CompareOp, CompareTarget, EmbeddedStore, KeyValue, LeaseId, StoreError, WatchEvent,
};

/// Reported as the cluster and member ID in response headers.
const CLUSTER_ID: u64 = 0x6d61_7961_7374_6f72;
const MEMBER_ID: u64 = 1;
/// Largest request accepted (a transaction's keys and values).
const MAX_REQUEST_BYTES: usize = 36 << 20;
/// Events sent in one watch response at most.
const WATCH_BATCH_EVENTS: usize = 256;
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

fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: CLUSTER_ID,
        member_id: MEMBER_ID,
        revision,
        raft_term: 1,
    })
}

fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: LeaseId::raw(kv.lease),
    }
}

fn event_to_pb(event: WatchEvent) -> mvccpb::Event {
    match event {
        WatchEvent::Put(kv) => mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: Some(kv_to_pb(kv)),
            prev_kv: None,
        },
        WatchEvent::Delete { key, revision } => mvccpb::Event {
            r#type: mvccpb::event::EventType::Delete as i32,
            kv: Some(mvccpb::KeyValue {
                key,
                mod_revision: revision,
                ..Default::default()
            }),
            prev_kv: None,
        },
    }
}

fn range_from_pb(request: pb::RangeRequest) -> RangeRequest {
    RangeRequest {
        range: KeyRange::from_etcd(request.key, request.range_end),
        limit: usize::try_from(request.limit.max(0)).unwrap_or(usize::MAX),
        keys_only: request.keys_only,
        count_only: request.count_only,
    }
}

fn range_response(response: ResponseOp, revision: i64) -> pb::RangeResponse {
    match response {
        ResponseOp::Range { kvs, count, more } => pb::RangeResponse {
            header: header(revision),
            kvs: kvs.into_iter().map(kv_to_pb).collect(),
            more,
            count,
        },
        _ => pb::RangeResponse {
            header: header(revision),
            ..Default::default()
        },
    }
}

fn compare_from_pb(compare: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget as Target, TargetUnion};
    if !compare.range_end.is_empty() {
        return Err(Status::unimplemented(
            "range compares are not supported by the embedded store",
        ));
    }
    let op = match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => CompareOp::Equal,
        Ok(CompareResult::NotEqual) => CompareOp::NotEqual,
        Ok(CompareResult::Greater) => CompareOp::Greater,
        Ok(CompareResult::Less) => CompareOp::Less,
        Err(_) => return Err(Status::invalid_argument("unknown compare result")),
    };
    let union = compare.target_union;
    let number = |n: Option<i64>| n.unwrap_or(0);
    let target = match Target::try_from(compare.target) {
        Ok(Target::Value) => CompareTarget::Value(match union {
            Some(TargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        Ok(Target::Version) => CompareTarget::Version(number(match union {
            Some(TargetUnion::Version(v)) => Some(v),
            _ => None,
        })),
        Ok(Target::Create) => CompareTarget::CreateRevision(number(match union {
            Some(TargetUnion::CreateRevision(v)) => Some(v),
            _ => None,
        })),
        Ok(Target::Mod) => CompareTarget::ModRevision(number(match union {
            Some(TargetUnion::ModRevision(v)) => Some(v),
            _ => None,
        })),
        Ok(Target::Lease) => CompareTarget::Lease(LeaseId::from_raw(number(match union {
            Some(TargetUnion::Lease(v)) => Some(v),
            _ => None,
        }))),
        Err(_) => return Err(Status::invalid_argument("unknown compare target")),
    };
    Ok(Compare {
        key: compare.key,
        op,
        target,
    })
}

fn op_from_pb(op: pb::RequestOp) -> Result<RequestOp, Status> {
    use pb::request_op::Request;
    match op.request {
        Some(Request::RequestRange(r)) => Ok(RequestOp::Range(range_from_pb(r))),
        Some(Request::RequestPut(p)) => Ok(RequestOp::Put {
            key: p.key,
            value: p.value,
            lease: p.lease,
            prev_kv: p.prev_kv,
        }),
        Some(Request::RequestDeleteRange(d)) => Ok(RequestOp::DeleteRange {
            range: KeyRange::from_etcd(d.key, d.range_end),
            prev_kv: d.prev_kv,
        }),
        None => Err(Status::invalid_argument(
            "empty or unsupported operation in txn request",
        )),
    }
}

fn response_to_pb(response: ResponseOp, revision: i64) -> pb::ResponseOp {
    use pb::response_op::Response as R;
    let response = match response {
        r @ ResponseOp::Range { .. } => R::ResponseRange(range_response(r, revision)),
        ResponseOp::Put { prev_kv } => R::ResponsePut(pb::PutResponse {
            header: header(revision),
            prev_kv: prev_kv.map(kv_to_pb),
        }),
        ResponseOp::DeleteRange { deleted, prev_kvs } => {
            R::ResponseDeleteRange(pb::DeleteRangeResponse {
                header: header(revision),
                deleted,
                prev_kvs: prev_kvs.into_iter().map(kv_to_pb).collect(),
            })
        }
    };
    pb::ResponseOp {
        response: Some(response),
    }
}

struct KvService {
    store: EmbeddedStore,
}

impl KvService {
    /// Runs one operation as a transaction; returns its answer and the
    /// revision after it.
    async fn single(&self, op: RequestOp) -> Result<(ResponseOp, i64), Status> {
        let response = self
            .store
            .txn_request(TxnRequest {
                success: vec![op],
                ..TxnRequest::default()
            })
            .await
            .map_err(error_status)?;
        let answer = response
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("transaction without an answer"))?;
        Ok((answer, response.revision))
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let request = request.into_inner();
        if request.key.is_empty() {
            return Err(error_status(StoreError::InvalidArgument(
                "key is not provided".into(),
            )));
        }
        let at = request.revision;
        let (response, revision) = self
            .store
            .range(range_from_pb(request))
            .await
            .map_err(error_status)?;
        if at > revision {
            return Err(error_status(StoreError::FutureRevision {
                requested: at,
                current: revision,
            }));
        }
        if at > 0 && at < revision {
            return Err(Status::unimplemented(
                "reads at a past revision are not supported by the embedded store",
            ));
        }
        Ok(Response::new(range_response(response, revision)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let p = request.into_inner();
        let (response, revision) = self
            .single(RequestOp::Put {
                key: p.key,
                value: p.value,
                lease: p.lease,
                prev_kv: p.prev_kv,
            })
            .await?;
        let prev_kv = match response {
            ResponseOp::Put { prev_kv } => prev_kv.map(kv_to_pb),
            _ => None,
        };
        Ok(Response::new(pb::PutResponse {
            header: header(revision),
            prev_kv,
        }))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let d = request.into_inner();
        let (response, revision) = self
            .single(RequestOp::DeleteRange {
                range: KeyRange::from_etcd(d.key, d.range_end),
                prev_kv: d.prev_kv,
            })
            .await?;
        let (deleted, prev_kvs) = match response {
            ResponseOp::DeleteRange { deleted, prev_kvs } => (deleted, prev_kvs),
            _ => (0, Vec::new()),
        };
        Ok(Response::new(pb::DeleteRangeResponse {
            header: header(revision),
            deleted,
            prev_kvs: prev_kvs.into_iter().map(kv_to_pb).collect(),
        }))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let t = request.into_inner();
        let request = TxnRequest {
            compares: t
                .compare
                .into_iter()
                .map(compare_from_pb)
                .collect::<Result<_, _>>()?,
            success: t
                .success
                .into_iter()
                .map(op_from_pb)
                .collect::<Result<_, _>>()?,
            failure: t
                .failure
                .into_iter()
                .map(op_from_pb)
                .collect::<Result<_, _>>()?,
        };
        let response = self
            .store
            .txn_request(request)
            .await
            .map_err(error_status)?;
        let revision = response.revision;
        Ok(Response::new(pb::TxnResponse {
            header: header(revision),
            succeeded: response.succeeded,
            responses: response
                .responses
                .into_iter()
                .map(|r| response_to_pb(r, revision))
                .collect(),
        }))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let revision = self
            .store
            .compact_history(request.into_inner().revision)
            .await
            .map_err(error_status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: header(revision),
        }))
    }
}

struct WatchService {
    store: EmbeddedStore,
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl pb::watch_server::Watch for WatchService {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let session = WatchSession {
            store: self.store.clone(),
            tx,
            watchers: HashMap::new(),
            next_id: 0,
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(session.run(request.into_inner(), shutdown));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The watchers of one gRPC watch stream.
struct WatchSession {
    store: EmbeddedStore,
    tx: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    /// Forwarding task per watch ID.
    watchers: HashMap<i64, JoinHandle<()>>,
    next_id: i64,
}

impl WatchSession {
    async fn run(mut self, mut requests: Streaming<pb::WatchRequest>, shutdown: CancellationToken) {
        use pb::watch_request::RequestUnion;
        loop {
            let request = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.tx.closed() => break,
                request = requests.message() => request,
            };
            let sent = match request {
                Ok(Some(pb::WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(create)),
                })) => self.create(create).await,
                Ok(Some(pb::WatchRequest {
                    request_union: Some(RequestUnion::CancelRequest(cancel)),
                })) => self.cancel(cancel.watch_id).await,
                Ok(Some(pb::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(_)),
                })) => {
                    self.send(pb::WatchResponse {
                        header: header(self.store.current_revision()),
                        watch_id: -1,
                        ..Default::default()
                    })
                    .await
                }
                Ok(Some(pb::WatchRequest {
                    request_union: None,
                })) => true,
                Ok(None) | Err(_) => break,
            };
            if !sent {
                break;
            }
        }
        for (_, watcher) in self.watchers.drain() {
            watcher.abort();
        }
    }

    async fn send(&self, response: pb::WatchResponse) -> bool {
        self.tx.send(Ok(response)).await.is_ok()
    }

    /// Answers a create request and starts forwarding the watcher's events.
    async fn create(&mut self, create: pb::WatchCreateRequest) -> bool {
        use pb::watch_create_request::FilterType;
        let id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id = self.next_id.wrapping_add(1);
            }
            self.next_id
        };
        let refuse = |reason: String| pb::WatchResponse {
            header: header(self.store.current_revision()),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        self.watchers.retain(|_, w| !w.is_finished());
        if self.watchers.contains_key(&id) {
            return self.send(refuse(format!("watch ID {id} is in use"))).await;
        }
        if create.prev_kv {
            return self
                .send(refuse(
                    "prev_kv is not supported by the embedded store".to_string(),
                ))
                .await;
        }
        if create.key.is_empty() {
            return self.send(refuse("key is not provided".to_string())).await;
        }
        let no_put = create.filters.contains(&(FilterType::Noput as i32));
        let no_delete = create.filters.contains(&(FilterType::Nodelete as i32));
        let range = KeyRange::from_etcd(create.key, create.range_end);
        let start = (create.start_revision > 0).then_some(create.start_revision);
        let events = match self.store.watch_range(range, start) {
            Ok(events) => events,
            Err(e) => return self.send(refuse(e.to_string())).await,
        };
        if !self
            .send(pb::WatchResponse {
                header: header(self.store.current_revision()),
                watch_id: id,
                created: true,
                ..Default::default()
            })
            .await
        {
            return false;
        }
        self.next_id = self.next_id.max(id.saturating_add(1));
        debug!(watch_id = id, start_revision = ?start, "watch created");
        let tx = self.tx.clone();
        let forward = async move {
            let mut chunks = events.ready_chunks(WATCH_BATCH_EVENTS);
            while let Some(chunk) = chunks.next().await {
                let mut batch = Vec::with_capacity(chunk.len());
                let mut end = None;
                for item in chunk {
                    match item {
                        Ok(WatchEvent::Put(_)) if no_put => {}
                        Ok(WatchEvent::Delete { .. }) if no_delete => {}
                        Ok(event) => batch.push(event),
                        Err(e) => {
                            end = Some(e);
                            break;
                        }
                    }
                }
                if let Some(revision) = batch.last().map(WatchEvent::revision) {
                    let response = pb::WatchResponse {
                        header: header(revision),
                        watch_id: id,
                        events: batch.into_iter().map(event_to_pb).collect(),
                        ..Default::default()
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                if let Some(e) = end {
                    let compact_revision = match &e {
                        StoreError::Compacted {
                            compact_revision, ..
                        } => (*compact_revision).max(1),
                        _ => 0,
                    };
                    let response = pb::WatchResponse {
                        watch_id: id,
                        canceled: true,
                        compact_revision,
                        cancel_reason: e.to_string(),
                        ..Default::default()
                    };
                    let _ = tx.send(Ok(response)).await;
                    return;
                }
            }
        };
        self.watchers.insert(id, tokio::spawn(forward));
        true
    }

    async fn cancel(&mut self, id: i64) -> bool {
        match self.watchers.remove(&id) {
            Some(watcher) => {
                watcher.abort();
                self.send(pb::WatchResponse {
                    header: header(self.store.current_revision()),
                    watch_id: id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            None => true,
        }
    }
}

struct LeaseService {
    store: EmbeddedStore,
    shutdown: CancellationToken,
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

/// `Maintenance`: only `Status`, for the server's version.
struct MaintenanceService {
    store: EmbeddedStore,
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
            version: mayastor_version::VERSION.to_string(),
        }))
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
