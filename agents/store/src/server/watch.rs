//! `Watch`: one session per gRPC stream, holding its watchers (created
//! with start revisions and filters, canceled by ID), each forwarding the
//! store's events in batches until the stream or the server ends.

use std::collections::HashMap;

use futures::StreamExt;
use io_engine_api::etcd::etcdserverpb as pb;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::convert::*;
use super::STREAM_QUEUE;
use crate::{embedded::KeyRange, EmbeddedStore, StoreError, WatchEvent};

/// Events sent in one watch response at most.
const WATCH_BATCH_EVENTS: usize = 256;

pub(super) struct WatchService {
    pub(super) store: EmbeddedStore,
    pub(super) shutdown: CancellationToken,
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
