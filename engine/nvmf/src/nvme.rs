//! NVMe submission/completion queue entries, SGL descriptors, opcodes and
//! status codes (NVMe base spec 1.4, NVMe-oF 1.1 subset).
//!
//! Invariants: [`Sqe`] and [`Cqe`] are lossless views of their 64/16 bytes
//! (`from_bytes(to_bytes(x)) == x`). Threading: plain values.

/// Size of a submission queue entry in bytes.
pub const SQE_BYTES: usize = 64;
/// Size of a completion queue entry in bytes.
pub const CQE_BYTES: usize = 16;

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from(le32(b, o)) | (u64::from(le32(b, o + 4)) << 32)
}

/// SGL descriptor identifier (byte 15): type in bits 7:4, subtype in 3:0.
pub mod sgl {
    /// Data Block descriptor, subtype Offset: in-capsule data at `addr`
    /// bytes into the capsule's data (0x01).
    pub const DATA_BLOCK_OFFSET: u8 = 0x01;
    /// Transport SGL Data Block, transport specific subtype A: data moves
    /// with R2T/H2CData (host to controller) or C2HData (0x5A).
    pub const TRANSPORT_DATA_BLOCK: u8 = 0x5A;
}

/// A 16-byte SGL descriptor (the `DPTR` of a fabrics SQE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SglDescriptor {
    /// Address, or offset into in-capsule data for [`sgl::DATA_BLOCK_OFFSET`].
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Bytes 12..15 (keyed SGL key / reserved).
    pub key: [u8; 3],
    /// Descriptor identifier (type << 4 | subtype).
    pub id: u8,
}

impl SglDescriptor {
    /// Transport data block of `len` bytes (data via R2T or C2HData).
    pub fn transport(len: u32) -> Self {
        Self {
            addr: 0,
            len,
            key: [0; 3],
            id: sgl::TRANSPORT_DATA_BLOCK,
        }
    }
    /// In-capsule data block of `len` bytes at offset 0.
    pub fn in_capsule(len: u32) -> Self {
        Self {
            addr: 0,
            len,
            key: [0; 3],
            id: sgl::DATA_BLOCK_OFFSET,
        }
    }
    fn parse(b: &[u8]) -> Self {
        Self {
            addr: le64(b, 0),
            len: le32(b, 8),
            key: [b[12], b[13], b[14]],
            id: b[15],
        }
    }
    fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..15].copy_from_slice(&self.key);
        b[15] = self.id;
    }
}

/// A submission queue entry (64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sqe {
    pub opcode: u8,
    /// FUSE (bits 1:0) and PSDT (bits 7:6; 0b01 = SGL, as fabrics requires).
    pub flags: u8,
    pub cid: u16,
    /// Namespace id; for Fabrics commands (opcode 0x7f) byte 4 is FCTYPE.
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub mptr: u64,
    pub dptr: SglDescriptor,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

/// PSDT = SGL for data, as fabrics hosts set it.
pub const SQE_FLAGS_SGL: u8 = 0x40;

impl Sqe {
    /// Parses 64 bytes. `b` shorter than 64 bytes is a caller bug and
    /// yields `None`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < SQE_BYTES {
            return None;
        }
        Some(Self {
            opcode: b[0],
            flags: b[1],
            cid: le16(b, 2),
            nsid: le32(b, 4),
            cdw2: le32(b, 8),
            cdw3: le32(b, 12),
            mptr: le64(b, 16),
            dptr: SglDescriptor::parse(&b[24..40]),
            cdw10: le32(b, 40),
            cdw11: le32(b, 44),
            cdw12: le32(b, 48),
            cdw13: le32(b, 52),
            cdw14: le32(b, 56),
            cdw15: le32(b, 60),
        })
    }

    /// The 64 wire bytes.
    pub fn to_bytes(&self) -> [u8; SQE_BYTES] {
        let mut b = [0u8; SQE_BYTES];
        b[0] = self.opcode;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.cid.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[8..12].copy_from_slice(&self.cdw2.to_le_bytes());
        b[12..16].copy_from_slice(&self.cdw3.to_le_bytes());
        b[16..24].copy_from_slice(&self.mptr.to_le_bytes());
        self.dptr.write(&mut b[24..40]);
        for (i, v) in [
            self.cdw10, self.cdw11, self.cdw12, self.cdw13, self.cdw14, self.cdw15,
        ]
        .iter()
        .enumerate()
        {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// FCTYPE of a Fabrics command (byte 4).
    pub fn fctype(&self) -> u8 {
        (self.nsid & 0xff) as u8
    }

    /// Starting LBA of Read/Write/Write Zeroes (CDW10-11).
    pub fn slba(&self) -> u64 {
        u64::from(self.cdw10) | (u64::from(self.cdw11) << 32)
    }

    /// Number of logical blocks of Read/Write/Write Zeroes (1-based).
    pub fn nlb(&self) -> u32 {
        (self.cdw12 & 0xffff) + 1
    }

    /// Data direction from the opcode's low two bits: 1 host to
    /// controller, 2 controller to host, 0 none, 3 bidirectional. Fabrics
    /// commands use the FCTYPE's low bits.
    pub fn data_direction(&self) -> u8 {
        if self.opcode == admin_opc::FABRICS {
            self.fctype() & 3
        } else {
            self.opcode & 3
        }
    }

    /// A Read or Write SQE (`nlb` 1-based), SGL set by the caller.
    pub fn rw(opcode: u8, cid: u16, nsid: u32, slba: u64, nlb: u32, dptr: SglDescriptor) -> Self {
        Self {
            opcode,
            flags: SQE_FLAGS_SGL,
            cid,
            nsid,
            dptr,
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw12: nlb.saturating_sub(1) & 0xffff,
            ..Self::default()
        }
    }
}

/// Status field of a CQE (bits 31:17 of DW3, without the phase tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Status Code Type (3 bits).
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Command Retry Delay (2 bits).
    pub crd: u8,
    /// More information in the error log.
    pub more: bool,
    /// Do Not Retry.
    pub dnr: bool,
}

