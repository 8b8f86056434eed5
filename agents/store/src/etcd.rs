//! [`EtcdStore`]: the [`Store`] trait over the etcd v3 gRPC API (a real
//! etcd 3.4+, or the embedded store served by [`crate::serve_embedded`]).
//!
//! Unary calls are bounded by the timeout given to [`EtcdStore::connect`];
//! a watch is bounded by it only until etcd confirms it. Every gRPC status
//! is mapped to a [`StoreError`] in one place (`status_error`).

use std::{collections::VecDeque, future::Future, time::Duration};

use async_trait::async_trait;
use futures::StreamExt;
use io_engine_api::etcd::{etcdserverpb as pb, mvccpb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    transport::{Channel, Endpoint},
    Code, Status, Streaming,
};

use crate::{
    embedded::KeyRange, Compare, CompareOp, CompareTarget, KeyValue, LeaseId, Listing, Op, Store,
    StoreError, TxnResult, WatchEvent, WatchStream,
};

/// Largest response accepted (a listing of many keys).
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// HTTP/2 pings on open streams, to notice a dead connection under a
/// watch (etcd allows one every 5 s at most).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// A client of etcd (or of the embedded store's server). Cheap to clone:
/// clones share the connection.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    kv: pb::kv_client::KvClient<Channel>,
    watch: pb::watch_client::WatchClient<Channel>,
    lease: pb::lease_client::LeaseClient<Channel>,
    maintenance: pb::maintenance_client::MaintenanceClient<Channel>,
    timeout: Duration,
}

/// What a failed call was about, for its error.
#[derive(Debug, Clone, Copy, Default)]
struct Context {
    lease: Option<LeaseId>,
    revision: i64,
}

impl Context {
    fn lease(id: LeaseId) -> Self {
        Context {
            lease: Some(id),
            revision: 0,
        }
    }

    fn revision(revision: i64) -> Self {
        Context {
            lease: None,
            revision,
        }
    }
}

/// The one mapping from gRPC statuses (etcd's error codes and messages) to
/// store errors.
fn status_error(status: Status, context: Context) -> StoreError {
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound if message.contains("lease not found") => StoreError::LeaseNotFound {
            id: context.lease.unwrap_or(LeaseId(0)),
        },
        Code::OutOfRange if message.contains("compacted") => StoreError::Compacted {
            requested: context.revision,
            compact_revision: 0,
        },
        Code::OutOfRange if message.contains("future revision") => StoreError::FutureRevision {
            requested: context.revision,
            current: 0,
        },
        Code::InvalidArgument | Code::FailedPrecondition => StoreError::InvalidArgument(message),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Unknown => StoreError::Unavailable {
            reason: message,
            source: Some(Box::new(status)),
        },
        _ => StoreError::Protocol(format!("{:?}: {message}", status.code())),
    }
}

fn endpoint(address: &str, timeout: Duration) -> Result<Endpoint, StoreError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| StoreError::InvalidArgument(format!("bad store endpoint {address:?}: {e}")))?;
    Ok(endpoint
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(timeout.max(Duration::from_secs(1)))
        .keep_alive_while_idle(false))
}

fn kv_from_pb(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: LeaseId::from_raw(kv.lease),
    }
}

fn header_revision(header: Option<pb::ResponseHeader>) -> Result<i64, StoreError> {
    header
        .map(|h| h.revision)
        .ok_or_else(|| StoreError::Protocol("response without a header".to_string()))
}

