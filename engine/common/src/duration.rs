//! Durations as people type them: `500ms`, `10s`, `1.5m`, `2h`, `1d`, or a
//! bare number of seconds; and printed back the same way.

use std::time::Duration;

/// The longest duration accepted: a year.
const MAX_SECS: f64 = 366.0 * 24.0 * 3600.0;

/// Parses a duration: a number (decimals allowed) with an optional unit
/// (`ms`, `s`/`sec`, `m`/`min`, `h`, `d`); no unit means seconds. Zero is
/// allowed; see [`parse_positive`] for timeouts and intervals.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" | "sec" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "{text:?}: unknown duration unit {other:?} (ms, s, m, h, d)"
            ))
        }
    };
    if !seconds.is_finite() || seconds > MAX_SECS {
        return Err(format!("{text:?} is out of range (at most a year)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// [`parse`] for timeouts and intervals: zero is refused.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: the duration must be greater than 0"));
    }
    Ok(d)
}

/// `250ms`, `10s`, `1m30s`, `2h5m`: the largest units, zeros left out.
pub fn format(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms < 1000 {
        return format!("{total_ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "x", "5w", "-1s", "1e400", "400d", "1..2s", "s"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_positive("0s").is_err());
        assert_eq!(parse_positive("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(7500)), "2h5m");
    }
}
