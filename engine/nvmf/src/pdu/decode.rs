//! Decoding: the streaming [`Decoder`] checks a PDU's common header from
//! its first 8 bytes before it buffers the rest, then verifies the digests
//! and parses the PDU, handing data out as slices of the receive buffer.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::nvme::{Cqe, Sqe, CQE_BYTES, SQE_BYTES};

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