fn compare_to_pb(compare: Compare) -> pb::Compare {
    use pb::compare::{CompareResult, CompareTarget as Target, TargetUnion};
    let result = match compare.op {
        CompareOp::Equal => CompareResult::Equal,
        CompareOp::NotEqual => CompareResult::NotEqual,
        CompareOp::Greater => CompareResult::Greater,
        CompareOp::Less => CompareResult::Less,
    };
    let (target, union) = match compare.target {
        CompareTarget::Value(v) => (Target::Value, TargetUnion::Value(v)),
        CompareTarget::ModRevision(r) => (Target::Mod, TargetUnion::ModRevision(r)),
        CompareTarget::CreateRevision(r) => (Target::Create, TargetUnion::CreateRevision(r)),
        CompareTarget::Version(v) => (Target::Version, TargetUnion::Version(v)),
        CompareTarget::Lease(l) => (Target::Lease, TargetUnion::Lease(LeaseId::raw(l))),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: compare.key,
        target_union: Some(union),
        range_end: Vec::new(),
    }
}

fn op_to_pb(op: Op) -> pb::RequestOp {
    use pb::request_op::Request;
    let request = match op {
        Op::Put { key, value, lease } => Request::RequestPut(pb::PutRequest {
            key,
            value,
            lease: LeaseId::raw(lease),
            prev_kv: false,
        }),
        Op::Delete { key } => Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key,
            range_end: Vec::new(),
            prev_kv: false,
        }),
    };
    pb::RequestOp {
        request: Some(request),
    }
}

