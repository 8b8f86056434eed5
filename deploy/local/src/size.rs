//! Sizes on the command line (`512MiB`, `1GiB`, `100M`, plain bytes) and
//! sizes in messages.

use mayastor_common::size::{self, BareUnit};

/// Parses a size: a number with an optional unit. `K`, `Ki`, `KiB` (and
/// `M`, `G`, `T` alike) are powers of 1024; `KB`, `MB`, `GB`, `TB` powers
/// of 1000; no unit or `B` means bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    size::parse(text, BareUnit::Bytes, true)
}

/// `512 MiB`, `1.5 GiB`, `4 KiB`, `100 B`.
pub use size::format_short as format_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64mi"), Ok(64 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "MiB", "1.5GiB", "-1M", "12XB", "99999999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(100), "100 B");
    }
}
