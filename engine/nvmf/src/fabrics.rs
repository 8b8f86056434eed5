//! NVMe over Fabrics commands: Connect (SQE fields and its 1024-byte
//! data), Property Get/Set, and the controller properties (CAP, VS, CC,
//! CSTS) they access.
//!
//! Connect data layout (host to controller, 1024 bytes):
//!
//! ```text
//!    0..16   HOSTID (128-bit host identifier)
//!   16..18   CNTLID (0xFFFF: dynamic controller model)
//!  256..512  SUBNQN (NUL terminated)
//!  512..768  HOSTNQN (NUL terminated)
//! ```
//!
//! Threading: plain values.

use crate::nvme::{admin_opc, SglDescriptor, Sqe, SQE_FLAGS_SGL};

/// Fabrics command types (byte 4 of a fabrics SQE).
pub mod fctype {
    pub const PROPERTY_SET: u8 = 0x00;
    pub const CONNECT: u8 = 0x01;
    pub const PROPERTY_GET: u8 = 0x04;
    pub const AUTH_SEND: u8 = 0x05;
    pub const AUTH_RECV: u8 = 0x06;
    pub const DISCONNECT: u8 = 0x08;
}

/// Controller property offsets.
pub mod reg {
    pub const CAP: u32 = 0x00;
    pub const VS: u32 = 0x08;
    pub const CC: u32 = 0x14;
    pub const CSTS: u32 = 0x1c;
    pub const NSSR: u32 = 0x20;
}

/// CC bits.
pub mod cc {
    pub const EN: u32 = 1;
    pub const SHN_SHIFT: u32 = 14;
    pub const SHN_MASK: u32 = 3 << SHN_SHIFT;
}

/// CSTS bits.
pub mod csts {
    pub const RDY: u32 = 1;
    pub const CFS: u32 = 1 << 1;
    /// SHST = 10b: shutdown processing complete.
    pub const SHST_COMPLETE: u32 = 2 << 2;
    pub const SHST_MASK: u32 = 3 << 2;
    pub const NSSRO: u32 = 1 << 4;
}

/// NVMe version 1.3.0 (the VS property).
pub const VS_1_3: u32 = 0x0001_0300;

/// Builds CAP: MQES (0's based), CQR=1, TO (500 ms units), CSS = NVM,
/// MPSMIN = MPSMAX = 0 (4 KiB).
pub fn cap(mqes: u16, timeout_500ms: u8) -> u64 {
    u64::from(mqes) | (1 << 16) | (u64::from(timeout_500ms) << 24) | (1u64 << 37)
}

/// Size of the Connect command data.
pub const CONNECT_DATA_BYTES: usize = 1024;
/// Offsets within the Connect data (for IPO in error responses).
pub const CONNECT_DATA_CNTLID_OFFSET: u16 = 16;
pub const CONNECT_DATA_SUBNQN_OFFSET: u16 = 256;
pub const CONNECT_DATA_HOSTNQN_OFFSET: u16 = 512;
/// Offsets within the Connect SQE (for IPO in error responses).
pub const CONNECT_SQE_QID_OFFSET: u16 = 42;
pub const CONNECT_SQE_SQSIZE_OFFSET: u16 = 44;
/// CATTR bit: the host disables SQ flow control (SQHD is then 0xFFFF).
pub const CATTR_DISABLE_SQ_FLOW: u8 = 1 << 2;
/// The dynamic controller id a host asks for on the admin queue.
pub const CNTLID_DYNAMIC: u16 = 0xffff;

/// DW0 of a Connect response with "Connect Invalid Parameters": the byte
/// offset of the offending field and whether it is in the data (`true`)
/// or the SQE.
pub fn invalid_params_dw0(in_data: bool, offset: u16) -> u32 {
    u32::from(offset) | (u32::from(in_data) << 16)
}

/// The SQE fields of a Connect command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectCmd {
    pub recfmt: u16,
    pub qid: u16,
    /// Submission queue size, 0's based.
    pub sqsize: u16,
    pub cattr: u8,
    /// Keep-alive timeout in ms (admin queue only; 0 disables).
    pub kato_ms: u32,
}

impl ConnectCmd {
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self {
            recfmt: (sqe.cdw10 & 0xffff) as u16,
            qid: (sqe.cdw10 >> 16) as u16,
            sqsize: (sqe.cdw11 & 0xffff) as u16,
            cattr: ((sqe.cdw11 >> 16) & 0xff) as u8,
            kato_ms: sqe.cdw12,
        }
    }
    /// A Connect SQE whose 1024-byte data goes in-capsule.
    pub fn to_sqe(&self, cid: u16) -> Sqe {
        Sqe {
            opcode: admin_opc::FABRICS,
            flags: SQE_FLAGS_SGL,
            cid,
            nsid: u32::from(fctype::CONNECT),
            dptr: SglDescriptor::in_capsule(CONNECT_DATA_BYTES as u32),
            cdw10: u32::from(self.recfmt) | (u32::from(self.qid) << 16),
            cdw11: u32::from(self.sqsize) | (u32::from(self.cattr) << 16),
            cdw12: self.kato_ms,
            ..Sqe::default()
        }
    }
}

