//! Fuzzes the NVMe/TCP PDU decoder (`nvmf::pdu`).
//!
//! Properties: decoding arbitrary bytes (fed in two chunks, lenient and
//! strict digest policies) never panics; every PDU that decodes re-encodes
//! to bytes that decode to the same PDU.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nvmf::pdu::{Decoder, EncodeOpts, Pdu};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let decoder = match mode % 3 {
        0 => Decoder { max_pdu_bytes: 64 * 1024, ..Decoder::default() },
        1 => Decoder::negotiated(64 * 1024, true, true),
        _ => Decoder::negotiated(64 * 1024, false, false),
    };
    let cut = usize::from(mode) % (rest.len() + 1);
    let mut buf = BytesMut::from(&rest[..cut]);
    let mut fed_all = false;
    for _ in 0..64 {
        match decoder.decode(&mut buf) {
            Ok(Some(pdu)) => check_round_trip(&pdu),
            Ok(None) if !fed_all => {
                buf.extend_from_slice(&rest[cut..]);
                fed_all = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
});

fn check_round_trip(pdu: &Pdu) {
    for opts in [
        EncodeOpts::default(),
        EncodeOpts { hdgst: true, ddgst: true, pda: 1 },
    ] {
        let mut wire = BytesMut::new();
        pdu.encode(&mut wire, opts);
        let back = nvmf::pdu::decode(&mut wire).expect("re-encoded pdu decodes");
        let back = back.expect("re-encoded pdu is complete");
        // H2CData drops the SUCCESS flag (C2H only); compare normalised.
        assert_eq!(normalise(back), normalise(pdu.clone()));
        assert!(wire.is_empty());
    }
}

fn normalise(p: Pdu) -> Pdu {
    match p {
        Pdu::H2CData(mut d) => {
            d.success = false;
            Pdu::H2CData(d)
        }
        other => other,
    }
}
