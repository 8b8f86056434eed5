//! NVMe/TCP 1.0 transport PDUs: the common header, every PDU type of the
//! transport, header/data digests (CRC32C) and PDO padding.
//!
//! Common header (8 bytes, every PDU):
//!
//! ```text
//!  byte 0      1       2      3      4          7
//!  +------+-------+------+------+---------------+
//!  | type | flags | hlen | pdo  | plen (LE u32) |
//!  +------+-------+------+------+---------------+
//!  flags: 0x01 HDGSTF, 0x02 DDGSTF, 0x04 LAST_PDU (data PDUs),
//!         0x08 SUCCESS (C2HData)
//!  PDU = header (hlen) [HDGST 4] [pad up to pdo] [data] [DDGST 4]
//! ```
//!
//! Invariants: see the crate header. The decoder checks, from the first 8
//! bytes alone, that the type is known, `hlen` matches the type, `pdo` and
//! `plen` are consistent with the type and the digest flags, and `plen` is
//! at most [`Decoder::max_pdu_bytes`]; only then does it reserve room for
//! the rest of the PDU. Data is handed out as [`Bytes`] slices of the
//! receive buffer (no copy).
//!
//! Hot path: no allocation per PDU beyond the receive buffer split, no
//! logging, no locks.
//!
//! This module holds the PDU types; `encode` and `decode` the two
//! directions of the wire.

use bytes::Bytes;

use crate::nvme::{Cqe, Sqe};

mod decode;
mod encode;

pub use decode::{decode, Decoder, Layout, DEFAULT_MAX_PDU_BYTES};
pub use encode::{
    data_digest, encode_capsule_cmd_header, encode_capsule_resp, DataHeader, EncodeOpts,
};

/// Size of the common header.
pub const COMMON_HEADER_BYTES: usize = 8;
/// Size of a header or data digest.
pub const DIGEST_BYTES: usize = 4;
/// `hlen` of ICReq/ICResp (and their `plen`).
pub const IC_HLEN: u8 = 128;
/// `hlen` of CapsuleCmd (8 + 64-byte SQE).
pub const CAPSULE_CMD_HLEN: u8 = 72;
/// `hlen` of CapsuleResp, H2CData, C2HData, R2T and the TermReqs.
pub const SHORT_HLEN: u8 = 24;
/// Most bytes of the offending PDU header a TermReq carries.
pub const TERM_REQ_MAX_DATA: usize = 152;
/// The only protocol format version (PFV) of NVMe/TCP 1.0.
pub const PFV_1_0: u16 = 0;
/// Smallest MAXH2CDATA a controller may advertise.
pub const MIN_MAXH2CDATA: u32 = 4096;

/// PDU flag bits.
pub mod flags {
    pub const HDGSTF: u8 = 0x01;
    pub const DDGSTF: u8 = 0x02;
    pub const LAST_PDU: u8 = 0x04;
    pub const SUCCESS: u8 = 0x08;
}

/// ICReq/ICResp DGST field bits.
pub mod dgst {
    pub const HEADER: u8 = 0x01;
    pub const DATA: u8 = 0x02;
}

/// Fatal Error Status of a TermReq.
pub mod fes {
    pub const INVALID_HEADER_FIELD: u16 = 0x01;
    pub const PDU_SEQUENCE_ERROR: u16 = 0x02;
    pub const HEADER_DIGEST_ERROR: u16 = 0x03;
    pub const DATA_OUT_OF_RANGE: u16 = 0x04;
    pub const DATA_LIMIT_EXCEEDED: u16 = 0x05;
    pub const UNSUPPORTED_PARAMETER: u16 = 0x06;
}

/// PDU types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    IcReq = 0x00,
    IcResp = 0x01,
    H2CTermReq = 0x02,
    C2HTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2CData = 0x06,
    C2HData = 0x07,
    R2T = 0x09,
}

impl PduType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => Self::IcReq,
            0x01 => Self::IcResp,
            0x02 => Self::H2CTermReq,
            0x03 => Self::C2HTermReq,
            0x04 => Self::CapsuleCmd,
            0x05 => Self::CapsuleResp,
            0x06 => Self::H2CData,
            0x07 => Self::C2HData,
            0x09 => Self::R2T,
            _ => return None,
        })
    }
    /// The `hlen` this type must carry.
    pub fn hlen(self) -> u8 {
        match self {
            Self::IcReq | Self::IcResp => IC_HLEN,
            Self::CapsuleCmd => CAPSULE_CMD_HLEN,
            _ => SHORT_HLEN,
        }
    }
    /// Whether the type carries header/data digests when negotiated.
    pub fn digestible(self) -> bool {
        matches!(
            self,
            Self::CapsuleCmd | Self::CapsuleResp | Self::H2CData | Self::C2HData | Self::R2T
        )
    }
    fn allowed_flags(self) -> u8 {
        use flags::*;
        match self {
            Self::IcReq | Self::IcResp | Self::H2CTermReq | Self::C2HTermReq => 0,
            Self::CapsuleCmd | Self::CapsuleResp | Self::R2T => HDGSTF | DDGSTF,
            Self::H2CData => HDGSTF | DDGSTF | LAST_PDU,
            Self::C2HData => HDGSTF | DDGSTF | LAST_PDU | SUCCESS,
        }
    }
    fn carries_data(self) -> bool {
        matches!(self, Self::CapsuleCmd | Self::H2CData | Self::C2HData)
    }
}

