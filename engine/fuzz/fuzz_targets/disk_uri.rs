//! Fuzzes the pool disk URI parser.
//!
//! Properties: parsing arbitrary UTF-8 never panics, and every URI that
//! parses prints a canonical form that parses back to the same value (and
//! is a fixed point of print-then-parse).

#![no_main]

use blockdev::DiskUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let Ok(uri) = input.parse::<DiskUri>() else {
        return;
    };
    let canonical = uri.to_string();
    let reparsed: DiskUri = match canonical.parse() {
        Ok(u) => u,
        Err(e) => panic!("{input:?} parsed as {uri:?}, but its canonical form {canonical:?} does not parse: {e}"),
    };
    assert_eq!(reparsed, uri, "round trip of {input:?} through {canonical:?}");
    assert_eq!(reparsed.to_string(), canonical, "canonical form of {input:?} is not stable");
});
