//! UTC time as the bundle needs it: RFC 3339 timestamps at the start of
//! log lines (parsed to nanoseconds since the epoch), the archive's default
//! name, and the manifest's times.
//!
//! Pure functions over integers (civil-from-days and back, proleptic
//! Gregorian calendar); no clock is read except in [`now_ns`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Broken-down UTC time of `ns` since the epoch.
fn parts(ns: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    (y, mo, d, rem / 3600, rem % 3600 / 60, rem % 60, nanos)
}

/// `mayastor-YYYY-MM-DD--HH-MM-SS-UTC`, upstream's bundle name (without
/// the extension).
pub fn archive_stem(ns: i64) -> String {
    let (y, mo, d, h, mi, s, _) = parts(ns);
    format!("mayastor-{y:04}-{mo:02}-{d:02}--{h:02}-{mi:02}-{s:02}-UTC")
}

/// RFC 3339 with milliseconds, e.g. `2026-12-06T15:11:31.123Z`.
pub fn rfc3339(ns: i64) -> String {
    let (y, mo, d, h, mi, s, n) = parts(ns);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        n / 1_000_000
    )
}

fn digits(bytes: &[u8], at: usize, count: usize) -> Option<i64> {
    let slice = bytes.get(at..at + count)?;
    slice.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Parses an RFC 3339 timestamp at the start of `bytes`
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `T` or a space; no zone
/// before a space or the end means UTC) into
/// nanoseconds since the epoch. Anything else gives `None`.
pub fn parse_rfc3339_prefix(bytes: &[u8]) -> Option<i64> {
    let sep = |at: usize, want: &[u8]| bytes.get(at).is_some_and(|b| want.contains(b));
    let year = digits(bytes, 0, 4)?;
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    let hour = digits(bytes, 11, 2)?;
    let minute = digits(bytes, 14, 2)?;
    let second = digits(bytes, 17, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0i64;
    if sep(at, b".,") {
        at += 1;
        let mut scale = 100_000_000i64;
        let start = at;
        while let Some(b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
            nanos += i64::from(b - b'0') * scale;
            scale /= 10;
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    // No zone (etcd's text log): taken as UTC, the zone of servers here.
    let offset_secs = match bytes.get(at).copied().unwrap_or(b' ') {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = digits(bytes, at + 1, 2)?;
            let om = digits(bytes, at + 4, 2)?;
            if !sep(at + 3, b":") {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        b' ' | b'\t' | b']' | b'|' => 0,
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(parse_rfc3339_prefix(b"1970-01-01T00:00:00Z"), Some(0));
        let ns = parse_rfc3339_prefix(b"2026-12-06T15:11:31.123456789Z  INFO x").unwrap();
        assert_eq!(rfc3339(ns), "2026-12-06T15:11:31.123Z");
        assert_eq!(archive_stem(ns), "mayastor-2026-12-06--15-11-31-UTC");
        assert_eq!(ns % 1_000_000_000, 123_456_789);
        let plus = parse_rfc3339_prefix(b"2026-12-06T17:11:31+02:00").unwrap();
        assert_eq!(plus, parse_rfc3339_prefix(b"2026-12-06T15:11:31Z").unwrap());
        assert_eq!(
            parse_rfc3339_prefix(b"2024-02-29 00:00:00Z"),
            Some(days_from_civil(2024, 2, 29) * 86_400 * 1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_prefix(b"2026-12-06 15:41:28.224674 I | embed: x"),
            parse_rfc3339_prefix(b"2026-12-06T15:41:28.224674Z")
        );
        for day in [-800_000i64, -1, 0, 1, 19_000, 60_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn not_timestamps() {
        for bad in [
            &b""[..],
            b"hello",
            b"2026-13-01T00:00:00Z",
            b"2026-12-06T15:11:31x",
            b"2026-12-06T15:11:31.Z",
            b"2026-12-06X15:11:31Z",
            b"   at src/main.rs:10",
        ] {
            assert_eq!(parse_rfc3339_prefix(bad), None, "{bad:?}");
        }
    }
}
