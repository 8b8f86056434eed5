//! `KV`: range, put, delete-range, transactions and compaction, each run
//! as one transaction of the embedded store.

use io_engine_api::etcd::etcdserverpb as pb;
use tonic::{Request, Response, Status};

use super::convert::*;
use super::error_status;
use crate::{
    embedded::{KeyRange, RequestOp, ResponseOp, TxnRequest},
    EmbeddedStore, StoreError,
};

pub(super) struct KvService {
    pub(super) store: EmbeddedStore,
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