/// Errors of the decoder. Each maps to a TermReq FES/FEI with
/// [`PduError::fes`] and [`PduError::fei`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    #[error("unknown pdu type {0:#04x}")]
    UnknownType(u8),
    #[error("pdu type {ty:?}: invalid flags {flags:#04x}")]
    BadFlags { ty: PduType, flags: u8 },
    #[error("pdu type {ty:?}: invalid hlen {hlen}")]
    BadHlen { ty: PduType, hlen: u8 },
    #[error("pdu type {ty:?}: invalid pdo {pdo}")]
    BadPdo { ty: PduType, pdo: u8 },
    #[error("pdu type {ty:?}: invalid plen {plen}")]
    BadPlen { ty: PduType, plen: u32 },
    #[error("pdu of {plen} bytes exceeds the limit of {max} bytes")]
    TooLarge { plen: u32, max: u32 },
    #[error("header digest mismatch: computed {computed:#010x}, received {received:#010x}")]
    HeaderDigest { computed: u32, received: u32 },
    #[error("data digest mismatch: computed {computed:#010x}, received {received:#010x}")]
    DataDigest { computed: u32, received: u32 },
    #[error("data pdu: datal {datal} does not match the {actual} data bytes")]
    BadDataLength { datal: u32, actual: u32 },
}

impl PduError {
    /// Fatal Error Status to put in a TermReq. `None` for data digest
    /// errors: the header was valid, the connection is closed without one.
    pub fn fes(&self) -> Option<u16> {
        Some(match self {
            Self::UnknownType(_)
            | Self::BadFlags { .. }
            | Self::BadHlen { .. }
            | Self::BadPdo { .. }
            | Self::BadPlen { .. }
            | Self::BadDataLength { .. } => fes::INVALID_HEADER_FIELD,
            Self::TooLarge { .. } => fes::DATA_LIMIT_EXCEEDED,
            Self::HeaderDigest { .. } => fes::HEADER_DIGEST_ERROR,
            Self::DataDigest { .. } => return None,
        })
    }
    /// Fatal Error Information: byte offset of the offending header field.
    pub fn fei(&self) -> u32 {
        match self {
            Self::UnknownType(_) => 0,
            Self::BadFlags { .. } => 1,
            Self::BadHlen { .. } => 2,
            Self::BadPdo { .. } => 3,
            Self::BadPlen { .. } | Self::TooLarge { .. } => 4,
            Self::BadDataLength { .. } => 16,
            Self::HeaderDigest { .. } | Self::DataDigest { .. } => 0,
        }
    }
}

/// Initialize Connection Request (host to controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcReq {
    pub pfv: u16,
    /// Host PDU data alignment (0's based dwords) for C2H data.
    pub hpda: u8,
    /// [`dgst`] bits the host asks for.
    pub dgst: u8,
    /// Maximum outstanding R2Ts per command (0's based).
    pub maxr2t: u32,
}

/// Initialize Connection Response (controller to host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcResp {
    pub pfv: u16,
    /// Controller PDU data alignment (0's based dwords) for H2C data.
    pub cpda: u8,
    /// [`dgst`] bits enabled.
    pub dgst: u8,
    /// Largest H2CData payload the controller accepts.
    pub maxh2cdata: u32,
}

/// H2CTermReq / C2HTermReq.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TermReq {
    /// Fatal Error Status ([`fes`]).
    pub fes: u16,
    /// Fatal Error Information (offset of the offending field).
    pub fei: u32,
    /// Header of the PDU in error (at most [`TERM_REQ_MAX_DATA`] bytes).
    pub data: Bytes,
}

/// Command capsule: SQE plus optional in-capsule data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapsuleCmd {
    pub sqe: Sqe,
    pub data: Bytes,
}

/// Response capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapsuleResp {
    pub cqe: Cqe,
}

/// H2CData or C2HData.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataPdu {
    /// Command capsule CID.
    pub cccid: u16,
    /// Transfer tag (H2CData; reserved in C2HData).
    pub ttag: u16,
    /// Offset of `data` within the command's data.
    pub datao: u32,
    /// LAST_PDU flag.
    pub last: bool,
    /// SUCCESS flag (C2HData only; ignored for H2CData).
    pub success: bool,
    pub data: Bytes,
}

/// Ready to Transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    pub cccid: u16,
    pub ttag: u16,
    /// Offset of the requested data within the command's data.
    pub r2to: u32,
    /// Length of the requested data.
    pub r2tl: u32,
}

/// One transport PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    IcReq(IcReq),
    IcResp(IcResp),
    H2CTermReq(TermReq),
    C2HTermReq(TermReq),
    CapsuleCmd(CapsuleCmd),
    CapsuleResp(CapsuleResp),
    H2CData(DataPdu),
    C2HData(DataPdu),
    R2T(R2t),
}

impl Pdu {
    pub fn pdu_type(&self) -> PduType {
        match self {
            Pdu::IcReq(_) => PduType::IcReq,
            Pdu::IcResp(_) => PduType::IcResp,
            Pdu::H2CTermReq(_) => PduType::H2CTermReq,
            Pdu::C2HTermReq(_) => PduType::C2HTermReq,
            Pdu::CapsuleCmd(_) => PduType::CapsuleCmd,
            Pdu::CapsuleResp(_) => PduType::CapsuleResp,
            Pdu::H2CData(_) => PduType::H2CData,
            Pdu::C2HData(_) => PduType::C2HData,
            Pdu::R2T(_) => PduType::R2T,
        }
    }
}