fn require_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument(
            "key is not provided".to_string(),
        ));
    }
    Ok(())
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`host:port` or `http://host:port`;
    /// several are balanced) and checks that it answers. `timeout` bounds
    /// the connection and every later unary call.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, StoreError> {
        let list = endpoints
            .iter()
            .map(|e| endpoint(e, timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let channel = match list.as_slice() {
            [] => {
                return Err(StoreError::InvalidArgument(
                    "no store endpoint given".to_string(),
                ))
            }
            [one] => one.connect().await.map_err(|e| StoreError::Unavailable {
                reason: format!("cannot connect to {}", endpoints.join(",")),
                source: Some(Box::new(e)),
            })?,
            _ => Channel::balance_list(list.into_iter()),
        };
        let store = EtcdStore {
            kv: pb::kv_client::KvClient::new(channel.clone())
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: pb::watch_client::WatchClient::new(channel.clone())
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: pb::lease_client::LeaseClient::new(channel.clone()),
            maintenance: pb::maintenance_client::MaintenanceClient::new(channel),
            timeout,
        };
        store.revision().await?;
        Ok(store)
    }

    /// [`EtcdStore::connect`] to `endpoint`, retried every second (each
    /// failure logged) until it answers or `stop` is cancelled (`None`):
    /// how a daemon that cannot work without its store starts.
    pub async fn connect_until_stopped(
        endpoint: &str,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<crate::SharedStore> {
        loop {
            match EtcdStore::connect(&[endpoint.to_owned()], Duration::from_secs(5)).await {
                Ok(s) => return Some(std::sync::Arc::new(s)),
                Err(e) => {
                    tracing::warn!(store = endpoint, error = %e, "store unreachable; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return None,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let request = pb::RangeRequest {
            key: vec![0],
            count_only: true,
            ..Default::default()
        };
        let response = self
            .call(self.kv.clone().range(request), Context::default())
            .await?;
        header_revision(response.header)
    }

    /// Runs a unary call within the timeout.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
        context: Context,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(StoreError::unavailable(format!(
                "no answer from the store within {:?}",
                self.timeout
            ))),
            Ok(Err(status)) => Err(status_error(status, context)),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }

    async fn range(&self, range: KeyRange) -> Result<pb::RangeResponse, StoreError> {
        let (key, range_end) = range.to_etcd();
        let request = pb::RangeRequest {
            key,
            range_end,
            ..Default::default()
        };
        self.call(self.kv.clone().range(request), Context::default())
            .await
    }

    async fn delete_range(&self, range: KeyRange) -> Result<u64, StoreError> {
        let (key, range_end) = range.to_etcd();
        let request = pb::DeleteRangeRequest {
            key,
            range_end,
            prev_kv: false,
        };
        let response = self
            .call(self.kv.clone().delete_range(request), Context::default())
            .await?;
        Ok(response.deleted.max(0) as u64)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        require_key(key)?;
        let response = self.range(KeyRange::single(key)).await?;
        Ok(response.kvs.into_iter().next().map(kv_from_pb))
    }

    async fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> Result<i64, StoreError> {
        require_key(key)?;
        let request = pb::PutRequest {
            key: key.to_vec(),
            value,
            lease: LeaseId::raw(lease),
            prev_kv: false,
        };
        let context = lease.map(Context::lease).unwrap_or_default();
        let response = self.call(self.kv.clone().put(request), context).await?;
        header_revision(response.header)
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, StoreError> {
        require_key(key)?;
        Ok(self.delete_range(KeyRange::single(key)).await? > 0)
    }

    async fn delete_prefix(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        self.delete_range(KeyRange::prefix(prefix)).await
    }

    async fn list_with_revision(&self, prefix: &[u8]) -> Result<Listing, StoreError> {
        let response = self.range(KeyRange::prefix(prefix)).await?;
        Ok(Listing {
            revision: header_revision(response.header)?,
            kvs: response.kvs.into_iter().map(kv_from_pb).collect(),
        })
    }

    async fn watch(
        &self,
        prefix: &[u8],
        start_revision: Option<i64>,
    ) -> Result<WatchStream, StoreError> {
        StoreError::check_start_revision(start_revision)?;
        let (key, range_end) = KeyRange::prefix(prefix).to_etcd();
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key,
                    range_end,
                    start_revision: start_revision.unwrap_or(0),
                    ..Default::default()
                },
            )),
        };
        let (requests, rx) = mpsc::channel(1);
        requests
            .send(create)
            .await
            .map_err(|_| StoreError::unavailable("watch request stream closed"))?;
        let mut watch = self.watch.clone();
        let opened = tokio::time::timeout(self.timeout, async move {
            let mut responses = watch
                .watch(ReceiverStream::new(rx))
                .await
                .map_err(|s| status_error(s, Context::default()))?
                .into_inner();
            // Wait for the confirmation, keeping anything that comes with
            // or after it.
            loop {
                match responses.message().await {
                    Ok(Some(response)) if response.created => {
                        if response.canceled && response.compact_revision == 0 {
                            return Err(StoreError::Protocol(format!(
                                "watch refused: {}",
                                response.cancel_reason
                            )));
                        }
                        return Ok((responses, response));
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(StoreError::unavailable("watch stream ended")),
                    Err(status) => return Err(status_error(status, Context::default())),
                }
            }
        })
        .await
        .map_err(|_| {
            StoreError::unavailable(format!(
                "the store did not confirm the watch within {:?}",
                self.timeout
            ))
        })??;
        let (responses, first) = opened;
        let mut watcher = EtcdWatcher {
            responses,
            _requests: requests,
            start_revision: start_revision.unwrap_or(0),
            buffered: VecDeque::new(),
            done: false,
        };
        watcher.absorb(first);
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed())
    }

    async fn txn(
        &self,
        compares: Vec<Compare>,
        on_success: Vec<Op>,
        on_failure: Vec<Op>,
    ) -> Result<TxnResult, StoreError> {
        // The lease of the first leased put names a `LeaseNotFound`.
        let lease = on_success
            .iter()
            .chain(on_failure.iter())
            .find_map(|op| match op {
                Op::Put { lease, .. } => *lease,
                Op::Delete { .. } => None,
            });
        let request = pb::TxnRequest {
            compare: compares.into_iter().map(compare_to_pb).collect(),
            success: on_success.into_iter().map(op_to_pb).collect(),
            failure: on_failure.into_iter().map(op_to_pb).collect(),
        };
        let context = lease.map(Context::lease).unwrap_or_default();
        let response = self.call(self.kv.clone().txn(request), context).await?;
        Ok(TxnResult {
            succeeded: response.succeeded,
            revision: header_revision(response.header)?,
        })
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<LeaseId, StoreError> {
        let request = pb::LeaseGrantRequest {
            ttl: ttl_secs,
            id: 0,
        };
        let response = self
            .call(self.lease.clone().lease_grant(request), Context::default())
            .await?;
        if !response.error.is_empty() {
            return Err(StoreError::Protocol(format!(
                "lease grant failed: {}",
                response.error
            )));
        }
        LeaseId::from_raw(response.id)
            .ok_or_else(|| StoreError::Protocol("lease grant returned lease 0".to_string()))
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, StoreError> {
        let mut lease = self.lease.clone();
        let request = pb::LeaseKeepAliveRequest { id: id.0 };
        let answer = tokio::time::timeout(self.timeout, async move {
            let mut responses = lease
                .lease_keep_alive(futures::stream::iter([request]))
                .await?
                .into_inner();
            responses.message().await
        })
        .await
        .map_err(|_| {
            StoreError::unavailable(format!(
                "no keep-alive answer from the store within {:?}",
                self.timeout
            ))
        })?
        .map_err(|s| status_error(s, Context::lease(id)))?;
        match answer {
            Some(response) if response.ttl > 0 => Ok(response.ttl),
            Some(_) => Err(StoreError::LeaseNotFound { id }),
            None => Err(StoreError::unavailable("keep-alive stream ended")),
        }
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<i64>, StoreError> {
        let request = pb::LeaseTimeToLiveRequest {
            id: id.0,
            keys: false,
        };
        let response = self
            .call(
                self.lease.clone().lease_time_to_live(request),
                Context::lease(id),
            )
            .await?;
        Ok((response.ttl >= 0).then_some(response.ttl))
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        let request = pb::LeaseRevokeRequest { id: id.0 };
        self.call(self.lease.clone().lease_revoke(request), Context::lease(id))
            .await?;
        Ok(())
    }

    async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let request = pb::CompactionRequest {
            revision,
            physical: false,
        };
        self.call(
            self.kv.clone().compact(request),
            Context::revision(revision),
        )
        .await?;
        Ok(())
    }

    async fn server_version(&self) -> Result<String, StoreError> {
        let response = self
            .call(
                self.maintenance.clone().status(pb::StatusRequest {}),
                Context::default(),
            )
            .await?;
        Ok(response.version)
    }
}

/// One watch over its own gRPC stream.
struct EtcdWatcher {
    responses: Streaming<pb::WatchResponse>,
    /// Kept open: closing the request side would end the watch.
    _requests: mpsc::Sender<pb::WatchRequest>,
    start_revision: i64,
    buffered: VecDeque<Result<WatchEvent, StoreError>>,
    done: bool,
}

impl EtcdWatcher {
    /// Queues the events (or the end) a response carries.
    fn absorb(&mut self, response: pb::WatchResponse) {
        for event in response.events {
            let Some(kv) = event.kv else {
                continue;
            };
            let event = if event.r#type == mvccpb::event::EventType::Delete as i32 {
                WatchEvent::Delete {
                    revision: kv.mod_revision,
                    key: kv.key,
                }
            } else {
                WatchEvent::Put(kv_from_pb(kv))
            };
            self.buffered.push_back(Ok(event));
        }
        if response.canceled {
            let error = if response.compact_revision != 0 {
                StoreError::Compacted {
                    requested: self.start_revision,
                    compact_revision: response.compact_revision,
                }
            } else {
                StoreError::unavailable(format!("watch canceled: {}", response.cancel_reason))
            };
            self.buffered.push_back(Err(error));
        }
    }

    async fn next(&mut self) -> Option<Result<WatchEvent, StoreError>> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                if item.is_err() {
                    self.done = true;
                    self.buffered.clear();
                }
                return Some(item);
            }
            if self.done {
                return None;
            }
            match self.responses.message().await {
                Ok(Some(response)) => self.absorb(response),
                Ok(None) => {
                    self.done = true;
                    return Some(Err(StoreError::unavailable("watch stream ended")));
                }
                Err(status) => {
                    self.done = true;
                    return Some(Err(status_error(status, Context::default())));
                }
            }
        }
    }
}
