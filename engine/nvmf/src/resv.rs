//! Reservations (NVMe base 1.4, section 8.8 and the Reservation
//! Register/Acquire/Release/Report commands): typed actions and types,
//! the CDW10 layout shared by Register, Acquire and Release, SQE
//! builders for a host, and a parser of the Reservation Status data
//! structure that Reservation Report returns.
//!
//! ```text
//! CDW10 (Register / Acquire / Release)
//!  31   30 29          16 15        8 7      4  3     2     0
//! +--------+--------------+----------+--------+-----+--------+
//! | CPTPL  |   reserved   |  RTYPE   |  rsvd  |IEKEY| action |
//! +--------+--------------+----------+--------+-----+--------+
//!   CPTPL: Register only. RTYPE: Acquire and Release only.
//!
//! Data: Register  CRKEY u64 | NRKEY u64   (16 bytes)
//!       Acquire   CRKEY u64 | PRKEY u64   (16 bytes)
//!       Release   CRKEY u64               (8 bytes)
//! Report: CDW10 = NUMD (0-based dwords), CDW11 bit 0 = EDS.
//! ```
//!
//! Invariants: the parser never panics; a buffer that does not hold the
//! header or every registrant it announces is a [`ReportError`], never a
//! partial answer. Threading: plain values.

use crate::admin::{rtype, Registrant, ReservationKeys};
use crate::nvme::{io_opc, Sqe, SQE_FLAGS_SGL};

/// Header of the Reservation Status data structure (EDS = 0).
pub const STATUS_HEADER_BYTES: usize = 24;
/// Registered Controller data structure (EDS = 0).
pub const REGISTRANT_BYTES: usize = 24;
/// Header of the extended Reservation Status data structure (EDS = 1).
pub const STATUS_HEADER_EXT_BYTES: usize = 64;
/// Registered Controller extended data structure (EDS = 1).
pub const REGISTRANT_EXT_BYTES: usize = 64;
/// CDW11 bit 0 of Reservation Report: extended data structure.
pub const REPORT_EDS: u32 = 1;

/// Reservation types (RTYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReservationType {
    /// Only the holder writes; everybody reads.
    WriteExclusive = rtype::WRITE_EXCLUSIVE,
    /// Only the holder reads or writes.
    ExclusiveAccess = rtype::EXCLUSIVE_ACCESS,
    /// Registrants write; everybody reads.
    WriteExclusiveRegistrantsOnly = rtype::WRITE_EXCLUSIVE_REG_ONLY,
    /// Only registrants read or write.
    ExclusiveAccessRegistrantsOnly = rtype::EXCLUSIVE_ACCESS_REG_ONLY,
    /// Every registrant is a holder; registrants write, everybody reads.
    WriteExclusiveAllRegistrants = rtype::WRITE_EXCLUSIVE_ALL_REGS,
    /// Every registrant is a holder; only registrants read or write.
    ExclusiveAccessAllRegistrants = rtype::EXCLUSIVE_ACCESS_ALL_REGS,
}

impl ReservationType {
    /// The RTYPE value; `None` for 0 (no reservation) and reserved values.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            rtype::WRITE_EXCLUSIVE => Self::WriteExclusive,
            rtype::EXCLUSIVE_ACCESS => Self::ExclusiveAccess,
            rtype::WRITE_EXCLUSIVE_REG_ONLY => Self::WriteExclusiveRegistrantsOnly,
            rtype::EXCLUSIVE_ACCESS_REG_ONLY => Self::ExclusiveAccessRegistrantsOnly,
            rtype::WRITE_EXCLUSIVE_ALL_REGS => Self::WriteExclusiveAllRegistrants,
            rtype::EXCLUSIVE_ACCESS_ALL_REGS => Self::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The wire value (1..=6).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether every registrant counts as a holder (types 5 and 6).
    pub fn is_all_registrants(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants
        )
    }
}

/// Reservation Register action (RREGA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RegisterAction {
    /// Register NRKEY.
    Register = 0,
    /// Unregister (CRKEY must match unless IEKEY).
    Unregister = 1,
    /// Replace CRKEY by NRKEY (CRKEY ignored with IEKEY).
    Replace = 2,
}

