//! Unit tests of `mvcc`.

#![allow(clippy::unwrap_used)]

use super::*;

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp::Put {
        key: key.into(),
        value: value.into(),
        lease: 0,
        prev_kv: false,
    }
}

fn run(m: &mut Mvcc, compares: Vec<Compare>, success: Vec<RequestOp>) -> TxnResponse {
    m.txn(TxnRequest {
        compares,
        success,
        failure: Vec::new(),
    })
    .unwrap()
    .0
}

fn get(m: &Mvcc, key: &str) -> Option<KeyValue> {
    match m.range(&RangeRequest::all(KeyRange::single(key.as_bytes()))) {
        ResponseOp::Range { mut kvs, .. } => kvs.pop(),
        _ => unreachable!(),
    }
}

#[test]
fn revisions_and_versions_follow_etcd() {
    let mut m = Mvcc::default();
    assert_eq!(run(&mut m, vec![], vec![put("a", "1")]).revision, 1);
    assert_eq!(run(&mut m, vec![], vec![put("b", "1")]).revision, 2);
    assert_eq!(run(&mut m, vec![], vec![put("a", "2")]).revision, 3);
    let a = get(&m, "a").unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, a.version),
        (1, 3, 2),
        "{a:?}"
    );
    // Deleting an absent key changes nothing, not even the revision.
    let r = run(
        &mut m,
        vec![],
        vec![RequestOp::DeleteRange {
            range: KeyRange::single(b"zz"),
            prev_kv: false,
        }],
    );
    assert_eq!(r.revision, 3);
    // Two writes in one transaction share one revision.
    let r = run(&mut m, vec![], vec![put("c", "1"), put("d", "1")]);
    assert_eq!(r.revision, 4);
    assert_eq!(get(&m, "d").unwrap().mod_revision, 4);
}

#[test]
fn compares_on_absent_keys() {
    let mut m = Mvcc::default();
    assert!(m.holds(&Compare::absent("x")));
    assert!(!m.holds(&Compare::exists("x")));
    assert!(!m.holds(&Compare::value_equals("x", "")));
    assert!(m.holds(&Compare::version_equals("x", 0)));
    run(&mut m, vec![], vec![put("x", "v")]);
    assert!(m.holds(&Compare::exists("x")));
    assert!(m.holds(&Compare::value_equals("x", "v")));
    assert!(m.holds(&Compare::new(
        "x",
        CompareOp::Greater,
        CompareTarget::Value(b"a".to_vec())
    )));
}

#[test]
fn a_key_written_twice_in_a_branch_is_refused() {
    let mut m = Mvcc::default();
    let err = m
        .txn(TxnRequest {
            success: vec![put("a", "1"), put("a", "2")],
            ..TxnRequest::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
    let err = m
        .txn(TxnRequest {
            success: vec![
                put("a/1", "1"),
                RequestOp::DeleteRange {
                    range: KeyRange::prefix(b"a/"),
                    prev_kv: false,
                },
            ],
            ..TxnRequest::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err}");
    assert_eq!(m.revision(), 0);
}

#[test]
fn revoking_a_lease_deletes_its_keys_at_one_revision() {
    let now = Instant::now();
    let mut m = Mvcc::default();
    let (id, ttl, _) = m.lease_grant(0, 0, now).unwrap();
    assert_eq!(ttl, MIN_LEASE_TTL_SECS);
    let leased = |k: &str| RequestOp::Put {
        key: k.into(),
        value: b"v".to_vec(),
        lease: id.0,
        prev_kv: false,
    };
    run(
        &mut m,
        vec![],
        vec![leased("a"), leased("b"), put("c", "1")],
    );
    assert_eq!(m.lease_info(id.0, now).unwrap().keys.len(), 2);
    let applied = m.lease_revoke(id.0).unwrap();
    assert_eq!(applied.events.len(), 2);
    assert_eq!(m.revision(), 2);
    assert!(get(&m, "a").is_none());
    assert!(get(&m, "c").is_some());
    assert!(matches!(
        m.lease_revoke(id.0),
        Err(StoreError::LeaseNotFound { .. })
    ));
}

#[test]
fn replaying_the_records_rebuilds_the_state() {
    let now = Instant::now();
    let mut m = Mvcc::default();
    let mut records = Vec::new();
    let (id, _, applied) = m.lease_grant(0, 30, now).unwrap();
    records.extend(applied.record);
    for i in 0..20 {
        let (_, applied) = m
            .txn(TxnRequest {
                success: vec![RequestOp::Put {
                    key: format!("k{}", i % 7).into_bytes(),
                    value: vec![i as u8],
                    lease: if i % 3 == 0 { id.0 } else { 0 },
                    prev_kv: false,
                }],
                ..TxnRequest::default()
            })
            .unwrap();
        records.extend(applied.record);
    }
    records.extend(m.lease_revoke(id.0).unwrap().record);
    let mut replayed = Mvcc::default();
    for r in &records {
        replayed.apply_record(r, now).unwrap();
    }
    assert_eq!(replayed.kvs, m.kvs);
    assert_eq!(replayed.revision, m.revision);
    let from_snapshot = Mvcc::from_snapshot(m.to_snapshot(1), now);
    assert_eq!(from_snapshot.kvs, m.kvs);
}

#[test]
fn ranges_honour_limits_and_empty_bounds() {
    let mut m = Mvcc::default();
    run(
        &mut m,
        vec![],
        vec![put("a/1", "1"), put("a/2", "2"), put("b", "3")],
    );
    let r = m.range(&RangeRequest {
        range: KeyRange::prefix(b"a/"),
        limit: 1,
        keys_only: true,
        count_only: false,
    });
    match r {
        ResponseOp::Range { kvs, count, more } => {
            assert_eq!(count, 2);
            assert!(more);
            assert_eq!(kvs.len(), 1);
            assert!(kvs[0].value.is_empty());
        }
        _ => unreachable!(),
    }
    let backwards = KeyRange::from_etcd(b"b".to_vec(), b"a".to_vec());
    assert_eq!(
        m.range(&RangeRequest::all(backwards)),
        ResponseOp::Range {
            kvs: vec![],
            count: 0,
            more: false
        }
    );
    assert_eq!(KeyRange::prefix(b"").to_etcd(), (vec![0], vec![0]));
}
