//! The values exchanged with a [`Store`](crate::Store): keys with their
//! revisions, watch events, transaction compares and operations.

use std::{fmt, pin::Pin};

use futures::Stream;

use crate::StoreError;

/// A lease: keys attached to it are deleted when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    /// Hexadecimal, as etcd's tools print lease IDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl LeaseId {
    /// `0` (no lease) becomes `None`.
    pub(crate) fn from_raw(raw: i64) -> Option<LeaseId> {
        (raw != 0).then_some(LeaseId(raw))
    }

    /// `None` becomes `0`, etcd's "no lease".
    pub(crate) fn raw(lease: Option<LeaseId>) -> i64 {
        lease.map_or(0, |l| l.0)
    }
}

/// One key as stored, with etcd's revision bookkeeping.
///
/// The store has one global revision, bumped by every change (a whole
/// transaction is one change). `create_revision` is the revision that
/// created the key, `mod_revision` the one of its latest put, `version`
/// counts puts since creation (1 after the creating put).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: Option<LeaseId>,
}

impl KeyValue {
    /// The key as UTF-8, when it is.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }

    /// The value as UTF-8, when it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// A keys listing and the store revision it was read at (watch from
/// `revision + 1` to see every later change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Sorted by key.
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key as written.
    Put(KeyValue),
    /// The key was deleted (or its lease ended) at `revision`.
    Delete { key: Vec<u8>, revision: i64 },
}

impl WatchEvent {
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// Events in revision order. An error (a compacted start revision, a lost
/// connection, a closed store) is the last item: watch again from the
/// revision after the last event seen.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// How a key's field must relate to the compare's operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    /// The key's field is greater than the operand.
    Greater,
    /// The key's field is less than the operand.
    Less,
}

/// The field of a key a [`Compare`] looks at, with the operand.
///
/// An absent key has version, create and mod revision 0 and no lease;
/// every comparison of an absent key's value is false (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    ModRevision(i64),
    CreateRevision(i64),
    Version(i64),
    Lease(Option<LeaseId>),
}

/// A condition on one key for [`Store::txn`](crate::Store::txn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    pub fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: CompareTarget) -> Self {
        Compare {
            key: key.into(),
            op,
            target,
        }
    }

    /// The key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::Equal, CompareTarget::CreateRevision(0))
    }

    /// The key exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::Greater, CompareTarget::CreateRevision(0))
    }

    /// The key exists and holds exactly `value`.
    pub fn value_equals(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::Equal, CompareTarget::Value(value.into()))
    }

    /// The key was last written at `revision` (0: the key is absent).
    pub fn mod_revision_equals(key: impl Into<Vec<u8>>, revision: i64) -> Self {
        Self::new(key, CompareOp::Equal, CompareTarget::ModRevision(revision))
    }

    /// The key was created at `revision` (0: the key is absent).
    pub fn create_revision_equals(key: impl Into<Vec<u8>>, revision: i64) -> Self {
        Self::new(
            key,
            CompareOp::Equal,
            CompareTarget::CreateRevision(revision),
        )
    }

    /// The key's version is `version` (0: the key is absent).
    pub fn version_equals(key: impl Into<Vec<u8>>, version: i64) -> Self {
        Self::new(key, CompareOp::Equal, CompareTarget::Version(version))
    }
}

/// A write in a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: Vec<u8>,
    },
}

impl Op {
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    pub fn put_with_lease(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Op::Delete { key: key.into() }
    }
}

/// The outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// Every compare held, so the success branch ran.
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when the branch
    /// that ran changed nothing).
    pub revision: i64,
}

/// What [`Store::compare_and_swap`](crate::Store::compare_and_swap)
/// expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key was last written at this revision.
    ModRevision(i64),
    /// The key exists with exactly this value.
    Value(Vec<u8>),
}

impl Expect {
    pub(crate) fn to_compare(&self, key: &[u8]) -> Compare {
        match self {
            Expect::Absent => Compare::absent(key),
            Expect::ModRevision(revision) => Compare::mod_revision_equals(key, *revision),
            Expect::Value(value) => Compare::value_equals(key, value.clone()),
        }
    }
}

/// The end of the key range holding every key that starts with `prefix`:
/// `None` when that range is unbounded (an empty prefix, or one made only
/// of `0xff` bytes).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"a/b"), Some(b"a/c".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff"), None);
    }

    #[test]
    fn lease_ids_print_in_hex() {
        assert_eq!(LeaseId(255).to_string(), "ff");
        assert_eq!(LeaseId::from_raw(0), None);
        assert_eq!(LeaseId::raw(Some(LeaseId(7))), 7);
    }
}