impl RegisterAction {
    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
    /// Name for messages ("reservation register (replace)").
    pub fn op_name(self) -> &'static str {
        match self {
            Self::Register => "reservation register",
            Self::Unregister => "reservation register (unregister)",
            Self::Replace => "reservation register (replace)",
        }
    }
}

/// Reservation Acquire action (RACQA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AcquireAction {
    /// Acquire a reservation nobody holds (or that we hold already).
    Acquire = 0,
    /// Preempt the holder (or registrants) with PRKEY.
    Preempt = 1,
    /// Preempt and abort the preempted hosts' commands.
    PreemptAndAbort = 2,
}

impl AcquireAction {
    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
    /// Name for messages.
    pub fn op_name(self) -> &'static str {
        match self {
            Self::Acquire => "reservation acquire",
            Self::Preempt => "reservation acquire (preempt)",
            Self::PreemptAndAbort => "reservation acquire (preempt and abort)",
        }
    }
}

/// Reservation Release action (RRELA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReleaseAction {
    /// Release the reservation we hold (RTYPE must match).
    Release = 0,
    /// Release any reservation and unregister every registrant.
    Clear = 1,
}

impl ReleaseAction {
    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
    /// Name for messages.
    pub fn op_name(self) -> &'static str {
        match self {
            Self::Release => "reservation release",
            Self::Clear => "reservation release (clear)",
        }
    }
}

/// Change Persist Through Power Loss state (CPTPL, Register CDW10 31:30).
pub mod cptpl {
    /// Leave PTPL as it is (what our host always sends).
    pub const NO_CHANGE: u8 = 0;
    /// Reservations are released and registrants cleared on power on.
    pub const CLEAR: u8 = 2;
    /// Reservations and registrants persist across power loss.
    pub const SET: u8 = 3;
}

/// CDW10 of Reservation Register, Acquire and Release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResvCdw10 {
    /// RREGA / RACQA / RRELA (bits 2:0).
    pub action: u8,
    /// Ignore Existing Key (bit 3).
    pub iekey: bool,
    /// Reservation type (bits 15:8; Acquire and Release).
    pub rtype: u8,
    /// CPTPL (bits 31:30; Register).
    pub cptpl: u8,
}

impl ResvCdw10 {
    /// Decodes CDW10.
    pub fn from_cdw10(v: u32) -> Self {
        Self {
            action: (v & 7) as u8,
            iekey: v & 8 != 0,
            rtype: ((v >> 8) & 0xff) as u8,
            cptpl: (v >> 30) as u8,
        }
    }
    /// Encodes CDW10.
    pub fn to_cdw10(&self) -> u32 {
        u32::from(self.action & 7)
            | (u32::from(self.iekey) << 3)
            | (u32::from(self.rtype) << 8)
            | (u32::from(self.cptpl & 3) << 30)
    }
}

fn io_sqe(opcode: u8, nsid: u32, cdw10: u32) -> Sqe {
    Sqe {
        opcode,
        flags: SQE_FLAGS_SGL,
        nsid,
        cdw10,
        ..Sqe::default()
    }
}

/// Reservation Register SQE (CPTPL: no change) and its 16 data bytes.
pub fn register(
    nsid: u32,
    action: RegisterAction,
    ignore_existing_key: bool,
    current_key: u64,
    new_key: u64,
) -> (Sqe, [u8; 16]) {
    let cdw10 = ResvCdw10 {
        action: action.as_u8(),
        iekey: ignore_existing_key,
        rtype: 0,
        cptpl: cptpl::NO_CHANGE,
    };
    let keys = ReservationKeys {
        current: current_key,
        other: new_key,
    };
    (
        io_sqe(io_opc::RESERVATION_REGISTER, nsid, cdw10.to_cdw10()),
        keys.to_bytes(),
    )
}

