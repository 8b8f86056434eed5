//! NVMe/TCP codec: the transport PDUs of NVMe/TCP 1.0, the NVMe submission
//! and completion queue entries, the Fabrics commands and the admin data
//! structures (Identify, log pages, features) that a target or a host needs.
//!
//! Dependency rule: this crate has no async runtime, no sockets and no I/O.
//! It only turns bytes into values and values into bytes, so it can be
//! property-tested and fuzzed alone. Both the target (`nvmf-target`) and
//! the initiator (`nvmf-host`) build on it.
//!
//! Invariants:
//! - [`pdu::Decoder::decode`] never panics on any input, returns `Ok(None)`
//!   until a whole PDU (per its `plen`) is buffered and checks `hlen`, `pdo`,
//!   `plen` and the size limit from the 8-byte common header *before*
//!   reserving room for the rest of the PDU;
//! - every encoder writes exactly the bytes that the decoder accepts
//!   (round trip), with header/data digests when asked;
//! - multi-byte fields are little endian, as on the wire.
//!
//! Threading: plain values, `Send + Sync`; no shared state.
//!
//! Module map:
//! - [`pdu`]: common header, PDU types, streaming decoder, encoders, digests;
//! - [`nvme`]: SQE, CQE, SGL descriptors, status codes, opcodes;
//! - [`fabrics`]: Connect (SQE fields and its 1024-byte data), Property
//!   Get/Set, controller registers (CAP, VS, CC, CSTS);
//! - [`admin`]: Identify Controller/Namespace/descriptor/active list
//!   builders, log pages (error, SMART, ANA, discovery), feature ids,
//!   reservation data structures;
//! - [`resv`]: reservation types and actions, the Register/Acquire/Release
//!   CDW10 layout, host-side SQE builders and the Reservation Report
//!   parser.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod fabrics;
pub mod nvme;
pub mod pdu;
pub mod resv;

pub use nvme::{Cqe, SglDescriptor, Sqe, Status};
pub use pdu::{decode, Decoder, EncodeOpts, Pdu, PduError, PduType};

/// NQN of the well-known discovery subsystem.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Maximum length of an NQN in bytes (NVMe 1.3: 223 UTF-8 bytes).
pub const NQN_MAX_LEN: usize = 223;

/// CRC32C (Castagnoli) as used by the NVMe/TCP header and data digests.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Writes `s` into `dst` as ASCII padded with spaces (Identify strings,
/// discovery log `trsvcid`/`traddr`); longer input is truncated.
pub fn put_padded(dst: &mut [u8], s: &str, pad: u8) {
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    dst[n..].fill(pad);
}

/// Reads a NUL/space-terminated string field (NQNs, serial numbers).
/// Invalid UTF-8 yields `None`.
pub fn get_string(src: &[u8]) -> Option<&str> {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    std::str::from_utf8(&src[..end])
        .ok()
        .map(|s| s.trim_end_matches(' '))
}
