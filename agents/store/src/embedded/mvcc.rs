//! The embedded store's state machine: an ordered map of keys with etcd's
//! revision bookkeeping, and the leases. Pure (no I/O, no clock of its
//! own: callers pass `now`), deterministic, so replaying the log of its
//! changes ([`Entry`]) rebuilds the same state.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    ops::Bound,
    time::{Duration, Instant},
};

use super::codec::{Entry, Record, Snapshot};
use crate::{
    types::prefix_end, Compare, CompareOp, CompareTarget, KeyValue, LeaseId, StoreError, WatchEvent,
};

/// Longest lease accepted, in seconds (as etcd).
pub(crate) const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;
/// Most bytes of keys and values one transaction may write.
pub(crate) const MAX_REQUEST_BYTES: usize = 32 << 20;
/// Shorter TTLs are raised to this.
pub(crate) const MIN_LEASE_TTL_SECS: i64 = 1;

/// Bounds of a key range for `BTreeMap::range`.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A contiguous range of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub start: Vec<u8>,
    pub end: RangeEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeEnd {
    /// Only `start`.
    Single,
    /// Up to this key, exclusive.
    Before(Vec<u8>),
    /// Every key from `start` on.
    Unbounded,
}

impl KeyRange {
    pub fn single(key: &[u8]) -> Self {
        KeyRange {
            start: key.to_vec(),
            end: RangeEnd::Single,
        }
    }

    /// Every key starting with `prefix`. Keys are never empty, so the empty
    /// prefix is the range from `"\0"` on (etcd's spelling of "every key").
    pub fn prefix(prefix: &[u8]) -> Self {
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        KeyRange {
            start,
            end: prefix_end(prefix).map_or(RangeEnd::Unbounded, RangeEnd::Before),
        }
    }

    /// etcd's encoding: an empty `range_end` is one key, `"\0"` is every key
    /// from `key` on.
    pub fn from_etcd(key: Vec<u8>, range_end: Vec<u8>) -> Self {
        let end = match range_end.as_slice() {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            _ => RangeEnd::Before(range_end),
        };
        KeyRange { start: key, end }
    }

    /// The inverse of [`KeyRange::from_etcd`].
    pub fn to_etcd(&self) -> (Vec<u8>, Vec<u8>) {
        let key = self.start.clone();
        let end = match &self.end {
            RangeEnd::Single => Vec::new(),
            RangeEnd::Before(end) => end.clone(),
            RangeEnd::Unbounded => vec![0],
        };
        (key, end)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == self.start.as_slice(),
            RangeEnd::Before(end) => key >= self.start.as_slice() && key < end.as_slice(),
            RangeEnd::Unbounded => key >= self.start.as_slice(),
        }
    }

    /// Bounds for `BTreeMap::range`, or `None` for an empty range (which
    /// `BTreeMap::range` would refuse).
    fn bounds(&self) -> Option<KeyBounds<'_>> {
        let start = Bound::Included(self.start.as_slice());
        match &self.end {
            RangeEnd::Single => Some((start, Bound::Included(self.start.as_slice()))),
            RangeEnd::Before(end) if end.as_slice() > self.start.as_slice() => {
                Some((start, Bound::Excluded(end.as_slice())))
            }
            RangeEnd::Before(_) => None,
            RangeEnd::Unbounded => Some((start, Bound::Unbounded)),
        }
    }
}

/// A read of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeRequest {
    pub range: KeyRange,
    /// 0: no limit.
    pub limit: usize,
    pub keys_only: bool,
    pub count_only: bool,
}

