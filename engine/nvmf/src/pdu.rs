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

use bytes::{BufMut, Bytes, BytesMut};

use crate::nvme::{Cqe, Sqe, CQE_BYTES, SQE_BYTES};

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

/// Digest and alignment options for encoding, as negotiated by
/// ICReq/ICResp. ICReq, ICResp and TermReqs never carry digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOpts {
    /// Append a header digest (and set HDGSTF).
    pub hdgst: bool,
    /// Append a data digest after data (and set DDGSTF) when there is data.
    pub ddgst: bool,
    /// The receiver's PDU data alignment (HPDA when the controller sends,
    /// CPDA when the host sends), 0's based dwords.
    pub pda: u8,
}

impl EncodeOpts {
    fn header_end(&self, hlen: u8) -> usize {
        usize::from(hlen) + if self.hdgst { DIGEST_BYTES } else { 0 }
    }
    fn data_offset(&self, hlen: u8) -> usize {
        let end = self.header_end(hlen);
        let align = (usize::from(self.pda) + 1) * 4;
        end.div_ceil(align) * align
    }
}

fn put_common(out: &mut BytesMut, ty: PduType, fl: u8, hlen: u8, pdo: u8, plen: usize) {
    out.put_u8(ty as u8);
    out.put_u8(fl);
    out.put_u8(hlen);
    out.put_u8(pdo);
    out.put_u32_le(u32::try_from(plen).unwrap_or(u32::MAX));
}

/// Appends the header digest of the header that starts at `start`.
fn put_hdgst(out: &mut BytesMut, start: usize, hlen: u8) {
    let crc = crc32c::crc32c(&out[start..start + usize::from(hlen)]);
    out.put_u32_le(crc);
}

/// Header of a data PDU, for the zero-copy path: write the header with
/// [`DataHeader::begin`], append exactly `datal` bytes of data, then call
/// [`DataHeader::finish`] to append the data digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// [`PduType::H2CData`] or [`PduType::C2HData`].
    pub ty: PduType,
    pub cccid: u16,
    pub ttag: u16,
    pub datao: u32,
    pub datal: u32,
    pub last: bool,
    pub success: bool,
}

impl DataHeader {
    /// Appends header, header digest and padding; returns the offset in
    /// `out` where the data must start.
    pub fn begin(&self, out: &mut BytesMut, opts: EncodeOpts) -> usize {
        let start = out.len();
        let datal = self.datal as usize;
        let with_data = datal > 0;
        let pdo = if with_data {
            opts.data_offset(SHORT_HLEN)
        } else {
            0
        };
        let hend = opts.header_end(SHORT_HLEN);
        let plen = if with_data {
            pdo + datal + if opts.ddgst { DIGEST_BYTES } else { 0 }
        } else {
            hend
        };
        let mut fl = 0;
        if opts.hdgst {
            fl |= flags::HDGSTF;
        }
        if opts.ddgst && with_data {
            fl |= flags::DDGSTF;
        }
        if self.last {
            fl |= flags::LAST_PDU;
        }
        if self.success && self.ty == PduType::C2HData {
            fl |= flags::SUCCESS;
        }
        out.reserve(plen);
        put_common(out, self.ty, fl, SHORT_HLEN, pdo as u8, plen);
        out.put_u16_le(self.cccid);
        out.put_u16_le(self.ttag);
        out.put_u32_le(self.datao);
        out.put_u32_le(self.datal);
        out.put_u32_le(0);
        if opts.hdgst {
            put_hdgst(out, start, SHORT_HLEN);
        }
        if with_data {
            out.put_bytes(0, pdo - hend);
        }
        out.len()
    }

    /// Appends the data digest over `out[data_start..]` if negotiated.
    pub fn finish(&self, out: &mut BytesMut, data_start: usize, opts: EncodeOpts) {
        if opts.ddgst && self.datal > 0 {
            let crc = crc32c::crc32c(&out[data_start..]);
            out.put_u32_le(crc);
        }
    }
}

