//! Byte formats of the embedded store: log batches and records, and
//! snapshots. Pure functions, no I/O.
//!
//! A log file is a sequence of batches, one per write of the log writer
//! (group commit), each holding one or more records (all integers little
//! endian):
//!
//! ```text
//! batch  = magic "MSWB" | len: u32 | crc32c(payload): u32 | payload: record*
//! record = len: u32 | crc32c(payload): u32 | payload
//! payload of a record = version: u8 (1) | revision: i64 | count: u32 | entry*
//! entry  = 1 put          | key | value | lease: i64
//!        | 2 delete       | key
//!        | 3 lease grant  | id: i64 | ttl_secs: i64
//!        | 4 lease revoke | id: i64
//! key, value = len: u32 | bytes
//! ```
//!
//! A crash can only tear the batch being written, which is the last one of
//! the newest log: a bad batch with nothing valid after it is a torn tail.
//! A bad batch followed by a valid one is corruption of acknowledged data.
//!
//! Snapshot file:
//!
//! ```text
//! magic "MSTSNAP1" | len: u64 | crc32c: u32 | payload
//! payload = version: u8 (1) | revision: i64 | next_log_seq: u64
//!         | nkeys: u32 | (key | value | create: i64 | mod: i64
//!                         | version: i64 | lease: i64)*
//!         | nleases: u32 | (id: i64 | ttl_secs: i64)*
//! ```

use crate::{KeyValue, LeaseId};

/// Bytes before a log record's payload.
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// Bytes before a batch's payload.
pub(crate) const BATCH_HEADER_BYTES: usize = 12;
const BATCH_MAGIC: &[u8; 4] = b"MSWB";
/// A length field beyond this is garbage (records and batches are far
/// smaller: see `mvcc::MAX_REQUEST_BYTES`).
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 30;
const RECORD_VERSION: u8 = 1;
const SNAPSHOT_MAGIC: &[u8; 8] = b"MSTSNAP1";
const SNAPSHOT_VERSION: u8 = 1;

/// One durable change of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: Vec<u8>,
    },
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    LeaseRevoke {
        id: i64,
    },
}

/// The entries of one atomic change and the store revision after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub revision: i64,
    pub entries: Vec<Entry>,
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends inside the frame.
    Truncated,
    /// A batch does not start with the batch magic.
    BadMagic,
    /// The length field is beyond [`MAX_RECORD_BYTES`].
    TooLarge(usize),
    BadChecksum,
    /// The checksum holds but the payload does not parse.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("truncated frame"),
            FrameError::BadMagic => f.write_str("no batch magic"),
            FrameError::TooLarge(len) => write!(f, "frame length {len} is too large"),
            FrameError::BadChecksum => f.write_str("checksum mismatch"),
            FrameError::Malformed(reason) => write!(f, "malformed record: {reason}"),
        }
    }
}

/// A point-in-time copy of the whole state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub revision: i64,
    /// Logs with a lower sequence number are covered by this snapshot.
    pub next_log_seq: u64,
    pub kvs: Vec<KeyValue>,
    /// `(id, ttl_secs)`.
    pub leases: Vec<(i64, i64)>,
}

/// Appends the framed record to `out`.
pub(crate) fn encode_record(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    out.push(RECORD_VERSION);
    put_i64(out, record.revision);
    put_len(out, record.entries.len());
    for entry in &record.entries {
        match entry {
            Entry::Put { key, value, lease } => {
                out.push(1);
                put_bytes(out, key);
                put_bytes(out, value);
                put_i64(out, *lease);
            }
            Entry::Delete { key } => {
                out.push(2);
                put_bytes(out, key);
            }
            Entry::LeaseGrant { id, ttl_secs } => {
                out.push(3);
                put_i64(out, *id);
                put_i64(out, *ttl_secs);
            }
            Entry::LeaseRevoke { id } => {
                out.push(4);
                put_i64(out, *id);
            }
        }
    }
    let payload = &out[start + FRAME_HEADER_BYTES..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the frame at the start of `buf`: the record and the bytes it took.
pub(crate) fn decode_record(buf: &[u8]) -> Result<(Record, usize), FrameError> {
    let header: [u8; FRAME_HEADER_BYTES] = buf
        .get(..FRAME_HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let payload = buf
        .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)
        .ok_or(FrameError::Truncated)?;
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::BadChecksum);
    }
    let record = parse_record(payload).map_err(FrameError::Malformed)?;
    Ok((record, FRAME_HEADER_BYTES + len))
}

/// Wraps record frames (from [`encode_record`]) into one batch.
pub(crate) fn encode_batch(frames: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + frames.len());
    out.extend_from_slice(BATCH_MAGIC);
    put_len(&mut out, frames.len());
    out.extend_from_slice(&crc32c::crc32c(frames).to_le_bytes());
    out.extend_from_slice(frames);
    out
}