impl Status {
    /// Successful completion.
    pub const SUCCESS: Status = Status {
        sct: 0,
        sc: 0,
        crd: 0,
        more: false,
        dnr: false,
    };

    /// A status with DNR set (the host must not retry).
    pub const fn dnr(sct: u8, sc: u8) -> Self {
        Status {
            sct,
            sc,
            crd: 0,
            more: false,
            dnr: true,
        }
    }
    /// A status without DNR (retryable, e.g. device errors).
    pub const fn retry(sct: u8, sc: u8) -> Self {
        Status {
            sct,
            sc,
            crd: 0,
            more: false,
            dnr: false,
        }
    }
    pub fn is_success(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }
    /// `(sct << 8) | sc`, as `nvme-cli` prints it (e.g. 0x184).
    pub fn code(&self) -> u16 {
        (u16::from(self.sct) << 8) | u16::from(self.sc)
    }
    /// The upper 15 bits of CQE DW3 (phase excluded) as a u16 with bit 0
    /// holding the phase tag `phase`.
    pub fn to_raw(&self, phase: bool) -> u16 {
        u16::from(phase)
            | (u16::from(self.sc) << 1)
            | (u16::from(self.sct & 7) << 9)
            | (u16::from(self.crd & 3) << 12)
            | (u16::from(self.more) << 14)
            | (u16::from(self.dnr) << 15)
    }
    /// Inverse of [`Status::to_raw`]: `(status, phase)`.
    pub fn from_raw(raw: u16) -> (Self, bool) {
        (
            Status {
                sc: ((raw >> 1) & 0xff) as u8,
                sct: ((raw >> 9) & 7) as u8,
                crd: ((raw >> 12) & 3) as u8,
                more: raw & (1 << 14) != 0,
                dnr: raw & (1 << 15) != 0,
            },
            raw & 1 != 0,
        )
    }
}

/// Status code types.
pub mod sct {
    pub const GENERIC: u8 = 0;
    pub const COMMAND_SPECIFIC: u8 = 1;
    pub const MEDIA: u8 = 2;
    pub const PATH: u8 = 3;
}

/// Generic command status codes (SCT 0).
pub mod sc {
    pub const SUCCESS: u8 = 0x00;
    pub const INVALID_OPCODE: u8 = 0x01;
    pub const INVALID_FIELD: u8 = 0x02;
    pub const CID_CONFLICT: u8 = 0x03;
    pub const DATA_TRANSFER_ERROR: u8 = 0x04;
    pub const INTERNAL: u8 = 0x06;
    pub const ABORT_REQUESTED: u8 = 0x07;
    pub const ABORTED_SQ_DELETION: u8 = 0x08;
    pub const INVALID_NAMESPACE: u8 = 0x0b;
    pub const COMMAND_SEQUENCE_ERROR: u8 = 0x0c;
    pub const DATA_SGL_LENGTH_INVALID: u8 = 0x0f;
    pub const SGL_DESCRIPTOR_TYPE_INVALID: u8 = 0x11;
    pub const SGL_OFFSET_INVALID: u8 = 0x16;
    /// The controller uses 128-bit host ids and the command asked for
    /// the 64-bit format (Reservation Report without EDS), or vice versa.
    pub const HOST_ID_INCONSISTENT_FORMAT: u8 = 0x18;
    pub const KEEP_ALIVE_EXPIRED: u8 = 0x19;
    pub const KEEP_ALIVE_INVALID: u8 = 0x1a;
    pub const ABORTED_PREEMPT_ABORT: u8 = 0x1b;
    pub const TRANSIENT_TRANSPORT_ERROR: u8 = 0x22;
    pub const LBA_OUT_OF_RANGE: u8 = 0x80;
    pub const CAPACITY_EXCEEDED: u8 = 0x81;
    pub const NAMESPACE_NOT_READY: u8 = 0x82;
    pub const RESERVATION_CONFLICT: u8 = 0x83;
}

