//! Admin data structures: Identify (controller, namespace, namespace
//! identification descriptors, active namespace list), log pages (error,
//! SMART/health, ANA, discovery), feature identifiers, Get Log Page /
//! Identify / feature SQE fields, and the reservation data structures.
//!
//! Builders return the full structure as a `Vec<u8>` (admin path only,
//! never per I/O). Offsets follow NVMe 1.4 / NVMe-oF 1.1.
//!
//! Threading: plain values.

use crate::nvme::Sqe;
use crate::put_padded;

/// Size of an Identify data structure.
pub const IDENTIFY_BYTES: usize = 4096;

/// Identify CNS values.
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    pub const NS_DESCRIPTORS: u8 = 0x03;
    /// I/O command set specific Identify Controller (CSI in CDW11).
    pub const CS_CONTROLLER: u8 = 0x06;
}

/// Log page identifiers.
pub mod lid {
    pub const ERROR: u8 = 0x01;
    pub const SMART: u8 = 0x02;
    pub const FIRMWARE_SLOT: u8 = 0x03;
    pub const CHANGED_NS_LIST: u8 = 0x04;
    pub const CMD_EFFECTS: u8 = 0x05;
    pub const ANA: u8 = 0x0c;
    pub const DISCOVERY: u8 = 0x70;
    pub const RESERVATION_NOTIFICATION: u8 = 0x80;
}

/// Feature identifiers.
pub mod fid {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const WRITE_ATOMICITY: u8 = 0x0a;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
    pub const KEEP_ALIVE_TIMER: u8 = 0x0f;
    pub const HOST_IDENTIFIER: u8 = 0x81;
    pub const RESERVATION_PERSISTENCE: u8 = 0x83;
}

/// ONCS bits (optional NVM commands).
pub mod oncs {
    pub const COMPARE: u16 = 1 << 0;
    pub const DSM: u16 = 1 << 2;
    pub const WRITE_ZEROES: u16 = 1 << 3;
    pub const RESERVATIONS: u16 = 1 << 5;
}

/// SGLS bits.
pub mod sgls {
    /// SGLs supported, no alignment requirement.
    pub const SUPPORTED: u32 = 1;
    /// Offset addressing of in-capsule data (Data Block, subtype Offset).
    pub const OFFSET: u32 = 1 << 20;
}

/// Reservation types (RTYPE).
pub mod rtype {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 2;
    pub const WRITE_EXCLUSIVE_REG_ONLY: u8 = 3;
    pub const EXCLUSIVE_ACCESS_REG_ONLY: u8 = 4;
    pub const WRITE_EXCLUSIVE_ALL_REGS: u8 = 5;
    pub const EXCLUSIVE_ACCESS_ALL_REGS: u8 = 6;
}

/// Asynchronous events (Async Event Request completions).
pub mod aen {
    /// Asynchronous Event Configuration (Set Features 0x0b) bit that
    /// enables the ANA change notice.
    pub const AEC_ANA_CHANGE: u32 = 1 << 11;

    /// Dword 0 of the completion of an Async Event Request reporting an
    /// ANA change: type Notice (2), information 0x03, log page 0x0c.
    pub const ANA_CHANGE_DW0: u32 = 0x2 | (0x03 << 8) | (0x0c << 16);
}

/// ANA states.
pub mod ana_state {
    pub const OPTIMIZED: u8 = 0x01;
    pub const NON_OPTIMIZED: u8 = 0x02;
    pub const INACCESSIBLE: u8 = 0x03;
    pub const PERSISTENT_LOSS: u8 = 0x04;
    pub const CHANGE: u8 = 0x0f;
}

/// Identify SQE fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyCmd {
    pub cns: u8,
    pub cntid: u16,
    pub csi: u8,
}

impl IdentifyCmd {
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self {
            cns: (sqe.cdw10 & 0xff) as u8,
            cntid: (sqe.cdw10 >> 16) as u16,
            csi: (sqe.cdw11 >> 24) as u8,
        }
    }
}

/// Get Log Page SQE fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLogPageCmd {
    pub lid: u8,
    pub lsp: u8,
    /// Retain Asynchronous Event.
    pub rae: bool,
    /// Bytes requested ((NUMD + 1) * 4).
    pub len_bytes: u64,
    /// Log page offset in bytes.
    pub offset_bytes: u64,
}