/// Reads the batch at the start of `buf`: its records and the bytes it
/// took.
pub(crate) fn decode_batch(buf: &[u8]) -> Result<(Vec<Record>, usize), FrameError> {
    let header: [u8; BATCH_HEADER_BYTES] = buf
        .get(..BATCH_HEADER_BYTES)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    if &header[..4] != BATCH_MAGIC {
        return Err(FrameError::BadMagic);
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if len > MAX_RECORD_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let payload = buf
        .get(BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + len)
        .ok_or(FrameError::Truncated)?;
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::BadChecksum);
    }
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let (record, used) = decode_record(&payload[pos..]).map_err(|e| match e {
            FrameError::Malformed(reason) => FrameError::Malformed(reason),
            other => FrameError::Malformed(format!("record at batch offset {pos}: {other}")),
        })?;
        records.push(record);
        pos += used;
    }
    Ok((records, BATCH_HEADER_BYTES + len))
}

/// The offset of the first valid batch that starts after `from`, if any.
pub(crate) fn find_valid_batch_after(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.checked_add(1)?;
    let rest = buf.get(start..)?;
    rest.windows(BATCH_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == BATCH_MAGIC)
        .map(|(i, _)| start + i)
        .find(|&offset| decode_batch(&buf[offset..]).is_ok())
}

fn parse_record(payload: &[u8]) -> Result<Record, String> {
    let mut r = Reader::new(payload);
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(format!("unknown record version {version}"));
    }
    let revision = r.i64()?;
    let count = r.u32()? as usize;
    // Every entry takes at least 9 bytes: do not trust `count` for the
    // allocation.
    let mut entries = Vec::with_capacity(count.min(r.remaining() / 9));
    for _ in 0..count {
        let entry = match r.u8()? {
            1 => Entry::Put {
                key: r.bytes()?,
                value: r.bytes()?,
                lease: r.i64()?,
            },
            2 => Entry::Delete { key: r.bytes()? },
            3 => Entry::LeaseGrant {
                id: r.i64()?,
                ttl_secs: r.i64()?,
            },
            4 => Entry::LeaseRevoke { id: r.i64()? },
            tag => return Err(format!("unknown entry tag {tag}")),
        };
        entries.push(entry);
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(Record { revision, entries })
}

pub(crate) fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.push(SNAPSHOT_VERSION);
    put_i64(&mut payload, snapshot.revision);
    payload.extend_from_slice(&snapshot.next_log_seq.to_le_bytes());
    put_len(&mut payload, snapshot.kvs.len());
    for kv in &snapshot.kvs {
        put_bytes(&mut payload, &kv.key);
        put_bytes(&mut payload, &kv.value);
        put_i64(&mut payload, kv.create_revision);
        put_i64(&mut payload, kv.mod_revision);
        put_i64(&mut payload, kv.version);
        put_i64(&mut payload, LeaseId::raw(kv.lease));
    }
    put_len(&mut payload, snapshot.leases.len());
    for (id, ttl_secs) in &snapshot.leases {
        put_i64(&mut payload, *id);
        put_i64(&mut payload, *ttl_secs);
    }
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