/// Command specific status codes (SCT 1).
pub mod sc_cmd {
    pub const INVALID_QUEUE_ID: u8 = 0x01;
    pub const INVALID_QUEUE_SIZE: u8 = 0x02;
    pub const ABORT_LIMIT_EXCEEDED: u8 = 0x03;
    pub const AER_LIMIT_EXCEEDED: u8 = 0x05;
    pub const INVALID_LOG_PAGE: u8 = 0x09;
    pub const FEATURE_NOT_SAVEABLE: u8 = 0x0d;
    /// Fabrics Connect: incompatible RECFMT.
    pub const CONNECT_INCOMPATIBLE_FORMAT: u8 = 0x80;
    pub const CONNECT_CONTROLLER_BUSY: u8 = 0x81;
    pub const CONNECT_INVALID_PARAMETERS: u8 = 0x82;
    pub const CONNECT_RESTART_DISCOVERY: u8 = 0x83;
    pub const CONNECT_INVALID_HOST: u8 = 0x84;
}

/// Media and data integrity errors (SCT 2).
pub mod sc_media {
    pub const WRITE_FAULT: u8 = 0x80;
    pub const UNRECOVERED_READ_ERROR: u8 = 0x81;
}

/// Path related status codes (SCT 3). A multipath host retries a command
/// that ends with one of these on another path (or queues it until a path
/// is usable) instead of failing it, as long as DNR is clear.
pub mod sc_path {
    pub const INTERNAL_PATH_ERROR: u8 = 0x00;
    pub const ANA_PERSISTENT_LOSS: u8 = 0x01;
    pub const ANA_INACCESSIBLE: u8 = 0x02;
    pub const ANA_TRANSITION: u8 = 0x03;
}

/// Admin command opcodes.
pub mod admin_opc {
    pub const DELETE_SQ: u8 = 0x00;
    pub const CREATE_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_CQ: u8 = 0x04;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    pub const KEEP_ALIVE: u8 = 0x18;
    /// Fabrics command; FCTYPE in byte 4 (see [`crate::fabrics::fctype`]).
    pub const FABRICS: u8 = 0x7f;
}

/// NVM I/O command opcodes.
pub mod io_opc {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE_UNCORRECTABLE: u8 = 0x04;
    pub const COMPARE: u8 = 0x05;
    pub const WRITE_ZEROES: u8 = 0x08;
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    pub const RESERVATION_REGISTER: u8 = 0x0d;
    pub const RESERVATION_REPORT: u8 = 0x0e;
    pub const RESERVATION_ACQUIRE: u8 = 0x11;
    pub const RESERVATION_RELEASE: u8 = 0x15;
    /// Fabrics commands also arrive on I/O queues (Connect).
    pub const FABRICS: u8 = 0x7f;
}

/// A completion queue entry (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cqe {
    /// Command specific DW0 (Connect: CNTLID; Property Get: value low).
    pub dw0: u32,
    /// DW1 (Property Get: value high).
    pub dw1: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
    pub phase: bool,
}

impl Cqe {
    /// A completion of `cid` with `status`.
    pub fn new(cid: u16, status: Status) -> Self {
        Self {
            cid,
            status,
            ..Self::default()
        }
    }
    /// Parses 16 bytes; shorter input yields `None`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < CQE_BYTES {
            return None;
        }
        let (status, phase) = Status::from_raw(le16(b, 14));
        Some(Self {
            dw0: le32(b, 0),
            dw1: le32(b, 4),
            sqhd: le16(b, 8),
            sqid: le16(b, 10),
            cid: le16(b, 12),
            status,
            phase,
        })
    }
    /// The 16 wire bytes.
    pub fn to_bytes(&self) -> [u8; CQE_BYTES] {
        let mut b = [0u8; CQE_BYTES];
        b[0..4].copy_from_slice(&self.dw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.dw1.to_le_bytes());
        b[8..10].copy_from_slice(&self.sqhd.to_le_bytes());
        b[10..12].copy_from_slice(&self.sqid.to_le_bytes());
        b[12..14].copy_from_slice(&self.cid.to_le_bytes());
        b[14..16].copy_from_slice(&self.status.to_raw(self.phase).to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sqe_round_trip(b in proptest::collection::vec(any::<u8>(), 64)) {
            let sqe = Sqe::from_bytes(&b).unwrap();
            prop_assert_eq!(&sqe.to_bytes()[..], &b[..]);
        }
        #[test]
        fn cqe_round_trip(b in proptest::collection::vec(any::<u8>(), 16)) {
            let cqe = Cqe::from_bytes(&b).unwrap();
            prop_assert_eq!(&cqe.to_bytes()[..], &b[..]);
        }
    }

    #[test]
    fn status_code_as_nvme_cli_prints_it() {
        let s = Status::dnr(sct::COMMAND_SPECIFIC, sc_cmd::CONNECT_INVALID_HOST);
        assert_eq!(s.code(), 0x184);
        let (back, phase) = Status::from_raw(s.to_raw(true));
        assert_eq!(back, s);
        assert!(phase);
    }
}