impl GetLogPageCmd {
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let numd = u64::from(sqe.cdw10 >> 16) | (u64::from(sqe.cdw11 & 0xffff) << 16);
        Self {
            lid: (sqe.cdw10 & 0xff) as u8,
            lsp: ((sqe.cdw10 >> 8) & 0x7f) as u8,
            rae: sqe.cdw10 & (1 << 15) != 0,
            len_bytes: (numd + 1) * 4,
            offset_bytes: u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32),
        }
    }
    /// The part of a full log page in `[offset, offset+len)`: a slice of
    /// `page` (shorter than `len` when the page ends first; the transport
    /// pads the transfer with zeroes). `None` if the offset is beyond the
    /// page. Never allocates, whatever NUMD claims.
    pub fn window<'a>(&self, page: &'a [u8]) -> Option<&'a [u8]> {
        let off = usize::try_from(self.offset_bytes).ok()?;
        if off > page.len() {
            return None;
        }
        let len = usize::try_from(self.len_bytes).unwrap_or(usize::MAX);
        let n = (page.len() - off).min(len);
        Some(&page[off..off + n])
    }
}

/// Identify Controller fields this implementation fills in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyController {
    pub vid: u16,
    pub ssvid: u16,
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// MDTS as a power of two of 4 KiB pages (0 = no limit).
    pub mdts: u8,
    pub cntlid: u16,
    pub ver: u32,
    pub oaes: u32,
    pub ctratt: u32,
    /// 1 = I/O controller, 2 = discovery controller.
    pub cntrltype: u8,
    /// CMIC: bit 1 multiple controllers, bit 3 ANA reporting.
    pub cmic: u8,
    /// Async Event Request Limit (0's based).
    pub aerl: u8,
    /// Log page attributes (bit 2: extended data for Get Log Page).
    pub lpa: u8,
    /// Keep Alive Support granularity in 100 ms units (0 = none).
    pub kas: u16,
    pub anatt: u8,
    pub anacap: u8,
    pub anagrpmax: u32,
    pub nanagrpid: u32,
    pub maxcmd: u16,
    pub nn: u32,
    /// Maximum number of allowed namespaces (required with ANA).
    pub mnan: u32,
    pub oncs: u16,
    /// Volatile write cache present.
    pub vwc: bool,
    pub sgls: u32,
    pub subnqn: String,
    /// I/O queue command capsule size in 16-byte units.
    pub ioccsz: u32,
    /// I/O queue response capsule size in 16-byte units.
    pub iorcsz: u32,
    pub msdbd: u8,
}

impl IdentifyController {
    /// The 4096-byte Identify Controller data structure.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_BYTES];
        b[0..2].copy_from_slice(&self.vid.to_le_bytes());
        b[2..4].copy_from_slice(&self.ssvid.to_le_bytes());
        put_padded(&mut b[4..24], &self.serial, b' ');
        put_padded(&mut b[24..64], &self.model, b' ');
        put_padded(&mut b[64..72], &self.firmware, b' ');
        b[72] = 6; // RAB
        b[76] = self.cmic;
        b[77] = self.mdts;
        b[78..80].copy_from_slice(&self.cntlid.to_le_bytes());
        b[80..84].copy_from_slice(&self.ver.to_le_bytes());
        b[92..96].copy_from_slice(&self.oaes.to_le_bytes());
        b[96..100].copy_from_slice(&self.ctratt.to_le_bytes());
        b[111] = self.cntrltype;
        b[259] = self.aerl;
        b[261] = self.lpa;
        b[320..322].copy_from_slice(&self.kas.to_le_bytes());
        b[342] = self.anatt;
        b[343] = self.anacap;
        b[344..348].copy_from_slice(&self.anagrpmax.to_le_bytes());
        b[348..352].copy_from_slice(&self.nanagrpid.to_le_bytes());
        b[512] = 0x66; // SQES: 64-byte entries
        b[513] = 0x44; // CQES: 16-byte entries
        b[514..516].copy_from_slice(&self.maxcmd.to_le_bytes());
        b[516..520].copy_from_slice(&self.nn.to_le_bytes());
        b[520..522].copy_from_slice(&self.oncs.to_le_bytes());
        b[525] = u8::from(self.vwc);
        b[530] = 1; // NVSCC
        b[536..540].copy_from_slice(&self.sgls.to_le_bytes());
        b[540..544].copy_from_slice(&self.mnan.to_le_bytes());
        put_padded(&mut b[768..1024], &self.subnqn, 0);
        b[1792..1796].copy_from_slice(&self.ioccsz.to_le_bytes());
        b[1796..1800].copy_from_slice(&self.iorcsz.to_le_bytes());
        b[1803] = self.msdbd;
        b
    }

    /// Parses the fields of [`IdentifyController`] back (for hosts).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < IDENTIFY_BYTES {
            return None;
        }
        let s = |r: std::ops::Range<usize>| crate::get_string(&b[r]).unwrap_or("").to_owned();
        let u16_ = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_ = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(Self {
            vid: u16_(0),
            ssvid: u16_(2),
            serial: s(4..24),
            model: s(24..64),
            firmware: s(64..72),
            mdts: b[77],
            cntlid: u16_(78),
            ver: u32_(80),
            oaes: u32_(92),
            ctratt: u32_(96),
            cntrltype: b[111],
            cmic: b[76],
            aerl: b[259],
            lpa: b[261],
            kas: u16_(320),
            anatt: b[342],
            anacap: b[343],
            anagrpmax: u32_(344),
            nanagrpid: u32_(348),
            maxcmd: u16_(514),
            nn: u32_(516),
            mnan: u32_(540),
            oncs: u16_(520),
            vwc: b[525] & 1 != 0,
            sgls: u32_(536),
            subnqn: s(768..1024),
            ioccsz: u32_(1792),
            iorcsz: u32_(1796),
            msdbd: b[1803],
        })
    }
}