pub(crate) fn decode_snapshot(buf: &[u8]) -> Result<Snapshot, String> {
    let mut r = Reader::new(buf);
    if r.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
        return Err("bad snapshot magic".to_string());
    }
    let len = r.u64()?;
    let crc = r.u32()?;
    if len != r.remaining() as u64 {
        return Err(format!(
            "snapshot length {len} does not match the file ({} bytes of payload)",
            r.remaining()
        ));
    }
    let payload = r.take(r.remaining())?;
    if crc32c::crc32c(payload) != crc {
        return Err("snapshot checksum mismatch".to_string());
    }
    let mut r = Reader::new(payload);
    let version = r.u8()?;
    if version != SNAPSHOT_VERSION {
        return Err(format!("unknown snapshot version {version}"));
    }
    let revision = r.i64()?;
    let next_log_seq = r.u64()?;
    let nkeys = r.u32()? as usize;
    let mut kvs = Vec::with_capacity(nkeys.min(r.remaining() / 40));
    for _ in 0..nkeys {
        kvs.push(KeyValue {
            key: r.bytes()?,
            value: r.bytes()?,
            create_revision: r.i64()?,
            mod_revision: r.i64()?,
            version: r.i64()?,
            lease: LeaseId::from_raw(r.i64()?),
        });
    }
    let nleases = r.u32()? as usize;
    let mut leases = Vec::with_capacity(nleases.min(r.remaining() / 16));
    for _ in 0..nleases {
        leases.push((r.i64()?, r.i64()?));
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes in snapshot", r.remaining()));
    }
    Ok(Snapshot {
        revision,
        next_log_seq,
        kvs,
        leases,
    })
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths are bounded by MAX_RECORD_BYTES (checked by the writer).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "needs {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry() -> impl Strategy<Value = Entry> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (bytes(), bytes(), any::<i64>()).prop_map(|(key, value, lease)| Entry::Put {
                key,
                value,
                lease
            }),
            bytes().prop_map(|key| Entry::Delete { key }),
            (any::<i64>(), any::<i64>())
                .prop_map(|(id, ttl_secs)| Entry::LeaseGrant { id, ttl_secs }),
            any::<i64>().prop_map(|id| Entry::LeaseRevoke { id }),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        (any::<i64>(), proptest::collection::vec(entry(), 0..8))
            .prop_map(|(revision, entries)| Record { revision, entries })
    }

    proptest! {
        #[test]
        fn records_round_trip(records in proptest::collection::vec(record(), 1..6)) {
            let mut buf = Vec::new();
            for r in &records {
                encode_record(r, &mut buf);
            }
            let mut pos = 0;
            for r in &records {
                let (decoded, used) = decode_record(&buf[pos..]).unwrap();
                prop_assert_eq!(&decoded, r);
                pos += used;
            }
            prop_assert_eq!(pos, buf.len());
        }

        #[test]
        fn every_strict_prefix_of_a_frame_is_truncated(r in record()) {
            let mut buf = Vec::new();
            encode_record(&r, &mut buf);
            for cut in 0..buf.len() {
                prop_assert_eq!(decode_record(&buf[..cut]).unwrap_err(), FrameError::Truncated);
            }
        }

        #[test]
        fn a_flipped_bit_is_caught(r in record(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut buf = Vec::new();
            encode_record(&r, &mut buf);
            let i = at.index(buf.len());
            buf[i] ^= 1 << bit;
            // Either the length now overruns, or the checksum fails; never a
            // different record.
            prop_assert!(decode_record(&buf).is_err());
        }

        #[test]
        fn decoding_garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_record(&buf);
            let _ = decode_snapshot(&buf);
        }
    }

    fn batch_of(records: &[Record]) -> Vec<u8> {
        let mut frames = Vec::new();
        for r in records {
            encode_record(r, &mut frames);
        }
        encode_batch(&frames)
    }

    proptest! {
        #[test]
        fn batches_round_trip(batches in proptest::collection::vec(
            proptest::collection::vec(record(), 1..4), 1..4)) {
            let mut log = Vec::new();
            for b in &batches {
                log.extend(batch_of(b));
            }
            let mut pos = 0;
            for b in &batches {
                let (records, used) = decode_batch(&log[pos..]).unwrap();
                prop_assert_eq!(&records, b);
                pos += used;
            }
            prop_assert_eq!(pos, log.len());
        }

        #[test]
        fn a_cut_batch_is_truncated(records in proptest::collection::vec(record(), 1..4)) {
            let batch = batch_of(&records);
            for cut in 0..batch.len() {
                let err = decode_batch(&batch[..cut]).unwrap_err();
                prop_assert_eq!(err, FrameError::Truncated);
            }
        }

        #[test]
        fn damage_is_told_from_a_torn_tail(
            a in proptest::collection::vec(record(), 1..3),
            b in proptest::collection::vec(record(), 1..3),
            at in any::<prop::sample::Index>(),
        ) {
            let first = batch_of(&a);
            let mut log = first.clone();
            log.extend(batch_of(&b));
            // Damage anywhere in the first batch: it no longer decodes, but
            // a valid batch follows, so this is not a torn tail.
            let i = at.index(first.len());
            log[i] ^= 0x5a;
            prop_assert!(decode_batch(&log).is_err());
            prop_assert_eq!(find_valid_batch_after(&log, 0), Some(first.len()));
            // A cut second batch has nothing valid after it.
            let mut torn = first.clone();
            torn.extend(&batch_of(&b)[..5]);
            prop_assert_eq!(find_valid_batch_after(&torn, first.len()), None);
        }
    }

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let snapshot = Snapshot {
            revision: 42,
            next_log_seq: 7,
            kvs: vec![KeyValue {
                key: b"a".to_vec(),
                value: b"1".to_vec(),
                create_revision: 3,
                mod_revision: 40,
                version: 5,
                lease: Some(LeaseId(9)),
            }],
            leases: vec![(9, 10)],
        };
        let mut bytes = encode_snapshot(&snapshot);
        assert_eq!(decode_snapshot(&bytes).unwrap(), snapshot);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(decode_snapshot(&bytes).is_err());
        assert!(decode_snapshot(&bytes[..bytes.len() - 3]).is_err());
    }
}
