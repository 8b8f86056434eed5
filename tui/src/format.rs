//! Text formatting shared by the views and the events: sizes, short ids,
//! clock times, durations, rates, counts per second and text progress bars. Pure functions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Binary-unit size with one decimal: `512 B`, `1.5 KiB`, `10.0 GiB` (the
/// workspace's one rule, as upstream's io-engine-client prints sizes).
pub fn size(bytes: u64) -> String {
    mayastor_common::size::format_spaced(bytes)
}

/// The first 8 characters of an id (uuids are told apart by them).
pub fn short_id(id: &str) -> &str {
    match id.char_indices().nth(8) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// Wall-clock time of day, UTC, `HH:MM:SS`.
pub fn clock(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, (day % 3600) / 60, day % 60)
}

/// A short duration: `45s`, `2m05s`, `1h02m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// A transfer rate: `12.0 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() || bytes_per_sec <= 0.0 {
        return "0 B/s".to_string();
    }
    format!("{}/s", size(bytes_per_sec.round() as u64))
}

/// A count per second, short: `850`, `1.2k`, `3.4M`.
pub fn count(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "0".to_string();
    }
    if per_sec < 1000.0 {
        format!("{per_sec:.0}")
    } else if per_sec < 1e6 {
        format!("{:.1}k", per_sec / 1e3)
    } else {
        format!("{:.1}M", per_sec / 1e6)
    }
}

/// `part` as a whole percentage of `whole` (rounded down; `None` when
/// `whole` is zero).
pub fn percent(part: u64, whole: u64) -> Option<u64> {
    if whole == 0 {
        return None;
    }
    Some(((part as u128 * 100) / whole as u128) as u64)
}

/// A text progress bar of `width` cells between brackets, then the
/// percentage: `[#####.....] 50%`.
pub fn progress_bar(percent: u8, width: usize) -> String {
    let percent = percent.min(100);
    let filled = width * percent as usize / 100;
    format!(
        "[{}{}] {percent}%",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1023), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(10 << 30), "10.0 GiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn ids_and_times() {
        assert_eq!(short_id("1b4e28ba-2fa1-11d2"), "1b4e28ba");
        assert_eq!(short_id("node-1"), "node-1");
        assert_eq!(short_id("ééééééééé"), "éééééééé");
        assert_eq!(
            clock(UNIX_EPOCH + Duration::from_secs(86_400 + 3661)),
            "01:01:01"
        );
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(rate(1.5 * 1024.0 * 1024.0), "1.5 MiB/s");
        assert_eq!(rate(f64::NAN), "0 B/s");
    }

    #[test]
    fn bars_and_percentages() {
        assert_eq!(progress_bar(55, 10), "[#####.....] 55%");
        assert_eq!(progress_bar(250, 4), "[####] 100%");
        assert_eq!(percent(40, 100), Some(40));
        assert_eq!(percent(1, 0), None);
        assert_eq!(percent(u64::MAX, u64::MAX), Some(100));
    }
}