impl RangeRequest {
    pub fn all(range: KeyRange) -> Self {
        RangeRequest {
            range,
            limit: 0,
            keys_only: false,
            count_only: false,
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestOp {
    Range(RangeRequest),
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
        prev_kv: bool,
    },
    DeleteRange {
        range: KeyRange,
        prev_kv: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResponseOp {
    Range {
        kvs: Vec<KeyValue>,
        count: i64,
        more: bool,
    },
    Put {
        prev_kv: Option<KeyValue>,
    },
    DeleteRange {
        deleted: i64,
        prev_kvs: Vec<KeyValue>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TxnRequest {
    pub compares: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnResponse {
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: i64,
    pub responses: Vec<ResponseOp>,
}

/// What a change did: the log record to persist (none when nothing
/// changed) and the events to publish.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub record: Option<Record>,
    pub events: Vec<WatchEvent>,
}

/// A lease's time left, its granted TTL and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseInfo {
    pub remaining_secs: i64,
    pub granted_secs: i64,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct LeaseState {
    ttl_secs: i64,
    expires_at: Instant,
    keys: BTreeSet<Vec<u8>>,
}

/// Keys and leases.
#[derive(Debug, Default)]
pub(crate) struct Mvcc {
    kvs: BTreeMap<Vec<u8>, KeyValue>,
    revision: i64,
    leases: HashMap<i64, LeaseState>,
}

impl Mvcc {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.kvs.len()
    }

    pub fn range(&self, request: &RangeRequest) -> ResponseOp {
        let Some(bounds) = request.range.bounds() else {
            return ResponseOp::Range {
                kvs: Vec::new(),
                count: 0,
                more: false,
            };
        };
        let mut kvs = Vec::new();
        let mut count = 0i64;
        for (_, kv) in self.kvs.range::<[u8], _>(bounds) {
            count += 1;
            if request.count_only || (request.limit != 0 && kvs.len() >= request.limit) {
                continue;
            }
            let mut kv = kv.clone();
            if request.keys_only {
                kv.value.clear();
            }
            kvs.push(kv);
        }
        let more = !request.count_only && (kvs.len() as i64) < count;
        ResponseOp::Range { kvs, count, more }
    }

    /// Runs a transaction: evaluates the compares, checks and applies the
    /// chosen branch at one new revision (kept only when something
    /// changed).
    pub fn txn(&mut self, request: TxnRequest) -> Result<(TxnResponse, Applied), StoreError> {
        for compare in &request.compares {
            if compare.key.is_empty() {
                return Err(StoreError::InvalidArgument(
                    "key is not provided".to_string(),
                ));
            }
        }
        let succeeded = request.compares.iter().all(|c| self.holds(c));
        let branch = if succeeded {
            request.success
        } else {
            request.failure
        };
        self.check_branch(&branch)?;

        let revision = self.revision + 1;
        let mut entries = Vec::new();
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            let response = match op {
                RequestOp::Range(range) => self.range(&range),
                RequestOp::Put {
                    key,
                    value,
                    lease,
                    prev_kv,
                } => {
                    let previous = self.put_key(key.clone(), value.clone(), lease, revision);
                    let written = self.kvs.get(&key).cloned();
                    entries.push(Entry::Put { key, value, lease });
                    if let Some(kv) = written {
                        events.push(WatchEvent::Put(kv));
                    }
                    ResponseOp::Put {
                        prev_kv: previous.filter(|_| prev_kv),
                    }
                }
                RequestOp::DeleteRange { range, prev_kv } => {
                    let keys: Vec<Vec<u8>> = match range.bounds() {
                        Some(bounds) => self
                            .kvs
                            .range::<[u8], _>(bounds)
                            .map(|(k, _)| k.clone())
                            .collect(),
                        None => Vec::new(),
                    };
                    let mut prev_kvs = Vec::new();
                    for key in &keys {
                        if let Some(previous) = self.delete_key(key) {
                            if prev_kv {
                                prev_kvs.push(previous);
                            }
                        }
                        entries.push(Entry::Delete { key: key.clone() });
                        events.push(WatchEvent::Delete {
                            key: key.clone(),
                            revision,
                        });
                    }
                    ResponseOp::DeleteRange {
                        deleted: keys.len() as i64,
                        prev_kvs,
                    }
                }
            };
            responses.push(response);
        }
        let record = if entries.is_empty() {
            None
        } else {
            self.revision = revision;
            Some(Record { revision, entries })
        };
        Ok((
            TxnResponse {
                succeeded,
                revision: self.revision,
                responses,
            },
            Applied { record, events },
        ))
    }

    fn holds(&self, compare: &Compare) -> bool {
        let kv = self.kvs.get(&compare.key);
        let ordering = match (&compare.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(value), Some(kv)) => kv.value.as_slice().cmp(value.as_slice()),
            (CompareTarget::ModRevision(r), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
            (CompareTarget::CreateRevision(r), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
            (CompareTarget::Version(v), kv) => kv.map_or(0, |kv| kv.version).cmp(v),
            (CompareTarget::Lease(lease), kv) => kv
                .map_or(0, |kv| LeaseId::raw(kv.lease))
                .cmp(&LeaseId::raw(*lease)),
        };
        match compare.op {
            CompareOp::Equal => ordering.is_eq(),
            CompareOp::NotEqual => ordering.is_ne(),
            CompareOp::Greater => ordering.is_gt(),
            CompareOp::Less => ordering.is_lt(),
        }
    }

    /// Refuses empty keys, unknown leases and a key written twice (as
    /// etcd does), before anything is applied.
    fn check_branch(&self, ops: &[RequestOp]) -> Result<(), StoreError> {
        let duplicate = || StoreError::InvalidArgument("duplicate key given in txn request".into());
        let mut put_keys = HashSet::new();
        let mut request_bytes = 0usize;
        for op in ops {
            if let RequestOp::Put { key, value, .. } = op {
                request_bytes = request_bytes.saturating_add(key.len() + value.len());
            }
        }
        if request_bytes > MAX_REQUEST_BYTES {
            return Err(StoreError::InvalidArgument(format!(
                "request is too large ({request_bytes} bytes of keys and values, at most {MAX_REQUEST_BYTES})"
            )));
        }
        for op in ops {
            let key = match op {
                RequestOp::Range(r) => &r.range.start,
                RequestOp::Put { key, .. } => key,
                RequestOp::DeleteRange { range, .. } => &range.start,
            };
            if key.is_empty() {
                return Err(StoreError::InvalidArgument(
                    "key is not provided".to_string(),
                ));
            }
            if let RequestOp::Put { key, lease, .. } = op {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    return Err(StoreError::LeaseNotFound {
                        id: LeaseId(*lease),
                    });
                }
                if !put_keys.insert(key.as_slice()) {
                    return Err(duplicate());
                }
            }
        }
        for op in ops {
            if let RequestOp::DeleteRange { range, .. } = op {
                if put_keys.iter().any(|k| range.contains(k)) {
                    return Err(duplicate());
                }
            }
        }
        Ok(())
    }

    /// Writes one key at `revision`; returns the previous version of it.
    fn put_key(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
        revision: i64,
    ) -> Option<KeyValue> {
        let lease = LeaseId::from_raw(lease);
        let previous = self.kvs.get(&key).cloned();
        let (create_revision, version) = match &previous {
            Some(p) => (p.create_revision, p.version + 1),
            None => (revision, 1),
        };
        let old_lease = previous.as_ref().and_then(|p| p.lease);
        if old_lease != lease {
            if let Some(old) = old_lease.and_then(|l| self.leases.get_mut(&l.0)) {
                old.keys.remove(&key);
            }
        }
        if let Some(new) = lease.and_then(|l| self.leases.get_mut(&l.0)) {
            new.keys.insert(key.clone());
        }
        self.kvs.insert(
            key.clone(),
            KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
                version,
                lease,
            },
        );
        previous
    }

    fn delete_key(&mut self, key: &[u8]) -> Option<KeyValue> {
        let previous = self.kvs.remove(key)?;
        if let Some(lease) = previous.lease.and_then(|l| self.leases.get_mut(&l.0)) {
            lease.keys.remove(key);
        }
        Some(previous)
    }

    /// Grants a lease: `id` 0 lets the store choose one.
    pub fn lease_grant(
        &mut self,
        id: i64,
        ttl_secs: i64,
        now: Instant,
    ) -> Result<(LeaseId, i64, Applied), StoreError> {
        if ttl_secs > MAX_LEASE_TTL_SECS {
            return Err(StoreError::InvalidArgument(format!(
                "lease TTL {ttl_secs} s is too large (at most {MAX_LEASE_TTL_SECS})"
            )));
        }
        if id < 0 {
            return Err(StoreError::InvalidArgument(format!(
                "lease ID {id} is negative"
            )));
        }
        let ttl_secs = ttl_secs.max(MIN_LEASE_TTL_SECS);
        let id = if id == 0 { self.fresh_lease_id() } else { id };
        if self.leases.contains_key(&id) {
            return Err(StoreError::InvalidArgument(format!(
                "lease {} already exists",
                LeaseId(id)
            )));
        }
        self.insert_lease(id, ttl_secs, now);
        let record = Record {
            revision: self.revision,
            entries: vec![Entry::LeaseGrant { id, ttl_secs }],
        };
        Ok((
            LeaseId(id),
            ttl_secs,
            Applied {
                record: Some(record),
                events: Vec::new(),
            },
        ))
    }

    fn fresh_lease_id(&self) -> i64 {
        loop {
            let id = (rand::random::<u64>() >> 1) as i64;
            if id != 0 && !self.leases.contains_key(&id) {
                return id;
            }
        }
    }

    fn insert_lease(&mut self, id: i64, ttl_secs: i64, now: Instant) {
        self.leases.insert(
            id,
            LeaseState {
                ttl_secs,
                expires_at: expiry(now, ttl_secs),
                keys: BTreeSet::new(),
            },
        );
    }

    /// Ends a lease and deletes its keys at one new revision.
    pub fn lease_revoke(&mut self, id: i64) -> Result<Applied, StoreError> {
        let lease = self
            .leases
            .remove(&id)
            .ok_or(StoreError::LeaseNotFound { id: LeaseId(id) })?;
        let revision = self.revision + 1;
        let mut entries = Vec::with_capacity(lease.keys.len() + 1);
        let mut events = Vec::with_capacity(lease.keys.len());
        for key in lease.keys {
            if self.kvs.remove(&key).is_some() {
                events.push(WatchEvent::Delete {
                    key: key.clone(),
                    revision,
                });
                entries.push(Entry::Delete { key });
            }
        }
        if !events.is_empty() {
            self.revision = revision;
        }
        entries.push(Entry::LeaseRevoke { id });
        Ok(Applied {
            record: Some(Record {
                revision: self.revision,
                entries,
            }),
            events,
        })
    }

    /// Restarts a live lease's TTL; returns it.
    pub fn lease_keep_alive(&mut self, id: i64, now: Instant) -> Result<i64, StoreError> {
        match self.leases.get_mut(&id) {
            Some(lease) if lease.expires_at > now => {
                lease.expires_at = expiry(now, lease.ttl_secs);
                Ok(lease.ttl_secs)
            }
            _ => Err(StoreError::LeaseNotFound { id: LeaseId(id) }),
        }
    }

    pub fn lease_info(&self, id: i64, now: Instant) -> Option<LeaseInfo> {
        let lease = self.leases.get(&id)?;
        let remaining = lease.expires_at.saturating_duration_since(now);
        Some(LeaseInfo {
            remaining_secs: remaining.as_secs() as i64,
            granted_secs: lease.ttl_secs,
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    /// Leases whose time is up, soonest first.
    pub fn expired_leases(&self, now: Instant) -> Vec<i64> {
        let mut expired: Vec<(Instant, i64)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_at <= now)
            .map(|(id, l)| (l.expires_at, *id))
            .collect();
        expired.sort();
        expired.into_iter().map(|(_, id)| id).collect()
    }

    pub fn next_lease_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.expires_at).min()
    }

    /// Replays one logged change. Leases restart their full TTL from `now`.
    pub fn apply_record(
        &mut self,
        record: &Record,
        now: Instant,
    ) -> Result<Vec<WatchEvent>, String> {
        if record.revision < self.revision {
            return Err(format!(
                "record revision {} goes back from {}",
                record.revision, self.revision
            ));
        }
        let revision = record.revision;
        let mut events = Vec::new();
        for entry in &record.entries {
            match entry {
                Entry::Put { key, value, lease } => {
                    self.put_key(key.clone(), value.clone(), *lease, revision);
                    if let Some(kv) = self.kvs.get(key) {
                        events.push(WatchEvent::Put(kv.clone()));
                    }
                }
                Entry::Delete { key } => {
                    self.delete_key(key);
                    events.push(WatchEvent::Delete {
                        key: key.clone(),
                        revision,
                    });
                }
                Entry::LeaseGrant { id, ttl_secs } => self.insert_lease(*id, *ttl_secs, now),
                Entry::LeaseRevoke { id } => {
                    if let Some(lease) = self.leases.remove(id) {
                        for key in lease.keys {
                            self.kvs.remove(&key);
                        }
                    }
                }
            }
        }
        self.revision = revision;
        Ok(events)
    }

    pub fn to_snapshot(&self, next_log_seq: u64) -> Snapshot {
        let mut leases: Vec<(i64, i64)> = self
            .leases
            .iter()
            .map(|(id, l)| (*id, l.ttl_secs))
            .collect();
        leases.sort();
        Snapshot {
            revision: self.revision,
            next_log_seq,
            kvs: self.kvs.values().cloned().collect(),
            leases,
        }
    }

    /// The state a snapshot describes; leases restart their full TTL.
    pub fn from_snapshot(snapshot: Snapshot, now: Instant) -> Self {
        let mut mvcc = Mvcc {
            revision: snapshot.revision,
            ..Mvcc::default()
        };
        for (id, ttl_secs) in snapshot.leases {
            mvcc.insert_lease(id, ttl_secs, now);
        }
        for kv in snapshot.kvs {
            if let Some(lease) = kv.lease.and_then(|l| mvcc.leases.get_mut(&l.0)) {
                lease.keys.insert(kv.key.clone());
            }
            mvcc.kvs.insert(kv.key.clone(), kv);
        }
        mvcc
    }
}

fn expiry(now: Instant, ttl_secs: i64) -> Instant {
    let ttl = Duration::from_secs(ttl_secs.clamp(0, MAX_LEASE_TTL_SECS) as u64);
    // Past what the clock can represent, a lease lives "for ever".
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(1 << 30)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests;
