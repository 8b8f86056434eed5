//! The host's view of the NVMe/TCP codec (`nvmf::pdu`).
//!
//! Purpose: encode the PDUs a host sends (ICReq, CapsuleCmd, H2CData) and
//! decode those it receives into [`RxPdu`], with the digests negotiated
//! for the connection.
//!
//! Invariants: decoding refuses PDUs larger than the host's per-command
//! limit plus headers before buffering them; digests are verified by the
//! codec when negotiated and their absence is an error then.
//!
//! Hot path: no allocation per PDU (headers are appended to the queue's
//! reusable buffer and the data is sent from the caller's buffer; decoded
//! data are slices of the receive buffer), no logs, no locks.
//!
//! Threading model: plain functions.

use bytes::{Bytes, BytesMut};
use nvmf::{
    pdu::{dgst, DataHeader, Decoder, IcReq, PduType},
    EncodeOpts, Pdu, Sqe,
};

use crate::{controller::MAX_IO_BYTES, slab::Completion};

/// Largest PDU the host accepts (a whole C2HData of one command).
const MAX_RX_PDU_BYTES: u32 = MAX_IO_BYTES as u32 + 4096;

/// Per-connection encoding/decoding parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireParams {
    pub hdr_digest: bool,
    pub data_digest: bool,
    /// Controller PDU data alignment (0's based dwords) for our data PDUs.
    pub cpda: u8,
}

impl WireParams {
    fn encode_opts(&self) -> EncodeOpts {
        EncodeOpts {
            hdgst: self.hdr_digest,
            ddgst: self.data_digest,
            pda: self.cpda,
        }
    }
}

/// A PDU received by the host.
#[derive(Debug)]
pub enum RxPdu {
    IcResp {
        pfv: u16,
        cpda: u8,
        hdr_digest: bool,
        data_digest: bool,
        maxh2cdata: u32,
    },
    Resp {
        cid: u16,
        completion: Completion,
    },
    C2h {
        cid: u16,
        offset: u32,
        data: Bytes,
        success: bool,
    },
    R2t {
        cid: u16,
        ttag: u16,
        offset: u32,
        len: u32,
    },
    Term {
        fes: u16,
    },
    /// A PDU a controller must not send to a host.
    Unexpected(PduType),
}

impl RxPdu {
    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            RxPdu::IcResp { .. } => "ICResp",
            RxPdu::Resp { .. } => "CapsuleResp",
            RxPdu::C2h { .. } => "C2HData",
            RxPdu::R2t { .. } => "R2T",
            RxPdu::Term { .. } => "C2HTermReq",
            RxPdu::Unexpected(PduType::IcReq) => "ICReq",
            RxPdu::Unexpected(PduType::H2CTermReq) => "H2CTermReq",
            RxPdu::Unexpected(PduType::CapsuleCmd) => "CapsuleCmd",
            RxPdu::Unexpected(PduType::H2CData) => "H2CData",
            RxPdu::Unexpected(_) => "unexpected",
        }
    }
}

/// Appends an ICReq asking for the given digests (HPDA 0, MAXR2T 0 = one
/// outstanding R2T per command).
pub fn encode_icreq(out: &mut BytesMut, hdr_digest: bool, data_digest: bool) {
    let mut d = 0;
    if hdr_digest {
        d |= dgst::HEADER;
    }
    if data_digest {
        d |= dgst::DATA;
    }
    Pdu::IcReq(IcReq {
        pfv: nvmf::pdu::PFV_1_0,
        hpda: 0,
        dgst: d,
        maxr2t: 0,
    })
    .encode(out, EncodeOpts::default());
}

/// Appends the header of a command capsule that carries `data_len` bytes
/// of in-capsule data (the data, and its digest when negotiated, are sent
/// from the caller's buffer right after it).
pub fn encode_cmd_header(out: &mut BytesMut, params: &WireParams, sqe: &Sqe, data_len: usize) {
    nvmf::pdu::encode_capsule_cmd_header(sqe, data_len, out, params.encode_opts());
}

/// Appends the header of one H2CData PDU of `len` bytes (the data, and its
/// digest when negotiated, follow from the caller's buffer).
pub fn encode_h2c_header(
    out: &mut BytesMut,
    params: &WireParams,
    cid: u16,
    ttag: u16,
    offset: u32,
    len: u32,
    last: bool,
) {
    DataHeader {
        ty: PduType::H2CData,
        cccid: cid,
        ttag,
        datao: offset,
        datal: len,
        last,
        success: false,
    }
    .begin(out, params.encode_opts());
}