/// Identify Namespace fields this implementation fills in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyNamespace {
    /// Size, capacity and utilisation in logical blocks.
    pub nsze: u64,
    pub ncap: u64,
    pub nuse: u64,
    /// Namespace may be attached to several controllers (NMIC bit 0).
    pub shared: bool,
    /// Reservation capabilities (RESCAP).
    pub rescap: u8,
    /// Deallocate logical block features (DLFEAT).
    pub dlfeat: u8,
    pub anagrpid: u32,
    pub nguid: [u8; 16],
    pub eui64: [u8; 8],
    /// log2 of the block size (9 for 512, 12 for 4096).
    pub lbads: u8,
}

impl IdentifyNamespace {
    /// The 4096-byte Identify Namespace data structure, one LBA format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_BYTES];
        b[0..8].copy_from_slice(&self.nsze.to_le_bytes());
        b[8..16].copy_from_slice(&self.ncap.to_le_bytes());
        b[16..24].copy_from_slice(&self.nuse.to_le_bytes());
        b[25] = 0; // NLBAF: one format (0's based)
        b[26] = 0; // FLBAS: format 0
        b[30] = u8::from(self.shared);
        b[31] = self.rescap;
        b[33] = self.dlfeat;
        b[92..96].copy_from_slice(&self.anagrpid.to_le_bytes());
        b[104..120].copy_from_slice(&self.nguid);
        b[120..128].copy_from_slice(&self.eui64);
        b[128 + 2] = self.lbads; // LBAF0: MS 0, LBADS, RP 0 (best)
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < IDENTIFY_BYTES {
            return None;
        }
        let u64_ = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let flbas = usize::from(b[26] & 0xf);
        let mut nguid = [0u8; 16];
        nguid.copy_from_slice(&b[104..120]);
        let mut eui64 = [0u8; 8];
        eui64.copy_from_slice(&b[120..128]);
        Some(Self {
            nsze: u64_(0),
            ncap: u64_(8),
            nuse: u64_(16),
            shared: b[30] & 1 != 0,
            rescap: b[31],
            dlfeat: b[33],
            anagrpid: u32::from_le_bytes([b[92], b[93], b[94], b[95]]),
            nguid,
            eui64,
            lbads: b[128 + 4 * flbas + 2],
        })
    }
}

/// Namespace identification descriptor types.
pub mod nidt {
    pub const EUI64: u8 = 1;
    pub const NGUID: u8 = 2;
    pub const UUID: u8 = 3;
    pub const CSI: u8 = 4;
}

/// Namespace Identification Descriptor list (CNS 3): NGUID, UUID and the
/// command set (NVM).
pub fn ns_descriptor_list(nguid: &[u8; 16], uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_BYTES];
    let mut o = 0;
    for (t, v) in [
        (nidt::NGUID, &nguid[..]),
        (nidt::UUID, &uuid[..]),
        (nidt::CSI, &[0u8][..]),
    ] {
        b[o] = t;
        b[o + 1] = v.len() as u8;
        b[o + 4..o + 4 + v.len()].copy_from_slice(v);
        o += 4 + v.len();
    }
    b
}

/// Active Namespace ID list (CNS 2): the ids of `active` greater than
/// `after`, ascending, at most 1024.
pub fn active_ns_list(active: &[u32], after: u32) -> Vec<u8> {
    let mut ids: Vec<u32> = active.iter().copied().filter(|&n| n > after).collect();
    ids.sort_unstable();
    let mut b = vec![0u8; IDENTIFY_BYTES];
    for (i, n) in ids.iter().take(1024).enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&n.to_le_bytes());
    }
    b
}

