//! Property tests of the PDU codec: every PDU type round-trips through
//! encode/decode with and without digests and padding, arbitrary bytes
//! never panic the decoder, and corrupted digests are detected.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use nvmf::nvme::{Cqe, SglDescriptor, Sqe, Status};
use nvmf::pdu::*;
use proptest::prelude::*;

fn bytes_upto(n: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
}

fn sqe() -> impl Strategy<Value = Sqe> {
    proptest::collection::vec(any::<u8>(), 64).prop_map(|b| Sqe::from_bytes(&b).unwrap())
}

fn cqe() -> impl Strategy<Value = Cqe> {
    proptest::collection::vec(any::<u8>(), 16).prop_map(|b| Cqe::from_bytes(&b).unwrap())
}

fn pdu() -> impl Strategy<Value = Pdu> {
    prop_oneof![
        (any::<u16>(), any::<u8>(), any::<u8>(), any::<u32>()).prop_map(
            |(pfv, hpda, dgst, maxr2t)| Pdu::IcReq(IcReq {
                pfv,
                hpda,
                dgst,
                maxr2t
            })
        ),
        (any::<u16>(), any::<u8>(), any::<u8>(), any::<u32>()).prop_map(
            |(pfv, cpda, dgst, maxh2cdata)| Pdu::IcResp(IcResp {
                pfv,
                cpda,
                dgst,
                maxh2cdata
            })
        ),
        (any::<u16>(), any::<u32>(), bytes_upto(TERM_REQ_MAX_DATA))
            .prop_map(|(fes, fei, data)| Pdu::H2CTermReq(TermReq { fes, fei, data })),
        (any::<u16>(), any::<u32>(), bytes_upto(TERM_REQ_MAX_DATA))
            .prop_map(|(fes, fei, data)| Pdu::C2HTermReq(TermReq { fes, fei, data })),
        (sqe(), bytes_upto(9000)).prop_map(|(sqe, data)| Pdu::CapsuleCmd(CapsuleCmd { sqe, data })),
        cqe().prop_map(|cqe| Pdu::CapsuleResp(CapsuleResp { cqe })),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<bool>(),
            bytes_upto(5000)
        )
            .prop_map(|(cccid, ttag, datao, last, data)| Pdu::H2CData(DataPdu {
                cccid,
                ttag,
                datao,
                last,
                success: false,
                data
            })),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
            bytes_upto(5000)
        )
            .prop_map(
                |(cccid, ttag, datao, last, success, data)| Pdu::C2HData(DataPdu {
                    cccid,
                    ttag,
                    datao,
                    last,
                    success,
                    data
                })
            ),
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(cccid, ttag, r2to, r2tl)| Pdu::R2T(R2t {
                cccid,
                ttag,
                r2to,
                r2tl
            })
        ),
    ]
}

fn opts() -> impl Strategy<Value = EncodeOpts> {
    (any::<bool>(), any::<bool>(), 0u8..4).prop_map(|(hdgst, ddgst, pda)| EncodeOpts {
        hdgst,
        ddgst,
        pda,
    })
}