/// Decodes one PDU from the front of `buf` (`Ok(None)`: need more bytes).
///
/// Before ICResp, pass `WireParams::default()` (no digests).
pub fn decode(buf: &mut BytesMut, params: &WireParams) -> Result<Option<RxPdu>, String> {
    let decoder = Decoder::negotiated(MAX_RX_PDU_BYTES, params.hdr_digest, params.data_digest);
    let Some(pdu) = decoder.decode(buf).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    Ok(Some(match pdu {
        Pdu::IcResp(r) => RxPdu::IcResp {
            pfv: r.pfv,
            cpda: r.cpda,
            hdr_digest: r.dgst & dgst::HEADER != 0,
            data_digest: r.dgst & dgst::DATA != 0,
            maxh2cdata: r.maxh2cdata,
        },
        Pdu::CapsuleResp(r) => RxPdu::Resp {
            cid: r.cqe.cid,
            completion: Completion {
                dw0: r.cqe.dw0,
                dw1: r.cqe.dw1,
                status: r.cqe.status,
            },
        },
        Pdu::C2HData(d) => {
            if d.success && !d.last {
                return Err("C2HData with SUCCESS but without LAST_PDU".into());
            }
            RxPdu::C2h {
                cid: d.cccid,
                offset: d.datao,
                data: d.data,
                success: d.success,
            }
        }
        Pdu::R2T(r) => RxPdu::R2t {
            cid: r.cccid,
            ttag: r.ttag,
            offset: r.r2to,
            len: r.r2tl,
        },
        Pdu::C2HTermReq(t) => RxPdu::Term { fes: t.fes },
        other => RxPdu::Unexpected(other.pdu_type()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use nvmf::{
        pdu::{CapsuleResp, DataPdu, IcResp, R2t},
        Cqe, Status,
    };

    fn params(d: bool) -> WireParams {
        WireParams {
            hdr_digest: d,
            data_digest: d,
            cpda: 0,
        }
    }

    #[test]
    fn host_pdus_decode_as_the_codec_expects() {
        for digests in [false, true] {
            let p = params(digests);
            let mut out = BytesMut::new();
            let sqe = Sqe {
                opcode: 1,
                cid: 7,
                ..Sqe::default()
            };
            for (data, header) in [(&b"abcd"[..], true), (&b"efgh"[..], false)] {
                if header {
                    encode_cmd_header(&mut out, &p, &sqe, data.len());
                } else {
                    encode_h2c_header(&mut out, &p, 7, 3, 4096, 4, true);
                }
                out.put_slice(data);
                if digests {
                    out.put_slice(&nvmf::pdu::data_digest(data));
                }
            }
            let dec = Decoder::negotiated(1 << 20, digests, digests);
            match dec.decode(&mut out).unwrap().unwrap() {
                Pdu::CapsuleCmd(c) => {
                    assert_eq!(c.sqe.cid, 7);
                    assert_eq!(&c.data[..], b"abcd");
                }
                other => panic!("{other:?}"),
            }
            match dec.decode(&mut out).unwrap().unwrap() {
                Pdu::H2CData(d) => {
                    assert_eq!((d.cccid, d.ttag, d.datao, d.last), (7, 3, 4096, true));
                    assert_eq!(&d.data[..], b"efgh");
                }
                other => panic!("{other:?}"),
            }
            assert!(out.is_empty());
        }
    }

    #[test]
    fn controller_pdus_decode_for_the_host() {
        let p = params(true);
        let opts = EncodeOpts {
            hdgst: true,
            ddgst: true,
            pda: 0,
        };
        let mut buf = BytesMut::new();
        Pdu::IcResp(IcResp {
            pfv: 0,
            cpda: 0,
            dgst: 3,
            maxh2cdata: 65536,
        })
        .encode(&mut buf, EncodeOpts::default());
        let Some(RxPdu::IcResp {
            hdr_digest: true,
            data_digest: true,
            maxh2cdata: 65536,
            ..
        }) = decode(&mut buf, &WireParams::default()).unwrap()
        else {
            panic!("icresp")
        };
        let mut cqe = Cqe::new(5, Status::retry(0, 0x80));
        cqe.dw0 = 9;
        Pdu::CapsuleResp(CapsuleResp { cqe }).encode(&mut buf, opts);
        Pdu::C2HData(DataPdu {
            cccid: 5,
            ttag: 0,
            datao: 0,
            last: true,
            success: true,
            data: Bytes::from_static(b"xyz"),
        })
        .encode(&mut buf, opts);
        Pdu::R2T(R2t {
            cccid: 4,
            ttag: 2,
            r2to: 0,
            r2tl: 8192,
        })
        .encode(&mut buf, opts);
        match decode(&mut buf, &p).unwrap().unwrap() {
            RxPdu::Resp { cid, completion } => {
                assert_eq!(cid, 5);
                assert_eq!(completion.dw0, 9);
                assert!(!completion.is_success());
            }
            other => panic!("{other:?}"),
        }
        match decode(&mut buf, &p).unwrap().unwrap() {
            RxPdu::C2h {
                cid: 5,
                success: true,
                data,
                ..
            } => assert_eq!(&data[..], b"xyz"),
            other => panic!("{other:?}"),
        }
        match decode(&mut buf, &p).unwrap().unwrap() {
            RxPdu::R2t {
                cid: 4,
                ttag: 2,
                offset: 0,
                len: 8192,
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(decode(&mut buf, &p).unwrap().is_none());
    }

    #[test]
    fn corrupted_data_digest_is_refused() {
        let p = params(true);
        let opts = EncodeOpts {
            hdgst: true,
            ddgst: true,
            pda: 0,
        };
        let mut buf = BytesMut::new();
        Pdu::C2HData(DataPdu {
            cccid: 1,
            data: Bytes::from_static(b"data"),
            last: true,
            ..DataPdu::default()
        })
        .encode(&mut buf, opts);
        let n = buf.len();
        buf[n - 6] ^= 0xff;
        assert!(decode(&mut buf, &p).is_err());
    }
}