/// Size of one Error Information log entry.
pub const ERROR_LOG_ENTRY_BYTES: usize = 64;

/// SMART / Health Information (log 0x02, 512 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmartLog {
    pub critical_warning: u8,
    /// Composite temperature in Kelvin.
    pub temperature_k: u16,
    pub available_spare: u8,
    pub spare_threshold: u8,
    pub percent_used: u8,
    /// In thousands of 512-byte units, as the spec counts.
    pub data_units_read: u64,
    pub data_units_written: u64,
    pub host_reads: u64,
    pub host_writes: u64,
    pub power_on_hours: u64,
    pub media_errors: u64,
}

impl SmartLog {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0] = self.critical_warning;
        b[1..3].copy_from_slice(&self.temperature_k.to_le_bytes());
        b[3] = self.available_spare;
        b[4] = self.spare_threshold;
        b[5] = self.percent_used;
        b[32..40].copy_from_slice(&self.data_units_read.to_le_bytes());
        b[48..56].copy_from_slice(&self.data_units_written.to_le_bytes());
        b[64..72].copy_from_slice(&self.host_reads.to_le_bytes());
        b[80..88].copy_from_slice(&self.host_writes.to_le_bytes());
        b[128..136].copy_from_slice(&self.power_on_hours.to_le_bytes());
        b[160..168].copy_from_slice(&self.media_errors.to_le_bytes());
        b
    }
}

/// One ANA group of the ANA log page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnaGroup {
    pub grpid: u32,
    pub state: u8,
    pub chgcnt: u64,
    pub nsids: Vec<u32>,
}

/// ANA log page (0x0c). With `groups_only` (LSP bit 0, RGO) the NSID lists
/// are left out.
pub fn ana_log(chgcnt: u64, groups: &[AnaGroup], groups_only: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + groups.len() * 40);
    b.extend_from_slice(&chgcnt.to_le_bytes());
    b.extend_from_slice(&(groups.len() as u16).to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    for g in groups {
        let n = if groups_only { 0 } else { g.nsids.len() };
        b.extend_from_slice(&g.grpid.to_le_bytes());
        b.extend_from_slice(&(n as u32).to_le_bytes());
        b.extend_from_slice(&g.chgcnt.to_le_bytes());
        b.push(g.state);
        b.extend_from_slice(&[0u8; 15]);
        for id in g.nsids.iter().take(n) {
            b.extend_from_slice(&id.to_le_bytes());
        }
    }
    b
}

/// Transport type, address family and subsystem type values of the
/// discovery log.
pub mod disc {
    pub const TRTYPE_TCP: u8 = 3;
    pub const ADRFAM_IPV4: u8 = 1;
    pub const ADRFAM_IPV6: u8 = 2;
    pub const SUBTYPE_REFERRAL: u8 = 1;
    pub const SUBTYPE_NVME: u8 = 2;
    pub const SUBTYPE_CURRENT_DISCOVERY: u8 = 3;
    /// TREQ: secure channel not required.
    pub const TREQ_NOT_REQUIRED: u8 = 2;
    pub const ENTRY_BYTES: usize = 1024;
    pub const HEADER_BYTES: usize = 1024;
}

/// One discovery log page entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryEntry {
    pub trtype: u8,
    pub adrfam: u8,
    pub subtype: u8,
    pub treq: u8,
    pub portid: u16,
    /// 0xFFFF: dynamic controller model.
    pub cntlid: u16,
    /// Admin max SQ size.
    pub asqsz: u16,
    pub trsvcid: String,
    pub subnqn: String,
    pub traddr: String,
}

impl DiscoveryEntry {
    fn write(&self, b: &mut [u8]) {
        b[0] = self.trtype;
        b[1] = self.adrfam;
        b[2] = self.subtype;
        b[3] = self.treq;
        b[4..6].copy_from_slice(&self.portid.to_le_bytes());
        b[6..8].copy_from_slice(&self.cntlid.to_le_bytes());
        b[8..10].copy_from_slice(&self.asqsz.to_le_bytes());
        put_padded(&mut b[32..64], &self.trsvcid, b' ');
        put_padded(&mut b[256..512], &self.subnqn, 0);
        put_padded(&mut b[512..768], &self.traddr, b' ');
        // TSAS for TCP: SECTYPE 0 (no security), already zero.
    }

    fn parse(b: &[u8]) -> Self {
        let s = |r: std::ops::Range<usize>| crate::get_string(&b[r]).unwrap_or("").to_owned();
        Self {
            trtype: b[0],
            adrfam: b[1],
            subtype: b[2],
            treq: b[3],
            portid: u16::from_le_bytes([b[4], b[5]]),
            cntlid: u16::from_le_bytes([b[6], b[7]]),
            asqsz: u16::from_le_bytes([b[8], b[9]]),
            trsvcid: s(32..64),
            subnqn: s(256..512),
            traddr: s(512..768),
        }
    }
}

