//! The version string every component of the project reports (engine host
//! info and registration, core agent, REST API, store, `--version` flags).
//!
//! It is fixed at build time: `MAYASTOR_VERSION` from the environment of
//! the build when set (a release), else the workspace package version. This
//! crate is the one home of that fact and depends on nothing; it may be
//! used by every crate.
//!
//! The version lives in a fixed-size slot in the binary (a `#[used]`
//! static read with a volatile load, so the compiler never folds it into
//! the code):
//!
//! ```text
//!  SLOT_MAGIC (16 bytes) │ length (1 byte) │ version, zero padded (47 bytes)
//! ```
//!
//! [`stamp`] rewrites that slot in a copy of a built binary, which gives
//! two binaries that differ only in their version string without a second
//! build (the upgrade tests roll a cluster from one to the other). A slot
//! whose bytes are not a valid version reads as [`INVALID`].

#![deny(unsafe_code)]

use std::sync::OnceLock;

/// The slot's opening bytes; they appear once in every binary that links
/// this crate.
const SLOT_MAGIC: [u8; 16] = *b"\x00mayastor-ver\x00\x01\x02";
/// The longest version the slot holds.
pub const MAX_LEN: usize = 47;
const SLOT_LEN: usize = SLOT_MAGIC.len() + 1 + MAX_LEN;

/// What [`version`] reports when the slot was damaged by hand.
pub const INVALID: &str = "invalid-version";

/// The version given to the build.
const BUILD_VERSION: &str = match option_env!("MAYASTOR_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

const fn slot(version: &str) -> [u8; SLOT_LEN] {
    let v = version.as_bytes();
    assert!(
        !v.is_empty() && v.len() <= MAX_LEN,
        "MAYASTOR_VERSION must be 1 to 47 bytes"
    );
    let mut k = 0;
    while k < v.len() {
        let b = v[k];
        assert!(
            b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'+' || b == b'_',
            "MAYASTOR_VERSION may only hold letters, digits and . - + _"
        );
        k += 1;
    }
    let mut out = [0u8; SLOT_LEN];
    let mut i = 0;
    while i < SLOT_MAGIC.len() {
        out[i] = SLOT_MAGIC[i];
        i += 1;
    }
    out[SLOT_MAGIC.len()] = v.len() as u8;
    let mut j = 0;
    while j < v.len() {
        out[SLOT_MAGIC.len() + 1 + j] = v[j];
        j += 1;
    }
    out
}

#[used]
static SLOT: [u8; SLOT_LEN] = slot(BUILD_VERSION);

/// The version of this binary.
pub fn version() -> &'static str {
    static READ: OnceLock<String> = OnceLock::new();
    READ.get_or_init(|| {
        #[allow(unsafe_code)]
        // SAFETY: `SLOT` is a static, so the pointer is valid, aligned and
        // points to initialised bytes for the whole program; the volatile
        // load only stops the compiler from assuming the build's contents.
        let bytes = unsafe { std::ptr::read_volatile(&raw const SLOT) };
        decode(&bytes).unwrap_or_else(|| INVALID.to_owned())
    })
}

/// The version in a slot's bytes, when they hold a valid one.
fn decode(slot: &[u8; SLOT_LEN]) -> Option<String> {
    let len = usize::from(slot[SLOT_MAGIC.len()]);
    let start = SLOT_MAGIC.len() + 1;
    let text = slot.get(start..start + len)?;
    let text = std::str::from_utf8(text).ok()?;
    check(text).ok()?;
    Some(text.to_owned())
}

/// Why a version cannot be stamped.
fn check(version: &str) -> Result<(), String> {
    if version.is_empty() || version.len() > MAX_LEN {
        return Err(format!(
            "a version is 1 to {MAX_LEN} bytes, not {}",
            version.len()
        ));
    }
    if !version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-+_".contains(&b))
    {
        return Err(format!(
            "version {version:?} may only hold letters, digits and . - + _"
        ));
    }
    Ok(())
}

