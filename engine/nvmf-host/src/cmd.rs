//! Builders for the commands the host sends, and parsers for the few
//! fields of the admin data structures it needs.
//!
//! Purpose: keep the byte-level knowledge of each command in one place;
//! the queue layer only fills in the CID and the SGL.
//!
//! Invariants: builders are pure; parsers never panic on short input
//! (missing bytes read as zero) so a misbehaving controller yields a
//! clear error higher up instead of a crash.
//!
//! Threading model: plain values.

use nvmf::{
    admin::{cns, fid, oncs},
    fabrics::{cc, csts, ConnectCmd, ConnectData, PropertyCmd},
    nvme::{admin_opc, io_opc, SQE_FLAGS_SGL},
    Sqe,
};
use uuid::Uuid;

pub use nvmf::fabrics::{reg, CNTLID_DYNAMIC, CONNECT_DATA_BYTES};

/// CC: EN=1, IOSQES=6 (64 B), IOCQES=4 (16 B), MPS=0 (4 KiB), CSS=NVM.
pub const CC_ENABLE: u32 = (4 << 20) | (6 << 16) | cc::EN;
/// CC.SHN = 01b (normal shutdown).
pub const CC_SHN_NORMAL: u32 = 1 << cc::SHN_SHIFT;
/// CC.SHN mask.
pub const CC_SHN_MASK: u32 = cc::SHN_MASK;
/// CSTS.RDY.
pub const CSTS_RDY: u32 = csts::RDY;
/// CSTS.CFS (controller fatal status).
pub const CSTS_CFS: u32 = csts::CFS;
/// CSTS.SHST = 10b (shutdown processing complete).
pub const CSTS_SHST_COMPLETE: u32 = csts::SHST_COMPLETE;
/// CSTS.SHST mask.
pub const CSTS_SHST_MASK: u32 = csts::SHST_MASK;

/// Bytes of an Identify data structure.
pub const IDENTIFY_BYTES: usize = nvmf::admin::IDENTIFY_BYTES;
/// Dataset Management range descriptor size.
pub const DSM_RANGE_BYTES: usize = 16;
/// Maximum ranges per Dataset Management command.
pub const DSM_MAX_RANGES: usize = 256;

/// Fabrics Connect for queue `qid` of `depth` entries (SQSIZE is 0-based).
pub fn connect(qid: u16, depth: u16, kato_ms: u32) -> Sqe {
    ConnectCmd {
        recfmt: 0,
        qid,
        sqsize: depth.saturating_sub(1),
        cattr: 0,
        kato_ms,
    }
    .to_sqe(0)
}

/// The 1024-byte Connect data.
pub fn connect_data(hostid: &Uuid, cntlid: u16, subnqn: &str, hostnqn: &str) -> Vec<u8> {
    ConnectData {
        hostid: *hostid.as_bytes(),
        cntlid,
        subnqn: subnqn.to_string(),
        hostnqn: hostnqn.to_string(),
    }
    .to_bytes()
}

/// Property Get of a 4-byte (`size8 == false`) or 8-byte register.
pub fn property_get(offset: u32, size8: bool) -> Sqe {
    PropertyCmd {
        eight_bytes: size8,
        offset,
        value: 0,
    }
    .to_sqe(0, false)
}

/// Property Set of a 4-byte register.
pub fn property_set(offset: u32, value: u32) -> Sqe {
    PropertyCmd {
        eight_bytes: false,
        offset,
        value: u64::from(value),
    }
    .to_sqe(0, true)
}

fn admin(opcode: u8, nsid: u32) -> Sqe {
    Sqe {
        opcode,
        flags: SQE_FLAGS_SGL,
        nsid,
        ..Sqe::default()
    }
}

/// Identify Controller (CNS 1).
pub fn identify_controller() -> Sqe {
    let mut sqe = admin(admin_opc::IDENTIFY, 0);
    sqe.cdw10 = u32::from(cns::CONTROLLER);
    sqe
}

