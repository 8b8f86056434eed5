//! Fuzzes the pool metadata decoder: arbitrary bytes as a copy (header page
//! + body), and arbitrary payloads sealed with valid page headers so the
//! structural decoder is reached past the checksums. Decoding must return
//! an error or metadata that re-encodes to the same payloads; never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_format::{
    decode_copy, encode_payloads, meta::Geometry, seal_page, Copy, PageHeader, PageKind,
    PAGE_SIZE, PAYLOAD_SIZE,
};
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        // Raw bytes.
        let (h, b) = rest.split_at(rest.len().min(PAGE_SIZE));
        let mut header = h.to_vec();
        header.resize(PAGE_SIZE, 0);
        let body_len = b.len() / PAGE_SIZE * PAGE_SIZE;
        if let Ok(d) = decode_copy(&header, &b[..body_len], Copy::A) {
            let _ = encode_payloads(&d.meta);
        }
        return;
    }
    // Valid seals around fuzzed payloads, on a small fixed geometry.
    let Ok(g) = Geometry::new(8 << 20, 512, 1 << 20, 2) else { return };
    let uuid = Uuid::from_u128(1);
    let pages = g.copy_pages() as usize;
    let mut chunks = rest.chunks(PAYLOAD_SIZE);
    let mut sealed = Vec::with_capacity(pages * PAGE_SIZE);
    for i in 0..pages {
        let payload = chunks.next().unwrap_or(&[]);
        let kind = g.page_kind(i as u64);
        let hdr = PageHeader { kind, copy: 0, index: i as u32, generation: 1, pool_uuid: uuid };
        sealed.extend_from_slice(&seal_page(&hdr, payload));
    }
    let _ = PageKind::Header;
    if let Ok(d) = decode_copy(&sealed[..PAGE_SIZE], &sealed[PAGE_SIZE..], Copy::A) {
        let payloads = encode_payloads(&d.meta).expect("decoded metadata re-encodes");
        assert_eq!(payloads.len(), pages);
    }
});