/// Rewrites the version slot in `binary` (the bytes of an executable that
/// links this crate) to `version`; an error, leaving `binary` unchanged,
/// when the version is not valid or the slot is not found exactly once.
pub fn stamp(binary: &mut [u8], version: &str) -> Result<(), String> {
    check(version)?;
    let at = find_slot(binary)?;
    let new = slot_bytes(version);
    binary[at..at + SLOT_LEN].copy_from_slice(&new);
    Ok(())
}

/// The version in the slot of `binary`'s bytes.
pub fn stamped(binary: &[u8]) -> Result<String, String> {
    let at = find_slot(binary)?;
    let mut slot = [0u8; SLOT_LEN];
    slot.copy_from_slice(&binary[at..at + SLOT_LEN]);
    decode(&slot).ok_or_else(|| "the version slot holds no valid version".to_owned())
}

/// The slot's bytes for a checked version (at run time: the magic is then
/// copied from [`SLOT_MAGIC`], not a literal the search could trip on).
fn slot_bytes(version: &str) -> [u8; SLOT_LEN] {
    let mut out = [0u8; SLOT_LEN];
    out[..SLOT_MAGIC.len()].copy_from_slice(&SLOT_MAGIC);
    out[SLOT_MAGIC.len()] = version.len() as u8;
    out[SLOT_MAGIC.len() + 1..SLOT_MAGIC.len() + 1 + version.len()]
        .copy_from_slice(version.as_bytes());
    out
}

fn find_slot(binary: &[u8]) -> Result<usize, String> {
    let mut hits = binary
        .windows(SLOT_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == SLOT_MAGIC)
        .map(|(i, _)| i)
        .filter(|&i| i + SLOT_LEN <= binary.len());
    match (hits.next(), hits.next()) {
        (Some(at), None) => Ok(at),
        (None, _) => Err("no version slot found (not a binary of this project?)".to_owned()),
        (Some(_), Some(_)) => Err("the version slot is found more than once".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_build_version() {
        assert_eq!(version(), BUILD_VERSION);
        assert!(!version().trim().is_empty());
    }

    #[test]
    fn stamps_a_slot_in_place() {
        let mut bin = b"head".to_vec();
        bin.extend_from_slice(&slot("0.1.0"));
        bin.extend_from_slice(b"tail");
        let before = bin.clone();
        assert_eq!(stamped(&bin).as_deref(), Ok("0.1.0"));
        stamp(&mut bin, "0.2.0-rc.1+b7").expect("stamp");
        assert_eq!(stamped(&bin).as_deref(), Ok("0.2.0-rc.1+b7"));
        assert_eq!(bin.len(), before.len());
        assert_eq!(&bin[..4], b"head");
        assert_eq!(&bin[bin.len() - 4..], b"tail");
        // Only the length and version bytes changed.
        let changed: Vec<usize> = (0..bin.len()).filter(|&i| bin[i] != before[i]).collect();
        assert!(changed.iter().all(|i| (4 + 16..4 + SLOT_LEN).contains(i)));
    }

    #[test]
    fn refuses_bad_versions_and_missing_or_double_slots() {
        let mut bin = slot("0.1.0").to_vec();
        let original = bin.clone();
        for bad in ["", "has space", "é", &"9".repeat(MAX_LEN + 1)] {
            assert!(stamp(&mut bin, bad).is_err(), "{bad:?}");
        }
        assert_eq!(bin, original);
        assert!(stamp(&mut [0u8; 100], "1.0.0").is_err());
        let mut twice = [slot("0.1.0"), slot("0.1.0")].concat();
        let err = stamp(&mut twice, "1.0.0").expect_err("two slots");
        assert!(err.contains("more than once"), "{err}");
    }

    #[test]
    fn a_damaged_slot_reads_as_invalid() {
        let mut s = slot("0.1.0");
        s[SLOT_MAGIC.len()] = 60;
        assert_eq!(decode(&s), None);
        s[SLOT_MAGIC.len()] = 3;
        s[SLOT_MAGIC.len() + 1] = b' ';
        assert_eq!(decode(&s), None);
    }
}