/// Identify Namespace (CNS 0).
pub fn identify_namespace(nsid: u32) -> Sqe {
    let mut sqe = admin(admin_opc::IDENTIFY, nsid);
    sqe.cdw10 = u32::from(cns::NAMESPACE);
    sqe
}

/// Set Features, Number of Queues (`n` submission and completion queues).
pub fn set_num_queues(n: u16) -> Sqe {
    let mut sqe = admin(admin_opc::SET_FEATURES, 0);
    sqe.cdw10 = u32::from(fid::NUMBER_OF_QUEUES);
    let v = u32::from(n.saturating_sub(1));
    sqe.cdw11 = (v << 16) | v;
    sqe
}

/// Keep Alive.
pub fn keep_alive() -> Sqe {
    admin(admin_opc::KEEP_ALIVE, 0)
}

/// Read or Write of `nlb` (1-based, at most 65536) blocks at `slba`.
pub fn rw(opcode: u8, nsid: u32, slba: u64, nlb: u32) -> Sqe {
    Sqe::rw(opcode, 0, nsid, slba, nlb, nvmf::SglDescriptor::default())
}

/// Flush.
pub fn flush(nsid: u32) -> Sqe {
    admin(io_opc::FLUSH, nsid)
}

/// Write Zeroes of `nlb` (1-based) blocks at `slba`.
pub fn write_zeroes(nsid: u32, slba: u64, nlb: u32) -> Sqe {
    rw(io_opc::WRITE_ZEROES, nsid, slba, nlb)
}

/// Dataset Management, deallocate, `ranges` ranges (1..=256).
pub fn dsm_deallocate(nsid: u32, ranges: usize) -> Sqe {
    let mut sqe = admin(io_opc::DATASET_MANAGEMENT, nsid);
    sqe.cdw10 = u32::try_from(ranges.clamp(1, DSM_MAX_RANGES) - 1).unwrap_or(0);
    // AD (attribute deallocate).
    sqe.cdw11 = 1 << 2;
    sqe
}

/// Appends one DSM range descriptor.
pub fn push_dsm_range(out: &mut Vec<u8>, slba: u64, nlb: u32) {
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&nlb.to_le_bytes());
    out.extend_from_slice(&slba.to_le_bytes());
}

fn get<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut v = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        v.copy_from_slice(s);
    }
    v
}

/// What the host needs from Identify Controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerIdentity {
    /// Maximum Data Transfer Size as a power of two of CAP.MPSMIN pages
    /// (0 = no limit).
    pub mdts: u8,
    /// I/O Command Capsule Supported Size in 16-byte units.
    pub ioccsz: u32,
    /// Number of namespaces (highest valid NSID).
    pub nn: u32,
    /// Optional NVM Command Support.
    pub oncs: u16,
    /// Volatile write cache present.
    pub vwc: bool,
    /// Model number, serial number, firmware revision (trimmed).
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// The controller's subsystem NQN.
    pub subnqn: String,
}

fn string(b: &[u8], at: usize, len: usize) -> String {
    b.get(at..at + len)
        .and_then(nvmf::get_string)
        .unwrap_or("")
        .trim()
        .to_string()
}

impl ControllerIdentity {
    /// Parses the Identify Controller data structure.
    pub fn parse(b: &[u8]) -> Self {
        Self {
            mdts: get::<1>(b, 77)[0],
            ioccsz: u32::from_le_bytes(get(b, 1792)),
            nn: u32::from_le_bytes(get(b, 516)),
            oncs: u16::from_le_bytes(get(b, 520)),
            vwc: get::<1>(b, 525)[0] & 1 != 0,
            serial: string(b, 4, 20),
            model: string(b, 24, 40),
            firmware: string(b, 64, 8),
            subnqn: string(b, 768, 256),
        }
    }

    /// Bytes of in-capsule data the controller accepts on I/O queues
    /// (`IOCCSZ * 16 - 64`), 0 if none.
    pub fn in_capsule_bytes(&self) -> u32 {
        self.ioccsz.saturating_mul(16).saturating_sub(64)
    }

