//! Cutting a log to what the bundle keeps: lines since a time, at most
//! `max_bytes` of the newest ones, optionally only lines that mention one
//! of some ids. Streams from a reader to a writer; never holds more than
//! one line.
//!
//! A line's time is the RFC 3339 timestamp it starts with (tracing's text
//! format), or the `"timestamp"` / `"ts"` field of a JSON line (tracing's
//! JSON format, etcd). A line without one (a wrapped message, a backtrace)
//! belongs to the record of the timed line before it; lines before the
//! first timed line go with that first timed line. A file with no timed
//! line at all is kept whole (up to `max_bytes`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What to keep.
#[derive(Clone, Copy)]
pub struct Cut<'a> {
    /// Keep records at or after this time (ns since the epoch).
    pub since_ns: i64,
    /// Keep at most this many bytes (the newest lines).
    pub max_bytes: u64,
    /// Keep only the lines for which this is true.
    pub line_filter: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
}

impl Cut<'_> {
    /// Every line, at most the newest `max_bytes`.
    pub fn newest(max_bytes: u64) -> Self {
        Cut {
            since_ns: i64::MIN,
            max_bytes,
            line_filter: None,
        }
    }
}

/// What a cut kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutStats {
    pub lines: u64,
    pub bytes: u64,
    /// Bytes of the source file when it was read.
    pub source_bytes: u64,
    /// Whether older lines were left out for `max_bytes`.
    pub truncated: bool,
}

/// The time of a log line, if it carries one.
pub fn line_time(line: &[u8]) -> Option<i64> {
    let trimmed = line.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        for field in [&b"\"timestamp\":\""[..], b"\"ts\":\"", b"\"time\":\""] {
            if let Some(at) = find(trimmed, field) {
                return timestamp_prefix(&trimmed[at + field.len()..]);
            }
        }
        return None;
    }
    timestamp_prefix(trimmed)
}

