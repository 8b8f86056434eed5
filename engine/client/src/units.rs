//! Sizes on io-engine-client's command line and in its tables: plain
//! numbers are MiB, decimal units are refused as ambiguous, and tables print
//! upstream's `96.0 MiB` style. The parsing and printing live in
//! `mayastor_common::size`; this module holds the client's rules on top.

use mayastor_common::size::{self, BareUnit};

/// A byte count as upstream's client prints it: `0 B`, `512 B`,
/// `96.0 MiB`, `1.0 GiB`.
pub fn human_size(bytes: u64) -> String {
    size::format_spaced(bytes)
}

/// Parses a size given on the command line into bytes: a plain number is
/// MiB (`64`), otherwise a number with a binary unit (`512KiB`, `10GiB`);
/// 0 is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    match parse_size_or_zero(text)? {
        0 => Err("a size must be greater than 0".to_string()),
        bytes => Ok(bytes),
    }
}

/// [`parse_size`] that lets 0 through, for the replica commands, whose
/// engine-side check of a 0 size is part of their contract.
pub fn parse_size_or_zero(text: &str) -> Result<u64, String> {
    size::parse(text, BareUnit::Mebibytes, false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{human_size, parse_size, parse_size_or_zero};

    #[test]
    fn parsed_sizes() {
        assert_eq!(parse_size("64"), Ok(64 * MIB));
        assert_eq!(parse_size(" 64 "), Ok(64 * MIB));
        assert_eq!(parse_size("64MiB"), Ok(64 * MIB));
        assert_eq!(parse_size("64 mib"), Ok(64 * MIB));
        assert_eq!(parse_size("64M"), Ok(64 * MIB));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("512KiB"), Ok(512 * KIB));
        assert_eq!(parse_size("512k"), Ok(512 * KIB));
        assert_eq!(parse_size("2Gi"), Ok(2 * GIB));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert!(parse_size("0").unwrap_err().contains("greater than 0"));
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert_eq!(parse_size_or_zero("2GiB"), Ok(2 * GIB));
        assert!(parse_size_or_zero("2GB").is_err());
        assert!(parse_size("0GiB").is_err());
        assert!(parse_size("10MB").unwrap_err().contains("ambiguous"));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1PiB").is_err());
        assert!(parse_size("17179869184TiB")
            .unwrap_err()
            .contains("too large"));
    }

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
