//! RFC 3339 timestamps (UTC) from unix milliseconds, for tables and JSON.
//!
//! Dates use the proleptic Gregorian calendar, converted with the classic
//! days-to-civil arithmetic (400-year eras), so no time crate is needed.

const MS_PER_DAY: i64 = 86_400_000;

/// `2023-11-14T22:13:20Z`: whole seconds (milliseconds are dropped).
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

/// The `YYYY-MM-DD` date and the milliseconds into that day.
fn split(unix_ms: i64) -> (String, i64) {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    (format!("{year:04}-{month:02}-{day:02}"), ms_of_day)
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01, so that leap days end each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small by construction (1..=31, 1..=12).
    (year, day_range(month), day_range(day))
}

fn day_range(value: i64) -> u32 {
    u32::try_from(value).expect("invariant: month and day are in 1..=31")
}

#[cfg(test)]
mod tests {
    use super::*;

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
