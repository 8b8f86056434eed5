//! Unit tests of `admin`.

use super::*;

#[test]
fn identify_controller_round_trip() {
    let c = IdentifyController {
        vid: 0x1d0f,
        serial: "sn1".into(),
        model: "Mayastor NVMe controller".into(),
        firmware: "0.1".into(),
        mdts: 8,
        cntlid: 7,
        ver: crate::fabrics::VS_1_3,
        cntrltype: 1,
        kas: 10,
        maxcmd: 128,
        nn: 1,
        oncs: oncs::DSM | oncs::WRITE_ZEROES | oncs::RESERVATIONS,
        vwc: true,
        sgls: sgls::SUPPORTED | sgls::OFFSET,
        subnqn: "nqn.2019-05.io.openebs:x".into(),
        ioccsz: 516,
        iorcsz: 1,
        msdbd: 1,
        ..Default::default()
    };
    let b = c.to_bytes();
    assert_eq!(b.len(), 4096);
    assert_eq!(IdentifyController::from_bytes(&b).unwrap(), c);
}

#[test]
fn identify_namespace_round_trip() {
    let n = IdentifyNamespace {
        nsze: 100,
        ncap: 100,
        nuse: 100,
        shared: true,
        rescap: 0x7e,
        dlfeat: 9,
        anagrpid: 1,
        nguid: [3; 16],
        eui64: [0; 8],
        lbads: 12,
    };
    assert_eq!(IdentifyNamespace::from_bytes(&n.to_bytes()).unwrap(), n);
}

#[test]
fn discovery_round_trip() {
    let e = DiscoveryEntry {
        trtype: disc::TRTYPE_TCP,
        adrfam: disc::ADRFAM_IPV4,
        subtype: disc::SUBTYPE_NVME,
        treq: disc::TREQ_NOT_REQUIRED,
        portid: 1,
        cntlid: 0xffff,
        asqsz: 32,
        trsvcid: "8420".into(),
        subnqn: "nqn.2019-05.io.openebs:x".into(),
        traddr: "127.0.0.1".into(),
    };
    let b = discovery_log(3, std::slice::from_ref(&e));
    assert_eq!(parse_discovery_log(&b).unwrap(), (3, vec![e]));
}

#[test]
fn log_window_cuts_and_refuses_far_offsets() {
    let sqe = Sqe {
        cdw10: (1 << 16) | 0x70,
        cdw12: 4,
        ..Sqe::default()
    };
    let g = GetLogPageCmd::from_sqe(&sqe);
    assert_eq!(g.len_bytes, 8);
    assert_eq!(g.window(&[1, 2, 3, 4, 5, 6]).unwrap(), &[5, 6]);
    assert_eq!(
        g.window(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
            .unwrap(),
        &[5, 6, 7, 8, 9, 10, 11, 12]
    );
    // The largest NUMD (16 GiB) is only a bound on the slice.
    let huge = GetLogPageCmd::from_sqe(&Sqe {
        cdw10: 0xffff_0070,
        cdw11: 0xffff,
        ..Sqe::default()
    });
    assert_eq!(huge.len_bytes, 1 << 34);
    assert_eq!(huge.window(&[9; 512]).unwrap().len(), 512);
    let far = GetLogPageCmd {
        offset_bytes: 100,
        ..g
    };
    assert!(far.window(&[0; 8]).is_none());
}

#[test]
fn dsm_round_trip() {
    let r = vec![DsmRange {
        attributes: 0,
        nlb: 8,
        slba: 1 << 33,
    }];
    assert_eq!(dsm_ranges(&dsm_bytes(&r)).collect::<Vec<_>>(), r);
}
