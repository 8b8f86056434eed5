//! Human-readable sizes (binary units, one decimal).

/// Binary units, smallest first.
const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// Formats a byte count as upstream's client does: `0 B`, `512 B`,
/// `96.0 MiB`, `1.0 GiB`.
///
/// Plain bytes have no decimal. A value switches to the next unit as soon as
/// it would print with four integer digits, so 1000 MiB is `1.0 GiB`, never
/// `1000.0 MiB`.
pub fn human_size(bytes: u64) -> String {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::human_size;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn bytes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1), "1 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(999), "999 B");
    }

    #[test]
    fn switches_before_four_integer_digits() {
        assert_eq!(human_size(1000), "1.0 KiB");
        assert_eq!(human_size(KIB), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(999 * KIB), "999.0 KiB");
        assert_eq!(human_size(1000 * KIB), "1.0 MiB");
        assert_eq!(human_size(MIB - 1), "1.0 MiB");
        assert_eq!(human_size(1000 * MIB), "1.0 GiB");
        assert_eq!(human_size(1023 * MIB), "1.0 GiB");
        // 999.96 MiB would round to 1000.0 MiB.
        assert_eq!(human_size(999 * MIB + 983 * KIB), "1.0 GiB");
    }

    #[test]
    fn upstream_session_values() {
        assert_eq!(human_size(100 * MIB - 4 * MIB), "96.0 MiB");
        assert_eq!(human_size(10 * MIB), "10.0 MiB");
        assert_eq!(human_size(GIB), "1.0 GiB");
        assert_eq!(human_size(GIB + GIB / 2), "1.5 GiB");
    }

    #[test]
    fn large_values() {
        assert_eq!(human_size(1 << 40), "1.0 TiB");
        assert_eq!(human_size(1 << 50), "1.0 PiB");
        assert_eq!(human_size(1 << 60), "1.0 EiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }
}