/// The UTC timestamp `bytes` starts with: `YYYY-MM-DDTHH:MM:SS[.f]Z`
/// (tracing), or with a space for the `T` and no zone (etcd's text log,
/// read as UTC).
fn timestamp_prefix(bytes: &[u8]) -> Option<i64> {
    let date_time = bytes.get(..19)?;
    if !(date_time[4] == b'-' && date_time[7] == b'-' && matches!(date_time[10], b'T' | b' ')) {
        return None;
    }
    let frac_len = match bytes.get(19) {
        Some(b'.') => {
            1 + bytes[20..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        }
        _ => 0,
    };
    let end = 19 + frac_len;
    match bytes.get(end) {
        Some(b'Z') | Some(b' ') | Some(b'\t') | None => {}
        _ => return None,
    }
    let mut text = String::from_utf8(bytes[..end].to_vec()).ok()?;
    text.replace_range(10..11, "T");
    text.push('Z');
    i64::try_from(mayastor_common::time::parse_nanos(&text)?).ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Offset of the first record at or after `since_ns`, reading up to `end`.
fn first_recent_offset(reader: &mut impl BufRead, end: u64, since_ns: i64) -> std::io::Result<u64> {
    let mut offset = 0u64;
    let mut saw_time = false;
    let mut line = Vec::new();
    while offset < end {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)? as u64;
        if n == 0 {
            break;
        }
        if let Some(ts) = line_time(&line) {
            if ts >= since_ns {
                // Untimed lines before the first timed one go with it.
                return Ok(if saw_time { offset } else { 0 });
            }
            saw_time = true;
        }
        offset += n;
    }
    Ok(if saw_time { end } else { 0 })
}

/// Copies the kept part of the file at `path` to `out`.
pub fn cut_file(path: &Path, cut: Cut<'_>, out: &mut dyn Write) -> std::io::Result<CutStats> {
    let mut file = File::open(path)?;
    // A log still being written: read what is there now.
    let end = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(256 << 10, &mut file);
    let mut start = first_recent_offset(&mut reader, end, cut.since_ns)?;
    let mut truncated = false;
    drop(reader);
    if end - start > cut.max_bytes {
        truncated = true;
        // Start at the first whole line within the newest max_bytes.
        let from = end - cut.max_bytes;
        file.seek(SeekFrom::Start(from.saturating_sub(1)))?;
        let mut reader = BufReader::new(&mut file);
        let mut skip = Vec::new();
        let skipped = if from == 0 {
            0
        } else {
            reader.read_until(b'\n', &mut skip)? as u64
        };
        start = from.saturating_sub(1) + skipped;
    }
    file.seek(SeekFrom::Start(start))?;
    let reader = BufReader::with_capacity(256 << 10, (&mut file).take(end - start));
    let mut stats = copy_lines(reader, cut, out)?;
    stats.source_bytes = end;
    stats.truncated = truncated;
    Ok(stats)
}

/// Copies the lines of `reader` that `cut` keeps (its time and filter;
/// not `max_bytes`, which needs the whole length first) to `out`.
pub fn copy_lines(
    mut reader: impl BufRead,
    cut: Cut<'_>,
    out: &mut dyn Write,
) -> std::io::Result<CutStats> {
    let mut stats = CutStats::default();
    let mut keep_record = true;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if let Some(ts) = line_time(&line) {
            keep_record = ts >= cut.since_ns;
        }
        if !keep_record {
            continue;
        }
        if let Some(filter) = cut.line_filter {
            if !filter(&String::from_utf8_lossy(&line)) {
                continue;
            }
        }
        out.write_all(&line)?;
        stats.lines += 1;
        stats.bytes += line.len() as u64;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc3339;

    const S: i64 = 1_000_000_000;

    fn log(lines: &[(Option<i64>, &str)]) -> String {
        lines
            .iter()
            .map(|(ts, text)| match ts {
                Some(ts) => format!("{}  INFO {text}\n", rfc3339(*ts)),
                None => format!("{text}\n"),
            })
            .collect()
    }

    fn run(text: &str, cut: Cut<'_>) -> (String, CutStats) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log");
        std::fs::write(&path, text).expect("write");
        let mut out = Vec::new();
        let stats = cut_file(&path, cut, &mut out).expect("cut");
        (String::from_utf8(out).expect("utf8"), stats)
    }

    #[test]
    fn since_keeps_recent_records_with_their_continuations() {
        let base = 1_800_000_000 * S;
        let text = log(&[
            (None, "banner"),
            (Some(base), "old"),
            (None, "  old continuation"),
            (Some(base + 100 * S), "new"),
            (None, "  new continuation"),
            (Some(base + 50 * S), "late old line"),
            (Some(base + 101 * S), "newer"),
        ]);
        let cut = Cut {
            since_ns: base + 60 * S,
            max_bytes: u64::MAX,
            line_filter: None,
        };
        let (out, stats) = run(&text, cut);
        assert_eq!(
            out.lines()
                .map(|l| l.split("INFO ").last().unwrap_or(l).trim())
                .collect::<Vec<_>>(),
            ["new", "new continuation", "newer"]
        );
        assert_eq!(stats.lines, 3);
        // Everything recent: the leading banner comes along.
        let (all, _) = run(&text, Cut { since_ns: 0, ..cut });
        assert!(all.starts_with("banner\n"));
        assert_eq!(all, text);
        // Nothing recent.
        let (none, _) = run(
            &text,
            Cut {
                since_ns: base + 1000 * S,
                ..cut
            },
        );
        assert_eq!(none, "");
    }

    #[test]
    fn max_bytes_keeps_whole_newest_lines() {
        let base = 1_800_000_000 * S;
        let lines: Vec<(Option<i64>, String)> = (0..100)
            .map(|i| (Some(base + i * S), format!("line {i:03}")))
            .collect();
        let borrowed: Vec<(Option<i64>, &str)> =
            lines.iter().map(|(t, s)| (*t, s.as_str())).collect();
        let text = log(&borrowed);
        let line_len = text.lines().next().map_or(0, |l| l.len() + 1) as u64;
        let cut = Cut {
            since_ns: 0,
            max_bytes: line_len * 10 + 5,
            line_filter: None,
        };
        let (out, stats) = run(&text, cut);
        assert!(stats.truncated);
        assert_eq!(out.lines().count(), 10);
        assert!(out.ends_with("line 099\n"));
        assert!(out.starts_with(&rfc3339(base + 90 * S)));
    }

    #[test]
    fn line_times() {
        let t = |s: &str| line_time(s.as_bytes());
        let base = t("2026-12-06T15:41:28.224674Z").expect("tracing");
        assert_eq!(base % 1_000_000_000, 224_674_000);
        assert_eq!(t("  2026-12-06T15:41:28.224674Z  INFO x"), Some(base));
        assert_eq!(t("2026-12-06 15:41:28.224674 I | embed: x"), Some(base));
        assert_eq!(
            t(r#"{"level":"info","ts":"2026-12-06T15:41:28.224674Z"}"#),
            Some(base)
        );
        assert_eq!(
            t(r#"{"timestamp":"2026-12-06T15:41:28.224674Z","x":1}"#),
            Some(base)
        );
        for none in [
            "",
            "x",
            "raft2026/12/06 15:41:28 INFO",
            "2026-12-06T15:41:28+02:00",
            "2026-13-06T15:41:28Z",
        ] {
            assert_eq!(t(none), None, "{none}");
        }
    }

    #[test]
    fn json_and_untimed_files() {
        assert!(line_time(br#"{"timestamp":"2026-01-01T00:00:00Z"}"#).is_some());
        let (out, _) = run(
            "no time here\nnor here\n",
            Cut {
                since_ns: i64::MAX,
                max_bytes: u64::MAX,
                line_filter: None,
            },
        );
        assert_eq!(out, "no time here\nnor here\n");
    }

    #[test]
    fn filter_keeps_matching_lines() {
        let text = "a vol-1\nb vol-2\nc vol-1\n";
        let filter = |l: &str| l.contains("vol-1");
        let (out, _) = run(
            text,
            Cut {
                since_ns: 0,
                max_bytes: u64::MAX,
                line_filter: Some(&filter),
            },
        );
        assert_eq!(out, "a vol-1\nc vol-1\n");
    }
}
