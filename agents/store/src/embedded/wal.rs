//! Files of the embedded store: the data directory lock, the append-only
//! logs, the snapshot and recovery.
//!
//! Layout of a data directory:
//!
//! ```text
//! LOCK                    held (flock) while a store has the directory open
//! snapshot                the state up to some revision (written atomically)
//! wal-<seq:016x>.log      records after the snapshot, oldest first
//! ```
//!
//! A snapshot names the first log it does not cover (`next_log_seq`);
//! older logs are leftovers of an interrupted compaction and are removed.
//! Only the newest log may end in a torn batch (a write cut by a crash
//! before it was acknowledged): recovery cuts it off. A bad batch anywhere
//! else, or followed by a valid one, is corruption of acknowledged data and
//! refuses the open (with the file and offset in the error).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use tracing::{debug, warn};

use super::{
    codec::{self, FrameError},
    mvcc::Mvcc,
};
use crate::{StoreError, WatchEvent};

const LOCK_FILE: &str = "LOCK";
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";

/// The log file with sequence number `seq`.
pub(crate) fn log_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:016x}.log"))
}

fn parse_log_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Creates the directory if needed and locks it against a second store.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    fs::create_dir_all(dir)
        .map_err(|e| StoreError::io(format!("cannot create {}", dir.display()), e))?;
    let path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("cannot open {}", path.display()), e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::unavailable(format!(
            "{} is in use by another store",
            dir.display()
        ))),
        Err(fs::TryLockError::Error(e)) => {
            Err(StoreError::io(format!("cannot lock {}", path.display()), e))
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appends to the newest log.
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: PathBuf,
    seq: u64,
    file: File,
    size_bytes: u64,
}

impl LogWriter {
    fn open(dir: &Path, seq: u64, create: bool) -> io::Result<Self> {
        let path = log_path(dir, seq);
        let file = OpenOptions::new().create(create).append(true).open(&path)?;
        let size_bytes = file.metadata()?.len();
        if create {
            file.sync_all()?;
            sync_dir(dir)?;
        }
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            seq,
            file,
            size_bytes,
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Writes record frames as one batch and makes it durable.
    pub fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        if frames.len() > codec::MAX_RECORD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {} byte log batch is too large", frames.len()),
            ));
        }
        let batch = codec::encode_batch(frames);
        self.file.write_all(&batch)?;
        self.file.sync_data()?;
        self.size_bytes += batch.len() as u64;
        Ok(())
    }

    /// Starts the next log; later appends go there.
    pub fn roll(&mut self) -> io::Result<()> {
        *self = LogWriter::open(&self.dir, self.seq + 1, true)?;
        Ok(())
    }
}

/// Writes the snapshot atomically: temporary file, fsync, rename, fsync of
/// the directory.
pub(crate) fn write_snapshot(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    sync_dir(dir)
}

/// Removes the logs a snapshot covers.
pub(crate) fn remove_logs_before(dir: &Path, seq: u64) -> io::Result<()> {
    for (old, path) in list_logs(dir)? {
        if old < seq {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn list_logs(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut logs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_log_name) {
            logs.push((seq, entry.path()));
        }
    }
    logs.sort();
    Ok(logs)
}

/// What recovery rebuilt.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub mvcc: Mvcc,
    /// Events of the replayed records, one batch per record, in order.
    pub batches: Vec<Vec<WatchEvent>>,
    /// The oldest revision whose events are all in `batches`.
    pub compact_revision: i64,
    pub log: LogWriter,
}

/// Loads the snapshot, replays the logs after it and cuts a torn tail off
/// the newest one.
pub(crate) fn recover(dir: &Path, now: Instant) -> Result<Recovered, StoreError> {
    let io_err =
        |what: &str, path: &Path, e| StoreError::io(format!("cannot {what} {}", path.display()), e);
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(|e| io_err("remove", &tmp, e))?;
    }
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let (mut mvcc, next_seq, compact_revision) = match fs::read(&snapshot_path) {
        Ok(bytes) => {
            let snapshot =
                codec::decode_snapshot(&bytes).map_err(|reason| StoreError::Corrupt {
                    path: snapshot_path.clone(),
                    reason,
                })?;
            let next_seq = snapshot.next_log_seq;
            let compact_revision = snapshot.revision + 1;
            (
                Mvcc::from_snapshot(snapshot, now),
                next_seq,
                compact_revision,
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Mvcc::default(), 0, 1),
        Err(e) => return Err(io_err("read", &snapshot_path, e)),
    };

    let logs = list_logs(dir).map_err(|e| io_err("list", dir, e))?;
    let mut live = Vec::new();
    for (seq, path) in logs {
        if seq < next_seq {
            debug!(path = %path.display(), "removing a log covered by the snapshot");
            fs::remove_file(&path).map_err(|e| io_err("remove", &path, e))?;
        } else {
            live.push((seq, path));
        }
    }
    for (i, (seq, path)) in live.iter().enumerate() {
        if *seq != next_seq + i as u64 {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                reason: format!(
                    "log {seq} found where log {} was expected",
                    next_seq + i as u64
                ),
            });
        }
    }

    let mut batches = Vec::new();
    let count = live.len();
    for (i, (_, path)) in live.iter().enumerate() {
        let bytes = fs::read(path).map_err(|e| io_err("read", path, e))?;
        let newest = i + 1 == count;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let (records, used) = match codec::decode_batch(&bytes[pos..]) {
                Ok(decoded) => decoded,
                Err(e) => {
                    let corrupt = |reason: String| StoreError::Corrupt {
                        path: path.clone(),
                        reason,
                    };
                    if !newest || matches!(e, FrameError::Malformed(_)) {
                        return Err(corrupt(format!("batch at offset {pos}: {e}")));
                    }
                    if let Some(next) = codec::find_valid_batch_after(&bytes, pos) {
                        return Err(corrupt(format!(
                            "damaged batch at offset {pos} ({e}) is followed by a valid one at offset {next}"
                        )));
                    }
                    warn!(
                        path = %path.display(),
                        offset = pos,
                        discarded_bytes = bytes.len() - pos,
                        reason = %e,
                        "cutting off a torn write at the end of the log"
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| io_err("open", path, e))?;
                    file.set_len(pos as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| io_err("truncate", path, e))?;
                    break;
                }
            };
            for record in records {
                let events =
                    mvcc.apply_record(&record, now)
                        .map_err(|reason| StoreError::Corrupt {
                            path: path.clone(),
                            reason: format!("batch at offset {pos}: {reason}"),
                        })?;
                batches.push(events);
            }
            pos += used;
        }
    }

    let log = match live.last() {
        Some((seq, path)) => {
            LogWriter::open(dir, *seq, false).map_err(|e| io_err("open", path, e))?
        }
        None => LogWriter::open(dir, next_seq, true)
            .map_err(|e| io_err("create", &log_path(dir, next_seq), e))?,
    };
    Ok(Recovered {
        mvcc,
        batches,
        compact_revision,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_round_trip() {
        let path = log_path(Path::new("/d"), 0x2a);
        let name = path.file_name().and_then(|n| n.to_str());
        assert_eq!(name, Some("wal-000000000000002a.log"));
        assert_eq!(name.and_then(parse_log_name), Some(0x2a));
        assert_eq!(parse_log_name("wal-2a.log"), None);
        assert_eq!(parse_log_name("snapshot"), None);
    }
}
