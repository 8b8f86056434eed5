//! Unit tests of `meta`.

use super::*;
use crate::page::seal_page;

pub(crate) fn encode_copy(meta: &PoolMeta, copy: Copy, gen: u64) -> (Vec<u8>, Vec<u8>) {
    let payloads = encode_payloads(meta).expect("encodes");
    let header = seal_page(&meta.page_header(copy, 0, gen), &payloads[0]).to_vec();
    let mut body = Vec::new();
    for (i, p) in payloads.iter().enumerate().skip(1) {
        body.extend_from_slice(&seal_page(&meta.page_header(copy, i as u64, gen), p));
    }
    (header, body)
}

#[test]
fn hundred_mib_disk_has_96_mib_capacity() {
    let g =
        Geometry::new(100 << 20, 512, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES).expect("geometry");
    assert_eq!(g.capacity_bytes(), 96 << 20);
    assert_eq!(g.data_offset_bytes, 4 << 20);
    assert_eq!(g.num_clusters, 24);
}

#[test]
fn tiny_disk_is_refused() {
    let e = Geometry::new(4 << 20, 512, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES);
    assert!(matches!(e, Err(FormatError::Geometry(_))), "{e:?}");
}

#[test]
fn large_disk_geometry_is_consistent() {
    for size in [1u64 << 30, 1 << 40, (1 << 40) + 12345 * 4096] {
        let g =
            Geometry::new(size, 4096, DEFAULT_CLUSTER_SIZE, DEFAULT_RT_PAGES).expect("geometry");
        g.validate().expect("valid");
        assert!(g.data_offset_bytes + g.capacity_bytes() <= size);
        // No more than one cluster lost beyond metadata.
        assert!(size - g.data_offset_bytes - g.capacity_bytes() < g.cluster_size_bytes);
    }
}

#[test]
fn copy_round_trip() {
    let g = Geometry::new(1 << 30, 512, 1 << 20, 4).expect("geometry");
    let mut meta = PoolMeta::new(Uuid::from_u128(7), "pool-1", g).expect("meta");
    meta.replicas.push(ReplicaRecord {
        slot: 1,
        uuid: Uuid::from_u128(99),
        name: "r1".into(),
        size_bytes: 3 << 20,
        thin: false,
        share: Share::Nvmf,
        allowed_hosts: vec!["nqn.2019-05.io.openebs:node-name:n1".into()],
    });
    for l in 0..3 {
        meta.owners[10 + l] = Owner {
            slot: 1,
            logical: l as u32,
        };
    }
    for copy in Copy::BOTH {
        let (h, b) = encode_copy(&meta, copy, 5);
        let d = decode_copy(&h, &b, copy).expect("decodes");
        assert_eq!(d.meta, meta);
        assert_eq!(d.generation, 5);
        assert!(d.page_generations.iter().all(|g| *g == 5));
        // The other copy's pages are refused in this copy's place.
        assert!(decode_copy(&h, &b, copy.other()).is_err());
    }
}

#[test]
fn newer_body_page_means_interrupted() {
    let g = Geometry::new(64 << 20, 512, 1 << 20, 2).expect("geometry");
    let meta = PoolMeta::new(Uuid::from_u128(1), "p", g).expect("meta");
    let payloads = encode_payloads(&meta).expect("encodes");
    let (h, mut b) = encode_copy(&meta, Copy::A, 3);
    let p = seal_page(&meta.page_header(Copy::A, 1, 4), &payloads[1]);
    b[..PAGE_SIZE].copy_from_slice(&p);
    assert!(matches!(
        decode_copy(&h, &b, Copy::A),
        Err(FormatError::Interrupted { .. })
    ));
}
