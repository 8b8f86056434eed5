//! Byte sizes: parsed from command lines and printed in the styles our
//! tools' users know.
//!
//! Two print styles exist because two upstream tools print differently and
//! scripts match them: [`format_spaced`] (`96.0 MiB`, io-engine-client's
//! tables) and [`format_compact`] (`96MiB`, `1.5GiB`, the kubectl plugin's
//! tables); [`format_short`] (`96 MiB`, `1.5 GiB`) is for messages.

/// Binary units, smallest first.
const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// What a number without a unit means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    /// Bytes (`4096` is 4 KiB).
    Bytes,
    /// MiB (`64` is 64 MiB), as io-engine-client's `--size`.
    Mebibytes,
}

/// Parses a size: a whole number with an optional unit, case-insensitive.
/// `K`, `Ki`, `KiB` (and `M`, `G`, `T` alike) are powers of 1024; `B` is
/// bytes; decimal units (`KB`, `MB`...) are accepted only when `decimal` is
/// true (else refused as ambiguous). Zero is allowed; overflow is refused.
pub fn parse(text: &str, bare: BareUnit, decimal: bool) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512MiB, 1GiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" => match bare {
            BareUnit::Bytes => 1,
            BareUnit::Mebibytes => 1 << 20,
        },
        "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "kb" | "mb" | "gb" | "tb" if !decimal => {
            return Err(format!(
                "{text:?}: decimal units are ambiguous, use KiB, MiB, GiB or TiB"
            ))
        }
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown size unit {other:?} (KiB, MiB, GiB, TiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `0 B`, `512 B`, `96.0 MiB`, `1.0 GiB`: one decimal, and a value moves to
/// the next unit as soon as it would print with four integer digits (1000
/// MiB is `1.0 GiB`), as upstream's io-engine-client.
pub fn format_spaced(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 1;
    // Decide on the printed (rounded) value, so 999.96 KiB becomes 1.0 MiB.
    while unit + 1 < UNITS.len() && (value * 10.0).round() >= 10_000.0 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0B`, `512B`, `1KiB`, `96MiB`, `1.5GiB`: at most two decimals, trailing
/// zeros dropped, as upstream's kubectl plugin.
pub fn format_compact(bytes: u64) -> String {
    let (value, unit) = scale(bytes);
    let mut text = format!("{value:.2}");
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    format!("{text}{unit}")
}

/// `100 B`, `4 KiB`, `512 MiB`, `1.5 GiB`: for messages.
pub fn format_short(bytes: u64) -> String {
    let (value, unit) = scale(bytes);
    if unit == "B" || value.fract() == 0.0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// The value in the largest unit that keeps it at least 1.
fn scale(bytes: u64) -> (f64, &'static str) {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    (value, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units_and_bare_numbers() {
        assert_eq!(parse("512MiB", BareUnit::Bytes, false), Ok(512 << 20));
        assert_eq!(parse("1G", BareUnit::Bytes, false), Ok(1 << 30));
        assert_eq!(parse("4096", BareUnit::Bytes, false), Ok(4096));
        assert_eq!(parse("64", BareUnit::Mebibytes, false), Ok(64 << 20));
        assert_eq!(parse("8b", BareUnit::Mebibytes, false), Ok(8));
        assert_eq!(parse("1MB", BareUnit::Bytes, true), Ok(1_000_000));
        assert!(parse("1MB", BareUnit::Bytes, false).is_err());
        assert!(parse("x", BareUnit::Bytes, true).is_err());
        assert!(parse("1.5G", BareUnit::Bytes, true).is_err());
        assert!(parse("99999999999T", BareUnit::Bytes, true).is_err());
    }

    #[test]
    fn prints_each_style() {
        assert_eq!(format_spaced(0), "0 B");
        assert_eq!(format_spaced(96 << 20), "96.0 MiB");
        assert_eq!(format_spaced(1000 << 20), "1.0 GiB");
        assert_eq!(format_compact(0), "0B");
        assert_eq!(format_compact(96 << 20), "96MiB");
        assert_eq!(format_compact(3 << 29), "1.5GiB");
        assert_eq!(format_short(100), "100 B");
        assert_eq!(format_short(512 << 20), "512 MiB");
        assert_eq!(format_short(3 << 29), "1.5 GiB");
    }
}