/// Encodes a capsule with header, optional in-capsule data and digests.
fn encode_capsule_cmd(c: &CapsuleCmd, out: &mut BytesMut, opts: EncodeOpts) {
    let start = out.len();
    let with_data = !c.data.is_empty();
    let hend = opts.header_end(CAPSULE_CMD_HLEN);
    let pdo = if with_data {
        opts.data_offset(CAPSULE_CMD_HLEN)
    } else {
        0
    };
    let plen = if with_data {
        pdo + c.data.len() + if opts.ddgst { DIGEST_BYTES } else { 0 }
    } else {
        hend
    };
    let mut fl = 0;
    if opts.hdgst {
        fl |= flags::HDGSTF;
    }
    if opts.ddgst && with_data {
        fl |= flags::DDGSTF;
    }
    out.reserve(plen);
    put_common(
        out,
        PduType::CapsuleCmd,
        fl,
        CAPSULE_CMD_HLEN,
        pdo as u8,
        plen,
    );
    out.put_slice(&c.sqe.to_bytes());
    if opts.hdgst {
        put_hdgst(out, start, CAPSULE_CMD_HLEN);
    }
    if with_data {
        out.put_bytes(0, pdo - hend);
        out.put_slice(&c.data);
        if opts.ddgst {
            out.put_u32_le(crc32c::crc32c(&c.data));
        }
    }
}

impl Pdu {
    /// Appends the wire form of this PDU to `out`.
    pub fn encode(&self, out: &mut BytesMut, opts: EncodeOpts) {
        match self {
            Pdu::IcReq(r) => {
                out.reserve(usize::from(IC_HLEN));
                put_common(out, PduType::IcReq, 0, IC_HLEN, 0, usize::from(IC_HLEN));
                out.put_u16_le(r.pfv);
                out.put_u8(r.hpda);
                out.put_u8(r.dgst);
                out.put_u32_le(r.maxr2t);
                out.put_bytes(0, usize::from(IC_HLEN) - 16);
            }
            Pdu::IcResp(r) => {
                out.reserve(usize::from(IC_HLEN));
                put_common(out, PduType::IcResp, 0, IC_HLEN, 0, usize::from(IC_HLEN));
                out.put_u16_le(r.pfv);
                out.put_u8(r.cpda);
                out.put_u8(r.dgst);
                out.put_u32_le(r.maxh2cdata);
                out.put_bytes(0, usize::from(IC_HLEN) - 16);
            }
            Pdu::H2CTermReq(t) | Pdu::C2HTermReq(t) => {
                let data = &t.data[..t.data.len().min(TERM_REQ_MAX_DATA)];
                let plen = usize::from(SHORT_HLEN) + data.len();
                out.reserve(plen);
                put_common(out, self.pdu_type(), 0, SHORT_HLEN, 0, plen);
                out.put_u16_le(t.fes);
                out.put_u32_le(t.fei);
                out.put_bytes(0, 10);
                out.put_slice(data);
            }
            Pdu::CapsuleCmd(c) => encode_capsule_cmd(c, out, opts),
            Pdu::CapsuleResp(r) => encode_capsule_resp(&r.cqe, out, opts),
            Pdu::H2CData(d) | Pdu::C2HData(d) => {
                let h = DataHeader {
                    ty: self.pdu_type(),
                    cccid: d.cccid,
                    ttag: d.ttag,
                    datao: d.datao,
                    datal: u32::try_from(d.data.len()).unwrap_or(u32::MAX),
                    last: d.last,
                    success: d.success,
                };
                let s = h.begin(out, opts);
                out.put_slice(&d.data);
                h.finish(out, s, opts);
            }
            Pdu::R2T(r) => {
                let start = out.len();
                let plen = opts.header_end(SHORT_HLEN);
                out.reserve(plen);
                let fl = if opts.hdgst { flags::HDGSTF } else { 0 };
                put_common(out, PduType::R2T, fl, SHORT_HLEN, 0, plen);
                out.put_u16_le(r.cccid);
                out.put_u16_le(r.ttag);
                out.put_u32_le(r.r2to);
                out.put_u32_le(r.r2tl);
                out.put_u32_le(0);
                if opts.hdgst {
                    put_hdgst(out, start, SHORT_HLEN);
                }
            }
        }
    }
}

/// Appends a CapsuleResp for `cqe` (allocation free if `out` has room).
pub fn encode_capsule_resp(cqe: &Cqe, out: &mut BytesMut, opts: EncodeOpts) {
    let start = out.len();
    let plen = opts.header_end(SHORT_HLEN);
    out.reserve(plen);
    let fl = if opts.hdgst { flags::HDGSTF } else { 0 };
    put_common(out, PduType::CapsuleResp, fl, SHORT_HLEN, 0, plen);
    out.put_slice(&cqe.to_bytes());
    if opts.hdgst {
        put_hdgst(out, start, SHORT_HLEN);
    }
}