/// Reservation Acquire SQE and its 16 data bytes.
pub fn acquire(
    nsid: u32,
    action: AcquireAction,
    rtype: ReservationType,
    current_key: u64,
    preempt_key: u64,
) -> (Sqe, [u8; 16]) {
    let cdw10 = ResvCdw10 {
        action: action.as_u8(),
        iekey: false,
        rtype: rtype.as_u8(),
        cptpl: 0,
    };
    let keys = ReservationKeys {
        current: current_key,
        other: preempt_key,
    };
    (
        io_sqe(io_opc::RESERVATION_ACQUIRE, nsid, cdw10.to_cdw10()),
        keys.to_bytes(),
    )
}

/// Reservation Release SQE and its 8 data bytes (CRKEY).
pub fn release(
    nsid: u32,
    action: ReleaseAction,
    rtype: ReservationType,
    current_key: u64,
) -> (Sqe, [u8; 8]) {
    let cdw10 = ResvCdw10 {
        action: action.as_u8(),
        iekey: false,
        rtype: rtype.as_u8(),
        cptpl: 0,
    };
    (
        io_sqe(io_opc::RESERVATION_RELEASE, nsid, cdw10.to_cdw10()),
        current_key.to_le_bytes(),
    )
}

/// Reservation Report SQE for a buffer of `len_bytes` (a multiple of 4,
/// at least 4) with or without the extended data structure.
pub fn report(nsid: u32, len_bytes: u32, extended: bool) -> Sqe {
    let mut sqe = io_sqe(
        io_opc::RESERVATION_REPORT,
        nsid,
        (len_bytes / 4).saturating_sub(1),
    );
    if extended {
        sqe.cdw11 = REPORT_EDS;
    }
    sqe
}

/// Bytes of a Reservation Status data structure with `registrants`
/// entries.
pub fn report_len(registrants: usize, extended: bool) -> usize {
    if extended {
        STATUS_HEADER_EXT_BYTES + registrants * REGISTRANT_EXT_BYTES
    } else {
        STATUS_HEADER_BYTES + registrants * REGISTRANT_BYTES
    }
}

/// Why a Reservation Status data structure could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The buffer ends before the header or before the last registrant
    /// the header announces; `need_bytes` would hold them all.
    #[error(
        "reservation status truncated: {have_bytes} bytes, {need_bytes} needed for {registrants} registrants"
    )]
    Truncated {
        registrants: u16,
        need_bytes: usize,
        have_bytes: usize,
    },
    /// RTYPE is neither 0 (no reservation) nor one of the six types.
    #[error("reservation status reports unknown reservation type {0}")]
    UnknownType(u8),
}

/// A parsed Reservation Status data structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationStatus {
    /// Reservation generation (GEN): bumped by every successful Register,
    /// preempt and clear.
    pub generation: u32,
    /// Type of the reservation held, `None` when nobody holds one.
    pub rtype: Option<ReservationType>,
    /// Persist Through Power Loss State.
    pub ptpls: bool,
    /// Whether host ids are 128-bit (EDS = 1); otherwise only the first
    /// 8 bytes of [`Registrant::hostid`] are meaningful.
    pub extended: bool,
    /// Registered controllers (hosts), in the controller's order.
    pub registrants: Vec<Registrant>,
}