/// Discovery log page (0x70): 1024-byte header (GENCTR, NUMREC, RECFMT)
/// and one 1024-byte entry per record.
pub fn discovery_log(genctr: u64, entries: &[DiscoveryEntry]) -> Vec<u8> {
    let mut b = vec![0u8; disc::HEADER_BYTES + entries.len() * disc::ENTRY_BYTES];
    b[0..8].copy_from_slice(&genctr.to_le_bytes());
    b[8..16].copy_from_slice(&(entries.len() as u64).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let o = disc::HEADER_BYTES + i * disc::ENTRY_BYTES;
        e.write(&mut b[o..o + disc::ENTRY_BYTES]);
    }
    b
}

/// Parses a discovery log page: `(genctr, entries)`; entries beyond the
/// buffer are left out.
pub fn parse_discovery_log(b: &[u8]) -> Option<(u64, Vec<DiscoveryEntry>)> {
    if b.len() < 16 {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[0..8]);
    let genctr = u64::from_le_bytes(a);
    a.copy_from_slice(&b[8..16]);
    let numrec = u64::from_le_bytes(a);
    let mut v = Vec::new();
    for i in 0..numrec.min(1024) as usize {
        let o = disc::HEADER_BYTES + i * disc::ENTRY_BYTES;
        if o + disc::ENTRY_BYTES > b.len() {
            break;
        }
        v.push(DiscoveryEntry::parse(&b[o..o + disc::ENTRY_BYTES]));
    }
    Some((genctr, v))
}

/// Reservation Register data (16 bytes): current and new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReservationKeys {
    /// CRKEY.
    pub current: u64,
    /// NRKEY (Register) or PRKEY (Acquire); 0 for Release.
    pub other: u64,
}

impl ReservationKeys {
    /// Parses 8 (Release) or 16 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let k = |o: usize| -> Option<u64> {
            let s = b.get(o..o + 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            Some(u64::from_le_bytes(a))
        };
        Some(Self {
            current: k(0)?,
            other: k(8).unwrap_or(0),
        })
    }
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.current.to_le_bytes());
        b[8..].copy_from_slice(&self.other.to_le_bytes());
        b
    }
}

/// One registrant in a Reservation Report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registrant {
    pub cntlid: u16,
    pub holds: bool,
    pub hostid: [u8; 16],
    pub rkey: u64,
}

/// Reservation Status data structure (Reservation Report). `extended`
/// (EDS) selects 64-byte entries with a 128-bit host id.
pub fn reservation_status(gen: u32, rtype: u8, regs: &[Registrant], extended: bool) -> Vec<u8> {
    let (hdr, ent) = if extended { (64, 64) } else { (24, 24) };
    let mut b = vec![0u8; hdr + regs.len() * ent];
    b[0..4].copy_from_slice(&gen.to_le_bytes());
    b[4] = rtype;
    b[5..7].copy_from_slice(&(regs.len() as u16).to_le_bytes());
    for (i, r) in regs.iter().enumerate() {
        let o = hdr + i * ent;
        b[o..o + 2].copy_from_slice(&r.cntlid.to_le_bytes());
        b[o + 2] = u8::from(r.holds);
        if extended {
            b[o + 8..o + 16].copy_from_slice(&r.rkey.to_le_bytes());
            b[o + 16..o + 32].copy_from_slice(&r.hostid);
        } else {
            b[o + 8..o + 16].copy_from_slice(&r.hostid[..8]);
            b[o + 16..o + 24].copy_from_slice(&r.rkey.to_le_bytes());
        }
    }
    b
}

/// A Dataset Management range (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsmRange {
    pub attributes: u32,
    pub nlb: u32,
    pub slba: u64,
}

/// Parses the DSM ranges of `data` (16 bytes each).
pub fn dsm_ranges(data: &[u8]) -> impl Iterator<Item = DsmRange> + '_ {
    data.chunks_exact(16).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&c[8..16]);
        DsmRange {
            attributes: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            nlb: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            slba: u64::from_le_bytes(a),
        }
    })
}

/// Encodes DSM ranges (host side).
pub fn dsm_bytes(ranges: &[DsmRange]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ranges.len() * 16);
    for r in ranges {
        v.extend_from_slice(&r.attributes.to_le_bytes());
        v.extend_from_slice(&r.nlb.to_le_bytes());
        v.extend_from_slice(&r.slba.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests;
