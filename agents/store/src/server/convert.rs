//! Conversions between the etcd v3 protobuf messages and the embedded
//! store's requests, answers, keys and events, and the response header
//! every answer carries.

use io_engine_api::etcd::{etcdserverpb as pb, mvccpb};
use tonic::Status;

use crate::{
    embedded::{KeyRange, RangeRequest, RequestOp, ResponseOp},
    Compare, CompareOp, CompareTarget, KeyValue, LeaseId, WatchEvent,
};

/// Reported as the cluster and member ID in response headers.
pub(super) const CLUSTER_ID: u64 = 0x6d61_7961_7374_6f72;
pub(super) const MEMBER_ID: u64 = 1;

pub(super) fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: CLUSTER_ID,
        member_id: MEMBER_ID,
        revision,
        raft_term: 1,
    })
}

pub(super) fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: LeaseId::raw(kv.lease),
    }
}

pub(super) fn event_to_pb(event: WatchEvent) -> mvccpb::Event {
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

pub(super) fn range_from_pb(request: pb::RangeRequest) -> RangeRequest {
    RangeRequest {
        range: KeyRange::from_etcd(request.key, request.range_end),
        limit: usize::try_from(request.limit.max(0)).unwrap_or(usize::MAX),
        keys_only: request.keys_only,
        count_only: request.count_only,
    }
}

pub(super) fn range_response(response: ResponseOp, revision: i64) -> pb::RangeResponse {
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

pub(super) fn compare_from_pb(compare: pb::Compare) -> Result<Compare, Status> {
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

pub(super) fn op_from_pb(op: pb::RequestOp) -> Result<RequestOp, Status> {
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

pub(super) fn response_to_pb(response: ResponseOp, revision: i64) -> pb::ResponseOp {
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