/// The validated common header of a PDU and where its parts lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub ty: PduType,
    pub flags: u8,
    pub hlen: u8,
    pub pdo: u8,
    pub plen: u32,
    /// A header digest follows the header.
    pub hdgst: bool,
    /// A data digest follows the data.
    pub ddgst: bool,
    /// Offset and length of the data within the PDU (0, 0 if none).
    pub data_offset: usize,
    pub data_len: usize,
}

/// Streaming PDU decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    /// Largest `plen` accepted; larger PDUs fail before any buffering.
    pub max_pdu_bytes: u32,
    /// `Some(x)`: digestible PDUs must (x) / must not (!x) carry HDGSTF, as
    /// negotiated. `None`: follow each PDU's flags.
    pub expect_hdgst: Option<bool>,
    /// Same for DDGSTF on PDUs that carry data.
    pub expect_ddgst: Option<bool>,
}

/// Default PDU size limit of [`decode`]: 1 MiB of data plus headers.
pub const DEFAULT_MAX_PDU_BYTES: u32 = (1 << 20) + 256;

impl Default for Decoder {
    fn default() -> Self {
        Self {
            max_pdu_bytes: DEFAULT_MAX_PDU_BYTES,
            expect_hdgst: None,
            expect_ddgst: None,
        }
    }
}

/// Decodes one PDU with [`Decoder::default`].
pub fn decode(buf: &mut BytesMut) -> Result<Option<Pdu>, PduError> {
    Decoder::default().decode(buf)
}

fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl Decoder {
    /// A decoder that expects the digests negotiated at ICReq/ICResp.
    pub fn negotiated(max_pdu_bytes: u32, hdgst: bool, ddgst: bool) -> Self {
        Self {
            max_pdu_bytes,
            expect_hdgst: Some(hdgst),
            expect_ddgst: Some(ddgst),
        }
    }

    /// Validates the common header at the start of `buf`. `Ok(None)` if
    /// fewer than 8 bytes are buffered.
    pub fn layout(&self, buf: &[u8]) -> Result<Option<Layout>, PduError> {
        if buf.len() < COMMON_HEADER_BYTES {
            return Ok(None);
        }
        let ty = PduType::from_u8(buf[0]).ok_or(PduError::UnknownType(buf[0]))?;
        let fl = buf[1];
        let hlen = buf[2];
        let pdo = buf[3];
        let plen = rd32(buf, 4);
        if fl & !ty.allowed_flags() != 0 {
            return Err(PduError::BadFlags { ty, flags: fl });
        }
        if hlen != ty.hlen() {
            return Err(PduError::BadHlen { ty, hlen });
        }
        if plen > self.max_pdu_bytes {
            return Err(PduError::TooLarge {
                plen,
                max: self.max_pdu_bytes,
            });
        }
        let hdgst = fl & flags::HDGSTF != 0;
        if ty.digestible() {
            if let Some(want) = self.expect_hdgst {
                if want != hdgst {
                    return Err(PduError::BadFlags { ty, flags: fl });
                }
            }
        }
        let header_end = usize::from(hlen) + if hdgst { DIGEST_BYTES } else { 0 };
        let plen_us = plen as usize;
        let mut layout = Layout {
            ty,
            flags: fl,
            hlen,
            pdo,
            plen,
            hdgst,
            ddgst: false,
            data_offset: 0,
            data_len: 0,
        };
        match ty {
            PduType::IcReq | PduType::IcResp => {
                if pdo != 0 {
                    return Err(PduError::BadPdo { ty, pdo });
                }
                if plen != u32::from(IC_HLEN) {
                    return Err(PduError::BadPlen { ty, plen });
                }
            }
            PduType::H2CTermReq | PduType::C2HTermReq => {
                if pdo != 0 {
                    return Err(PduError::BadPdo { ty, pdo });
                }
                if plen_us < usize::from(hlen) || plen_us > usize::from(hlen) + TERM_REQ_MAX_DATA {
                    return Err(PduError::BadPlen { ty, plen });
                }
                layout.data_offset = usize::from(hlen);
                layout.data_len = plen_us - usize::from(hlen);
            }
            PduType::CapsuleResp | PduType::R2T => {
                if plen_us != header_end {
                    return Err(PduError::BadPlen { ty, plen });
                }
            }
            PduType::CapsuleCmd | PduType::H2CData | PduType::C2HData => {
                debug_assert!(ty.carries_data());
                if plen_us < header_end {
                    return Err(PduError::BadPlen { ty, plen });
                }
                if plen_us > header_end {
                    let ddgst = fl & flags::DDGSTF != 0;
                    if let Some(want) = self.expect_ddgst {
                        if want != ddgst {
                            return Err(PduError::BadFlags { ty, flags: fl });
                        }
                    }
                    let pdo_us = usize::from(pdo);
                    let dd = if ddgst { DIGEST_BYTES } else { 0 };
                    if pdo_us < header_end || pdo_us + dd > plen_us {
                        return Err(PduError::BadPdo { ty, pdo });
                    }
                    layout.ddgst = ddgst;
                    layout.data_offset = pdo_us;
                    layout.data_len = plen_us - pdo_us - dd;
                }
            }
        }
        Ok(Some(layout))
    }

    /// Decodes one PDU from the front of `buf`. `Ok(None)` until the whole
    /// PDU is buffered (room for it is reserved once the header checked
    /// out). On `Err` the connection must be terminated; `buf` is left in
    /// an unspecified state.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Pdu>, PduError> {
        let Some(l) = self.layout(buf)? else {
            return Ok(None);
        };
        let plen = l.plen as usize;
        if buf.len() < plen {
            buf.reserve(plen - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(plen).freeze();
        parse(&l, frame).map(Some)
    }
}

fn parse(l: &Layout, frame: Bytes) -> Result<Pdu, PduError> {
    let hlen = usize::from(l.hlen);
    if l.hdgst {
        let computed = crc32c::crc32c(&frame[..hlen]);
        let received = rd32(&frame, hlen);
        if computed != received {
            return Err(PduError::HeaderDigest { computed, received });
        }
    }
    let data = frame.slice(l.data_offset..l.data_offset + l.data_len);
    if l.ddgst {
        let computed = crc32c::crc32c(&data);
        let received = rd32(&frame, l.data_offset + l.data_len);
        if computed != received {
            return Err(PduError::DataDigest { computed, received });
        }
    }
    let b = &frame[..];
    Ok(match l.ty {
        PduType::IcReq => Pdu::IcReq(IcReq {
            pfv: rd16(b, 8),
            hpda: b[10],
            dgst: b[11],
            maxr2t: rd32(b, 12),
        }),
        PduType::IcResp => Pdu::IcResp(IcResp {
            pfv: rd16(b, 8),
            cpda: b[10],
            dgst: b[11],
            maxh2cdata: rd32(b, 12),
        }),
        PduType::H2CTermReq | PduType::C2HTermReq => {
            let t = TermReq {
                fes: rd16(b, 8),
                fei: rd32(b, 10),
                data,
            };
            if l.ty == PduType::H2CTermReq {
                Pdu::H2CTermReq(t)
            } else {
                Pdu::C2HTermReq(t)
            }
        }
        PduType::CapsuleCmd => {
            let sqe = Sqe::from_bytes(&b[8..8 + SQE_BYTES]).ok_or(PduError::BadHlen {
                ty: l.ty,
                hlen: l.hlen,
            })?;
            Pdu::CapsuleCmd(CapsuleCmd { sqe, data })
        }
        PduType::CapsuleResp => {
            let cqe = Cqe::from_bytes(&b[8..8 + CQE_BYTES]).ok_or(PduError::BadHlen {
                ty: l.ty,
                hlen: l.hlen,
            })?;
            Pdu::CapsuleResp(CapsuleResp { cqe })
        }
        PduType::H2CData | PduType::C2HData => {
            let datal = rd32(b, 16);
            if datal as usize != l.data_len {
                return Err(PduError::BadDataLength {
                    datal,
                    actual: l.data_len as u32,
                });
            }
            let d = DataPdu {
                cccid: rd16(b, 8),
                ttag: rd16(b, 10),
                datao: rd32(b, 12),
                last: l.flags & flags::LAST_PDU != 0,
                success: l.ty == PduType::C2HData && l.flags & flags::SUCCESS != 0,
                data,
            };
            if l.ty == PduType::H2CData {
                Pdu::H2CData(d)
            } else {
                Pdu::C2HData(d)
            }
        }
        PduType::R2T => Pdu::R2T(R2t {
            cccid: rd16(b, 8),
            ttag: rd16(b, 10),
            r2to: rd32(b, 12),
            r2tl: rd32(b, 16),
        }),
    })
}