    /// MDTS in bytes, `None` when unlimited.
    pub fn mdts_bytes(&self, cap: u64) -> Option<u64> {
        if self.mdts == 0 {
            return None;
        }
        let mpsmin = (cap >> 48) & 0xf;
        let page = 1u64 << (12 + mpsmin);
        Some(page.checked_shl(u32::from(self.mdts)).unwrap_or(u64::MAX))
    }

    /// Whether Write Zeroes is supported (ONCS bit 3).
    pub fn supports_write_zeroes(&self) -> bool {
        self.oncs & oncs::WRITE_ZEROES != 0
    }

    /// Whether Dataset Management is supported (ONCS bit 2).
    pub fn supports_dsm(&self) -> bool {
        self.oncs & oncs::DSM != 0
    }
}

/// What the host needs from Identify Namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceIdentity {
    /// Size in logical blocks.
    pub nsze: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Deallocate Logical Block Features (bits 2:0 = 001b: deallocated
    /// blocks read as zeroes).
    pub dlfeat: u8,
}

impl NamespaceIdentity {
    /// Parses Identify Namespace; `None` for an inactive namespace
    /// (all zeroes) or an unusable LBA format.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let nsze = u64::from_le_bytes(get(b, 0));
        let flbas = get::<1>(b, 26)[0];
        // FLBAS bits 3:0 (and 6:5 for formats above 16).
        let index = usize::from(flbas & 0xf) | (usize::from((flbas >> 5) & 3) << 4);
        let lbads = get::<1>(b, 128 + 4 * index + 2)[0];
        if nsze == 0 || !(9..=16).contains(&lbads) {
            return None;
        }
        Some(Self {
            nsze,
            block_size: 1 << lbads,
            dlfeat: get::<1>(b, 33)[0],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_fields() {
        let sqe = connect(3, 32, 10_000);
        let b = sqe.to_bytes();
        assert_eq!(b[0], 0x7f);
        assert_eq!(b[4], nvmf::fabrics::fctype::CONNECT);
        assert_eq!(u16::from_le_bytes([b[42], b[43]]), 3);
        assert_eq!(u16::from_le_bytes([b[44], b[45]]), 31);
        assert_eq!(u32::from_le_bytes([b[48], b[49], b[50], b[51]]), 10_000);
        let id = Uuid::from_u128(0x0102);
        let d = connect_data(&id, 0xffff, "nqn.sub", "nqn.host");
        assert_eq!(d.len(), 1024);
        assert_eq!(&d[0..16], id.as_bytes());
        assert_eq!(&d[16..18], &[0xff, 0xff]);
        assert_eq!(&d[256..263], b"nqn.sub");
        assert_eq!(&d[512..520], b"nqn.host");
    }

    #[test]
    fn identify_parsing() {
        let mut c = vec![0u8; 4096];
        c[77] = 5;
        c[1792..1796].copy_from_slice(&1028u32.to_le_bytes());
        c[516..520].copy_from_slice(&1024u32.to_le_bytes());
        c[24..29].copy_from_slice(b"Linux");
        let id = ControllerIdentity::parse(&c);
        assert_eq!(id.in_capsule_bytes(), 16384);
        assert_eq!(id.nn, 1024);
        assert_eq!(id.model, "Linux");
        assert_eq!(id.mdts_bytes(0), Some(128 << 10));
        assert_eq!(ControllerIdentity::parse(&[]).mdts_bytes(0), None);

        let mut n = vec![0u8; 4096];
        n[0..8].copy_from_slice(&524288u64.to_le_bytes());
        n[26] = 1;
        n[128 + 4 + 2] = 12;
        let ns = NamespaceIdentity::parse(&n).unwrap();
        assert_eq!(
            ns,
            NamespaceIdentity {
                nsze: 524288,
                block_size: 4096,
                dlfeat: 0
            }
        );
        assert_eq!(NamespaceIdentity::parse(&[0u8; 4096]), None);
        assert_eq!(NamespaceIdentity::parse(&[]), None);
    }
}
