//! The etcd API itself, spoken with the generated client, against a real
//! etcd and against `serve_embedded`: the details `EtcdStore` does not use
//! (previous values, limits, counts, several watchers on one stream,
//! filters, cancellation, keep-alive streams, lease key lists) must behave
//! the same on both.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use io_engine_api::etcd::{etcdserverpb as pb, mvccpb};
use pb::{
    kv_client::KvClient, lease_client::LeaseClient, request_op, response_op,
    watch_client::WatchClient, watch_create_request::FilterType, watch_request::RequestUnion,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{transport::Channel, Code};

macro_rules! both {
    ($($body:ident),* $(,)?) => {
        mod etcd {
            $(
                #[tokio::test]
                async fn $body() {
                    let etcd = crate::common::EtcdProcess::start().await;
                    crate::$body(crate::channel(&etcd.endpoint).await).await;
                }
            )*
        }
        mod served {
            $(
                #[tokio::test]
                async fn $body() {
                    let served = crate::common::ServedBackend::start().await;
                    crate::$body(crate::channel(&served.endpoint).await).await;
                }
            )*
        }
    };
}

both!(kv_details, watchers_share_a_stream, lease_details);

async fn channel(endpoint: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

async fn kv_details(channel: Channel) {
    let mut kv = KvClient::new(channel);
    kv.put(put("/d/a", "1")).await.unwrap();
    let previous = kv
        .put(pb::PutRequest {
            prev_kv: true,
            ..put("/d/a", "2")
        })
        .await
        .unwrap()
        .into_inner()
        .prev_kv
        .unwrap();
    assert_eq!(previous.value, b"1");
    kv.put(put("/d/b", "3")).await.unwrap();
    kv.put(put("/d/c", "4")).await.unwrap();

    let range = |limit, keys_only, count_only| pb::RangeRequest {
        key: b"/d/".to_vec(),
        range_end: prefix_end("/d/"),
        limit,
        keys_only,
        count_only,
        ..Default::default()
    };
    let limited = kv.range(range(2, false, false)).await.unwrap().into_inner();
    assert_eq!(
        (limited.kvs.len(), limited.count, limited.more),
        (2, 3, true)
    );
    assert_eq!(limited.kvs[0].key, b"/d/a");
    let keys = kv.range(range(0, true, false)).await.unwrap().into_inner();
    assert!(keys.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(keys.kvs.len(), 3);
    let counted = kv.range(range(0, false, true)).await.unwrap().into_inner();
    assert_eq!((counted.kvs.len(), counted.count), (0, 3));
    // "\0" as range end: every key from the start key on.
    let from = kv
        .range(pb::RangeRequest {
            key: b"/d/b".to_vec(),
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(from.count, 2);

    // A transaction reading inside its branch sees its own earlier write.
    let txn = kv
        .txn(pb::TxnRequest {
            compare: vec![pb::Compare {
                result: pb::compare::CompareResult::Equal as i32,
                target: pb::compare::CompareTarget::Value as i32,
                key: b"/d/a".to_vec(),
                target_union: Some(pb::compare::TargetUnion::Value(b"2".to_vec())),
                range_end: Vec::new(),
            }],
            success: vec![
                pb::RequestOp {
                    request: Some(request_op::Request::RequestPut(put("/d/e", "5"))),
                },
                pb::RequestOp {
                    request: Some(request_op::Request::RequestRange(range(0, false, true))),
                },
            ],
            failure: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(txn.succeeded);
    match &txn.responses[1].response {
        Some(response_op::Response::ResponseRange(r)) => assert_eq!(r.count, 4),
        other => panic!("unexpected {other:?}"),
    }

    let deleted = kv
        .delete_range(pb::DeleteRangeRequest {
            key: b"/d/".to_vec(),
            range_end: prefix_end("/d/"),
            prev_kv: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 4);
    assert_eq!(deleted.prev_kvs.len(), 4);

    // Errors carry etcd's codes.
    let revision = deleted.header.unwrap().revision;
    let future = kv
        .range(pb::RangeRequest {
            key: b"/d/a".to_vec(),
            revision: revision + 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(future.code(), Code::OutOfRange, "{future:?}");
    let empty = kv.put(put("", "x")).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
}

/// Collects the next response with events or a cancel, skipping others.
async fn next_response(responses: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    loop {
        let response = tokio::time::timeout(Duration::from_secs(10), responses.message())
            .await
            .expect("a watch response in time")
            .unwrap()
            .unwrap();
        if !response.events.is_empty() || response.canceled || response.created {
            return response;
        }
    }
}

async fn watchers_share_a_stream(channel: Channel) {
    let mut kv = KvClient::new(channel.clone());
    let mut watch = WatchClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    let create = |key: &str, filters: Vec<i32>| pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key.into(),
            range_end: prefix_end(key),
            filters,
            ..Default::default()
        })),
    };
    tx.send(create("/a/", Vec::new())).await.unwrap();
    let mut responses = watch
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created_a = next_response(&mut responses).await;
    assert!(created_a.created);
    tx.send(create("/b/", vec![FilterType::Nodelete as i32]))
        .await
        .unwrap();
    let created_b = next_response(&mut responses).await;
    assert!(created_b.created);
    let (a, b) = (created_a.watch_id, created_b.watch_id);
    assert_ne!(a, b);

    kv.put(put("/a/1", "x")).await.unwrap();
    kv.put(put("/b/1", "x")).await.unwrap();
    kv.delete_range(pb::DeleteRangeRequest {
        key: b"/b/1".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    kv.put(put("/a/2", "x")).await.unwrap();

    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    while seen_a.len() < 2 || seen_b.is_empty() {
        let response = next_response(&mut responses).await;
        for event in response.events {
            let key = String::from_utf8(event.kv.unwrap().key).unwrap();
            let put = event.r#type == mvccpb::event::EventType::Put as i32;
            if response.watch_id == a {
                seen_a.push((key, put));
            } else if response.watch_id == b {
                seen_b.push((key, put));
            }
        }
    }
    assert_eq!(
        seen_a,
        [("/a/1".to_string(), true), ("/a/2".to_string(), true)]
    );
    assert_eq!(seen_b, [("/b/1".to_string(), true)], "deletes filtered out");

    tx.send(pb::WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
            watch_id: a,
        })),
    })
    .await
    .unwrap();
    let canceled = next_response(&mut responses).await;
    assert!(canceled.canceled);
    assert_eq!(canceled.watch_id, a);
    // Only B is left: a put under /a/ is not reported any more.
    kv.put(put("/a/3", "x")).await.unwrap();
    kv.put(put("/b/2", "x")).await.unwrap();
    let response = next_response(&mut responses).await;
    assert_eq!(response.watch_id, b);
    assert_eq!(response.events[0].kv.as_ref().unwrap().key, b"/b/2");
}

async fn lease_details(channel: Channel) {
    let mut kv = KvClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel);
    let granted = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 4242 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((granted.id, granted.ttl), (4242, 30));
    let taken = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 4242 })
        .await;
    assert!(taken.is_err(), "an ID in use is refused");
    kv.put(pb::PutRequest {
        lease: 4242,
        ..put("/lease/a", "1")
    })
    .await
    .unwrap();

    let info = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: 4242,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.granted_ttl, 30);
    assert!((28..=30).contains(&info.ttl), "{}", info.ttl);
    assert_eq!(info.keys, [b"/lease/a".to_vec()]);
    let unknown = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: 77,
            keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.ttl, -1);

    // One keep-alive stream answers every request in order; an unknown
    // lease gets TTL 0.
    let requests = [4242, 77, 4242].map(|id| pb::LeaseKeepAliveRequest { id });
    let mut answers = lease
        .lease_keep_alive(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut ttls = Vec::new();
    for _ in 0..3 {
        let answer = answers.message().await.unwrap().unwrap();
        ttls.push((answer.id, answer.ttl));
    }
    assert_eq!(ttls, [(4242, 30), (77, 0), (4242, 30)]);

    lease
        .lease_revoke(pb::LeaseRevokeRequest { id: 4242 })
        .await
        .unwrap();
    let again = lease
        .lease_revoke(pb::LeaseRevokeRequest { id: 4242 })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    let gone = kv
        .range(pb::RangeRequest {
            key: b"/lease/a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.kvs.is_empty());
}
