//! Encoding: every PDU's wire form with the negotiated digests and data
//! alignment ([`EncodeOpts`]), the zero-copy data PDU header
//! ([`DataHeader`]) and the allocation-free CapsuleResp.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::nvme::{Cqe, Sqe};

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

/// Appends the header of a command capsule that carries `data_len` bytes
/// of in-capsule data (header, header digest and padding up to the data),
/// for the zero-copy path: the caller sends the data from its own buffer
/// right after these bytes, followed by [`data_digest`] when `opts.ddgst`
/// and `data_len > 0`.
pub fn encode_capsule_cmd_header(sqe: &Sqe, data_len: usize, out: &mut BytesMut, opts: EncodeOpts) {
    let start = out.len();
    let with_data = data_len > 0;
    let hend = opts.header_end(CAPSULE_CMD_HLEN);
    let pdo = if with_data {
        opts.data_offset(CAPSULE_CMD_HLEN)
    } else {
        0
    };
    let plen = if with_data {
        pdo + data_len + if opts.ddgst { DIGEST_BYTES } else { 0 }
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
    out.reserve(pdo.max(hend));
    put_common(
        out,
        PduType::CapsuleCmd,
        fl,
        CAPSULE_CMD_HLEN,
        pdo as u8,
        plen,
    );
    out.put_slice(&sqe.to_bytes());
    if opts.hdgst {
        put_hdgst(out, start, CAPSULE_CMD_HLEN);
    }
    if with_data {
        out.put_bytes(0, pdo - hend);
    }
}

/// The data digest (CRC32C, little endian) that follows `data` on the
/// wire when data digests are negotiated.
pub fn data_digest(data: &[u8]) -> [u8; DIGEST_BYTES] {
    crc32c::crc32c(data).to_le_bytes()
}

/// Encodes a capsule with header, optional in-capsule data and digests.
fn encode_capsule_cmd(c: &CapsuleCmd, out: &mut BytesMut, opts: EncodeOpts) {
    encode_capsule_cmd_header(&c.sqe, c.data.len(), out, opts);
    if !c.data.is_empty() {
        out.put_slice(&c.data);
        if opts.ddgst {
            out.put_slice(&data_digest(&c.data));
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
