//! RFC 3339 timestamps (UTC) from unix milliseconds, and back, with the
//! proleptic Gregorian calendar (the classic days-to-civil arithmetic over
//! 400-year eras), so no time crate is needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MS_PER_DAY: i64 = 86_400_000;

/// `2023-11-14T22:13:20Z`: whole seconds.
pub fn format_secs(unix_ms: i64) -> String {
    let (date, ms_of_day) = split(unix_ms);
    let secs = ms_of_day / 1000;
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `2023-11-14T22:13:20.123Z`: with milliseconds.
pub fn format_millis(unix_ms: i64) -> String {
    let (date, ms_of_day) = split(unix_ms);
    let secs = ms_of_day / 1000;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// [`format_millis`], but empty for 0 or a negative value ("never").
pub fn format_millis_or_empty(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        String::new()
    } else {
        format_millis(unix_ms)
    }
}

/// `2023-11-14--22-13-20-UTC`: for file names (no colons).
pub fn format_for_file_name(unix_ms: i64) -> String {
    let (date, ms_of_day) = split(unix_ms);
    let secs = ms_of_day / 1000;
    format!(
        "{date}--{:02}-{:02}-{:02}-UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Milliseconds since the unix epoch, now (0 if the clock is before 1970).
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (what [`format_millis`] and the
/// tracing formatter write) into unix nanoseconds; `None` for anything else.
pub fn parse_nanos(text: &str) -> Option<i128> {
    let stamp = text.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec = t.next()?;
    if t.next().is_some() || hh > 23 || mm > 59 {
        return None;
    }
    let (ss, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let ss: i64 = ss.parse().ok()?;
    if ss > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    let secs = days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// [`parse_nanos`] as a `SystemTime` (`None` before 1970).
pub fn parse_system_time(text: &str) -> Option<SystemTime> {
    let nanos = u64::try_from(parse_nanos(text)?).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// The `YYYY-MM-DD` date and the milliseconds into that day.
fn split(unix_ms: i64) -> (String, i64) {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    (format!("{year:04}-{month:02}-{day:02}"), ms_of_day)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift the epoch to 0000-03-01, so that leap days end each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_millis_or_empty(0), "");
        assert_eq!(format_millis(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(format_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_secs(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_for_file_name(1_700_000_000_123),
            "2023-11-14--22-13-20-UTC"
        );
        // A leap day and the turn of a century.
        assert_eq!(format_secs(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_secs(-1_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_back_what_it_formats() {
        for ms in [
            0,
            1_000,
            951_782_400_000,
            1_700_000_000_123,
            4_102_444_800_999,
        ] {
            assert_eq!(
                parse_nanos(&format_millis(ms)),
                Some(i128::from(ms) * 1_000_000)
            );
        }
        assert_eq!(
            parse_nanos("2024-05-01T10:00:00.123456789Z"),
            parse_nanos("2024-05-01T10:00:00Z").map(|n| n + 123_456_789)
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T10:00:00",
            "x",
        ] {
            assert_eq!(parse_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(format_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_secs(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_millis(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_secs(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn leap_days_and_year_ends() {
        assert_eq!(format_secs(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_secs(951_868_800_000), "2000-03-01T00:00:00Z");
        assert_eq!(format_secs(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(format_secs(4_107_542_399_000), "2100-02-28T23:59:59Z");
        assert_eq!(format_secs(4_107_542_400_000), "2100-03-01T00:00:00Z");
        assert_eq!(format_secs(1_704_067_199_000), "2023-12-31T23:59:59Z");
    }

    #[test]
    fn before_the_epoch() {
        assert_eq!(format_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_secs(-86_400_000), "1969-12-31T00:00:00Z");
        assert_eq!(format_secs(-2_208_988_800_000), "1900-01-01T00:00:00Z");
    }

    #[test]
    fn every_day_of_four_centuries_is_consecutive() {
        let mut previous = civil_from_days(-1);
        for days in 0..146_097 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1) && pd >= 28;
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {y}-{m}-{d}"
            );
            previous = (y, m, d);
        }
    }
}