/// The data of a Connect command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectData {
    pub hostid: [u8; 16],
    pub cntlid: u16,
    pub subnqn: String,
    pub hostnqn: String,
}

/// Why Connect data did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectDataError {
    #[error("connect data is {0} bytes, expected 1024")]
    Length(usize),
    #[error("connect data field at offset {0} is not a valid nqn")]
    BadNqn(u16),
}

impl ConnectDataError {
    /// Offset of the offending field in the data (for IPO).
    pub fn offset(&self) -> u16 {
        match self {
            Self::Length(_) => 0,
            Self::BadNqn(o) => *o,
        }
    }
}

fn nqn_field(b: &[u8], offset: u16) -> Result<String, ConnectDataError> {
    let o = usize::from(offset);
    let field = &b[o..o + 256];
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    if end == 0 || end > crate::NQN_MAX_LEN {
        return Err(ConnectDataError::BadNqn(offset));
    }
    std::str::from_utf8(&field[..end])
        .map(str::to_owned)
        .map_err(|_| ConnectDataError::BadNqn(offset))
}

impl ConnectData {
    pub fn from_bytes(b: &[u8]) -> Result<Self, ConnectDataError> {
        if b.len() < CONNECT_DATA_BYTES {
            return Err(ConnectDataError::Length(b.len()));
        }
        let mut hostid = [0u8; 16];
        hostid.copy_from_slice(&b[..16]);
        Ok(Self {
            hostid,
            cntlid: u16::from_le_bytes([b[16], b[17]]),
            subnqn: nqn_field(b, CONNECT_DATA_SUBNQN_OFFSET)?,
            hostnqn: nqn_field(b, CONNECT_DATA_HOSTNQN_OFFSET)?,
        })
    }
    /// The 1024 wire bytes (NQNs longer than 255 bytes are truncated).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; CONNECT_DATA_BYTES];
        b[..16].copy_from_slice(&self.hostid);
        b[16..18].copy_from_slice(&self.cntlid.to_le_bytes());
        let s = self.subnqn.as_bytes();
        let n = s.len().min(255);
        b[256..256 + n].copy_from_slice(&s[..n]);
        let h = self.hostnqn.as_bytes();
        let n = h.len().min(255);
        b[512..512 + n].copy_from_slice(&h[..n]);
        b
    }
}

/// Property Get/Set SQE fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PropertyCmd {
    /// 8-byte access (ATTRIB size 1) instead of 4 bytes.
    pub eight_bytes: bool,
    pub offset: u32,
    /// Value written by Property Set.
    pub value: u64,
}

impl PropertyCmd {
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self {
            eight_bytes: sqe.cdw10 & 7 == 1,
            offset: sqe.cdw11,
            value: u64::from(sqe.cdw12) | (u64::from(sqe.cdw13) << 32),
        }
    }
    /// A Property Get (`set == false`) or Set SQE.
    pub fn to_sqe(&self, cid: u16, set: bool) -> Sqe {
        Sqe {
            opcode: admin_opc::FABRICS,
            flags: SQE_FLAGS_SGL,
            cid,
            nsid: u32::from(if set {
                fctype::PROPERTY_SET
            } else {
                fctype::PROPERTY_GET
            }),
            cdw10: u32::from(self.eight_bytes),
            cdw11: self.offset,
            cdw12: self.value as u32,
            cdw13: (self.value >> 32) as u32,
            ..Sqe::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_round_trip() {
        let c = ConnectCmd {
            recfmt: 0,
            qid: 3,
            sqsize: 127,
            cattr: 4,
            kato_ms: 5000,
        };
        assert_eq!(ConnectCmd::from_sqe(&c.to_sqe(7)), c);
        let d = ConnectData {
            hostid: [9; 16],
            cntlid: 0xffff,
            subnqn: "nqn.2019-05.io.openebs:x".into(),
            hostnqn: "nqn.2019-05.io.openebs:node-name:a".into(),
        };
        assert_eq!(ConnectData::from_bytes(&d.to_bytes()).unwrap(), d);
        let mut bad = d.to_bytes();
        bad[512] = 0;
        assert_eq!(
            ConnectData::from_bytes(&bad),
            Err(ConnectDataError::BadNqn(512))
        );
    }

    #[test]
    fn property_round_trip() {
        let p = PropertyCmd {
            eight_bytes: true,
            offset: reg::CAP,
            value: 0x1234_5678_9abc,
        };
        assert_eq!(PropertyCmd::from_sqe(&p.to_sqe(1, true)), p);
    }
}