proptest! {
    #[test]
    fn round_trip(p in pdu(), o in opts(), split in 0usize..200) {
        let mut wire = BytesMut::new();
        p.encode(&mut wire, o);
        // Feed in two parts: nothing before the whole PDU arrived.
        let cut = split.min(wire.len().saturating_sub(1));
        let mut buf = BytesMut::from(&wire[..cut]);
        prop_assert_eq!(decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&wire[cut..]);
        // Append a second PDU to check framing.
        p.encode(&mut buf, o);
        let got = decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(&got, &p);
        prop_assert_eq!(decode(&mut buf).unwrap().unwrap(), p);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn strict_decoder_accepts_negotiated(p in pdu(), o in opts()) {
        let mut wire = BytesMut::new();
        p.encode(&mut wire, o);
        let d = Decoder::negotiated(DEFAULT_MAX_PDU_BYTES, o.hdgst, o.ddgst);
        prop_assert_eq!(d.decode(&mut wire).unwrap().unwrap(), p);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut buf = BytesMut::from(&b[..]);
        let d = Decoder { max_pdu_bytes: 4096, ..Decoder::default() };
        for _ in 0..8 {
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    }

    #[test]
    fn mutated_header_never_panics(p in pdu(), o in opts(), pos in 0usize..8, val in any::<u8>()) {
        let mut wire = BytesMut::new();
        p.encode(&mut wire, o);
        wire[pos] = val;
        let _ = decode(&mut wire);
    }

    #[test]
    fn corrupted_digest_is_detected(
        sqe in sqe(),
        data in proptest::collection::vec(any::<u8>(), 1..100),
        flip in any::<usize>(),
    ) {
        let p = Pdu::CapsuleCmd(CapsuleCmd { sqe, data: Bytes::from(data) });
        let o = EncodeOpts { hdgst: true, ddgst: true, pda: 0 };
        let mut wire = BytesMut::new();
        p.encode(&mut wire, o);
        let i = 8 + flip % (wire.len() - 8);
        wire[i] ^= 0x40;
        let e = decode(&mut wire).unwrap_err();
        let digest_err = matches!(e, PduError::HeaderDigest { .. } | PduError::DataDigest { .. });
        prop_assert!(digest_err, "{:?}", e);
    }
}

#[test]
fn header_checks_happen_before_buffering() {
    // A CapsuleCmd claiming 1 GiB: refused from the 8-byte header alone.
    let mut b = BytesMut::from(&[4u8, 0, 72, 72, 0, 0, 0, 0x40][..]);
    assert!(matches!(decode(&mut b), Err(PduError::TooLarge { .. })));
    let mut b = BytesMut::from(&[4u8, 0, 70, 0, 72, 0, 0, 0][..]);
    assert_eq!(decode(&mut b).unwrap_err().fei(), 2);
    let mut b = BytesMut::from(&[0x42u8, 0, 24, 0, 24, 0, 0, 0][..]);
    assert_eq!(decode(&mut b), Err(PduError::UnknownType(0x42)));
    let mut b = BytesMut::from(&[4u8, 0, 72, 10, 100, 0, 0, 0][..]);
    assert!(matches!(decode(&mut b), Err(PduError::BadPdo { .. })));
    assert_eq!(
        PduError::BadPdo {
            ty: PduType::CapsuleCmd,
            pdo: 10
        }
        .fes(),
        Some(fes::INVALID_HEADER_FIELD)
    );
}

#[test]
fn strict_decoder_rejects_missing_digest() {
    let p = Pdu::CapsuleResp(CapsuleResp {
        cqe: Cqe::new(1, Status::SUCCESS),
    });
    let mut wire = BytesMut::new();
    p.encode(&mut wire, EncodeOpts::default());
    let d = Decoder::negotiated(DEFAULT_MAX_PDU_BYTES, true, false);
    assert!(matches!(
        d.decode(&mut wire),
        Err(PduError::BadFlags { .. })
    ));
}

#[test]
fn zero_copy_data_header_matches_encode() {
    let data = Bytes::from(vec![7u8; 4096]);
    let p = Pdu::C2HData(DataPdu {
        cccid: 3,
        ttag: 0,
        datao: 0,
        last: true,
        success: false,
        data: data.clone(),
    });
    for o in [
        EncodeOpts::default(),
        EncodeOpts {
            hdgst: true,
            ddgst: true,
            pda: 0,
        },
    ] {
        let mut a = BytesMut::new();
        p.encode(&mut a, o);
        let h = DataHeader {
            ty: PduType::C2HData,
            cccid: 3,
            ttag: 0,
            datao: 0,
            datal: 4096,
            last: true,
            success: false,
        };
        let mut b = BytesMut::new();
        let s = h.begin(&mut b, o);
        b.extend_from_slice(&data);
        h.finish(&mut b, s, o);
        assert_eq!(a, b);
    }
    let _ = SglDescriptor::transport(1);
}