impl ReservationStatus {
    /// Parses `b` as returned for a report with EDS = `extended`.
    pub fn parse(b: &[u8], extended: bool) -> Result<Self, ReportError> {
        let hdr = report_len(0, extended);
        let truncated = |registrants: u16| ReportError::Truncated {
            registrants,
            need_bytes: report_len(usize::from(registrants), extended),
            have_bytes: b.len(),
        };
        if b.len() < hdr {
            let regctl = match (b.get(5), b.get(6)) {
                (Some(&l), Some(&h)) => u16::from_le_bytes([l, h]),
                _ => 0,
            };
            return Err(truncated(regctl));
        }
        let generation = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let rtype = match b[4] {
            0 => None,
            t => Some(ReservationType::from_u8(t).ok_or(ReportError::UnknownType(t))?),
        };
        let regctl = u16::from_le_bytes([b[5], b[6]]);
        let ptpls = b[9] & 1 != 0;
        if b.len() < report_len(usize::from(regctl), extended) {
            return Err(truncated(regctl));
        }
        let ent = if extended {
            REGISTRANT_EXT_BYTES
        } else {
            REGISTRANT_BYTES
        };
        let le64 = |s: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&s[..8]);
            u64::from_le_bytes(a)
        };
        let registrants = b[hdr..hdr + usize::from(regctl) * ent]
            .chunks_exact(ent)
            .map(|e| {
                let mut hostid = [0u8; 16];
                let rkey = if extended {
                    hostid.copy_from_slice(&e[16..32]);
                    le64(&e[8..16])
                } else {
                    hostid[..8].copy_from_slice(&e[8..16]);
                    le64(&e[16..24])
                };
                Registrant {
                    cntlid: u16::from_le_bytes([e[0], e[1]]),
                    holds: e[2] & 1 != 0,
                    hostid,
                    rkey,
                }
            })
            .collect();
        Ok(Self {
            generation,
            rtype,
            ptpls,
            extended,
            registrants,
        })
    }

    /// The registrant that holds the reservation (the first one marked
    /// holding; with an all-registrants type every registrant holds).
    pub fn holder(&self) -> Option<&Registrant> {
        self.registrants.iter().find(|r| r.holds)
    }

    /// The registrant with host id `hostid` (compared on 8 bytes when
    /// the report is not extended).
    pub fn registrant(&self, hostid: &[u8; 16]) -> Option<&Registrant> {
        let n = if self.extended { 16 } else { 8 };
        self.registrants
            .iter()
            .find(|r| r.hostid[..n] == hostid[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::reservation_status;
    use proptest::prelude::*;

    fn reg(cntlid: u16, holds: bool, id: u8, rkey: u64) -> Registrant {
        Registrant {
            cntlid,
            holds,
            hostid: [id; 16],
            rkey,
        }
    }

    #[test]
    fn type_values_are_the_spec_ones() {
        let all = [
            (ReservationType::WriteExclusive, 1),
            (ReservationType::ExclusiveAccess, 2),
            (ReservationType::WriteExclusiveRegistrantsOnly, 3),
            (ReservationType::ExclusiveAccessRegistrantsOnly, 4),
            (ReservationType::WriteExclusiveAllRegistrants, 5),
            (ReservationType::ExclusiveAccessAllRegistrants, 6),
        ];
        for (t, v) in all {
            assert_eq!(t.as_u8(), v);
            assert_eq!(ReservationType::from_u8(v), Some(t));
            assert_eq!(t.is_all_registrants(), v >= 5);
        }
        assert_eq!(ReservationType::from_u8(0), None);
        assert_eq!(ReservationType::from_u8(7), None);
    }

    #[test]
    fn register_acquire_release_report_encoding() {
        let (sqe, data) = register(1, RegisterAction::Replace, true, 5, 9);
        let b = sqe.to_bytes();
        assert_eq!(b[0], 0x0d);
        assert_eq!(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), 1);
        assert_eq!(u32::from_le_bytes([b[40], b[41], b[42], b[43]]), 2 | 8);
        assert_eq!(&data[..8], &5u64.to_le_bytes());
        assert_eq!(&data[8..], &9u64.to_le_bytes());

        let (sqe, data) = acquire(
            1,
            AcquireAction::Preempt,
            ReservationType::ExclusiveAccess,
            2,
            1,
        );
        assert_eq!(sqe.opcode, 0x11);
        assert_eq!(sqe.cdw10, 1 | (2 << 8));
        assert_eq!(
            ReservationKeys::from_bytes(&data),
            Some(ReservationKeys {
                current: 2,
                other: 1
            })
        );

        let (sqe, data) = release(1, ReleaseAction::Clear, ReservationType::WriteExclusive, 7);
        assert_eq!(sqe.opcode, 0x15);
        assert_eq!(sqe.cdw10, 1 | (1 << 8));
        assert_eq!(data, 7u64.to_le_bytes());

        let sqe = report(1, 4096, true);
        assert_eq!(sqe.opcode, 0x0e);
        assert_eq!(sqe.cdw10, 1023);
        assert_eq!(sqe.cdw11, 1);
        assert_eq!(report(1, 24, false).cdw11, 0);
    }

    #[test]
    fn cdw10_fields() {
        let c = ResvCdw10 {
            action: 2,
            iekey: true,
            rtype: 6,
            cptpl: cptpl::SET,
        };
        assert_eq!(c.to_cdw10(), 2 | 8 | (6 << 8) | (3 << 30));
        assert_eq!(ResvCdw10::from_cdw10(c.to_cdw10()), c);
    }

    #[test]
    fn report_parses_both_layouts() {
        let regs = [reg(0x100, true, 0xa, 1), reg(0x101, false, 0xb, 2)];
        for extended in [false, true] {
            let b = reservation_status(42, 2, &regs, extended);
            assert_eq!(b.len(), report_len(2, extended));
            let s = ReservationStatus::parse(&b, extended).unwrap();
            assert_eq!(s.generation, 42);
            assert_eq!(s.rtype, Some(ReservationType::ExclusiveAccess));
            assert!(!s.ptpls);
            assert_eq!(s.registrants.len(), 2);
            assert_eq!(s.holder().unwrap().rkey, 1);
            let b_entry = s.registrant(&[0xb; 16]).unwrap();
            assert_eq!((b_entry.cntlid, b_entry.rkey), (0x101, 2));
            if extended {
                assert_eq!(s.registrants, regs.to_vec());
            } else {
                assert_eq!(&s.registrants[0].hostid[..8], &[0xa; 8]);
                assert_eq!(&s.registrants[0].hostid[8..], &[0; 8]);
            }
        }
        // No reservation, no registrants, PTPLS set, padding after.
        let mut b = vec![0u8; 100];
        b[9] = 1;
        let s = ReservationStatus::parse(&b, true).unwrap();
        assert_eq!((s.rtype, s.ptpls, s.registrants.len()), (None, true, 0));
        assert!(s.holder().is_none());
    }

    #[test]
    fn truncated_or_bad_reports_are_errors() {
        let regs = [reg(1, true, 1, 1), reg(2, false, 2, 2), reg(3, false, 3, 3)];
        let b = reservation_status(1, 1, &regs, true);
        let err = ReservationStatus::parse(&b[..b.len() - 1], true).unwrap_err();
        assert_eq!(
            err,
            ReportError::Truncated {
                registrants: 3,
                need_bytes: 64 + 3 * 64,
                have_bytes: 64 + 3 * 64 - 1
            }
        );
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(matches!(
            ReservationStatus::parse(&b[..10], true),
            Err(ReportError::Truncated { registrants: 3, .. })
        ));
        assert!(matches!(
            ReservationStatus::parse(&[], false),
            Err(ReportError::Truncated { registrants: 0, .. })
        ));
        let mut b = reservation_status(1, 1, &[], false);
        b[4] = 9;
        assert_eq!(
            ReservationStatus::parse(&b, false),
            Err(ReportError::UnknownType(9))
        );
    }

    proptest! {
        #[test]
        fn report_parser_never_panics(
            b in proptest::collection::vec(any::<u8>(), 0..600),
            extended in any::<bool>(),
        ) {
            let _ = ReservationStatus::parse(&b, extended);
        }

        #[test]
        fn report_round_trip(
            gen in any::<u32>(),
            t in 0u8..=6,
            raw in proptest::collection::vec(
                (any::<u16>(), any::<bool>(), any::<[u8; 16]>(), any::<u64>()), 0..20),
        ) {
            let regs: Vec<Registrant> = raw
                .into_iter()
                .map(|(cntlid, holds, hostid, rkey)| Registrant { cntlid, holds, hostid, rkey })
                .collect();
            let b = reservation_status(gen, t, &regs, true);
            let s = ReservationStatus::parse(&b, true).unwrap();
            prop_assert_eq!(s.generation, gen);
            prop_assert_eq!(s.rtype.map_or(0, |t| t.as_u8()), t);
            prop_assert_eq!(s.registrants, regs);
        }
    }
}
