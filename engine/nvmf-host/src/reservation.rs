//! Reservations on a remote namespace: Register, Acquire, Release and
//! Report, as a volume target (nexus) uses them to fence the previous
//! target of its replicas.
//!
//! Purpose: typed wrappers over the `nvmf::resv` codec on [`Namespace`].
//! A reservation belongs to the host (host id + host NQN of the
//! [`crate::ConnectOptions`]), not to one controller, so it outlives a
//! reconnect of the [`crate::Controller`]; a fresh `Controller` keeps it
//! only when it connects with the same host id and host NQN.
//!
//! Invariants:
//! - every NVMe error is a [`HostError::Status`] naming the command
//!   ("reservation acquire (preempt) failed: reservation conflict ...");
//!   [`HostError::is_reservation_conflict`] tells a fenced host apart;
//! - reservation commands are retried across reconnects like I/O. When a
//!   command had to be replayed (an earlier attempt was lost with its
//!   connection and may have been executed) and the replay answers
//!   "reservation conflict", a Reservation Report decides: if this host
//!   is already in the state the command asked for (registered with the
//!   new key, unregistered, holding the reservation, ...) the command
//!   succeeded; otherwise the conflict is returned;
//! - the report parser never panics: a short or malformed Reservation
//!   Status is a [`HostError::Protocol`].
//!
//! Threading model: like [`Namespace`], `Send + Sync`; any number of
//! concurrent calls (the controller orders nothing between them).

use blockdev::BlockDevice;
use nvmf::{
    nvme::{sc, sct},
    resv,
};

use crate::{controller::check, error::HostError, namespace::Namespace, queue::Data};

pub use nvmf::admin::Registrant;
pub use nvmf::resv::{
    AcquireAction, RegisterAction, ReleaseAction, ReportError, ReservationStatus, ReservationType,
};

/// First Reservation Report buffer: an extended header and 16 entries;
/// a larger one is asked for when more hosts are registered.
const REPORT_FIRST_BYTES: usize = resv::STATUS_HEADER_EXT_BYTES + 16 * resv::REGISTRANT_EXT_BYTES;

/// The state a reservation command leaves this host in; checked with a
/// Reservation Report when a replayed command answers with a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// Registered with this key.
    Registered(u64),
    /// Not registered.
    Unregistered,
    /// Holding a reservation of this type.
    Holds(ReservationType),
    /// Holding a reservation of this type and no other host registered
    /// with the preempted key.
    Preempted(ReservationType, u64),
    /// Not holding the reservation.
    NotHolder,
}

impl Goal {
    fn reached(self, st: &ReservationStatus, hostid: &[u8; 16]) -> bool {
        let me = st.registrant(hostid);
        match self {
            Goal::Registered(key) => me.is_some_and(|r| r.rkey == key),
            Goal::Unregistered => me.is_none(),
            Goal::Holds(t) => {
                st.rtype == Some(t) && me.is_some_and(|r| r.holds || t.is_all_registrants())
            }
            Goal::Preempted(t, prkey) => {
                let n = if st.extended { 16 } else { 8 };
                Goal::Holds(t).reached(st, hostid)
                    && st
                        .registrants
                        .iter()
                        .all(|r| r.rkey != prkey || r.hostid[..n] == hostid[..n])
            }
            Goal::NotHolder => me.is_none_or(|r| !r.holds),
        }
    }
}

impl Namespace {
    /// Reservation Register: `Register` registers `new_key`, `Unregister`
    /// removes this host's registration (`current_key` must match),
    /// `Replace` changes `current_key` to `new_key`.
    /// `ignore_existing_key` skips the `current_key` check (IEKEY).
    /// Persist Through Power Loss is left unchanged (CPTPL 00b).
    pub async fn resv_register(
        &self,
        action: RegisterAction,
        current_key: u64,
        new_key: u64,
        ignore_existing_key: bool,
    ) -> Result<(), HostError> {
        let (sqe, data) = resv::register(
            self.nsid(),
            action,
            ignore_existing_key,
            current_key,
            new_key,
        );
        let goal = match action {
            RegisterAction::Register | RegisterAction::Replace => Goal::Registered(new_key),
            RegisterAction::Unregister => Goal::Unregistered,
        };
        self.resv_cmd(action.op_name(), sqe, &data, goal).await
    }

    /// Reservation Acquire of `rtype` by this host, registered with
    /// `current_key`: `Acquire` takes a reservation nobody holds;
    /// `Preempt` / `PreemptAndAbort` take it from the holder registered
    /// with `preempt_key` and unregister every host with that key (how a
    /// new volume target fences the old one).
    pub async fn resv_acquire(
        &self,
        action: AcquireAction,
        rtype: ReservationType,
        current_key: u64,
        preempt_key: u64,
    ) -> Result<(), HostError> {
        let (sqe, data) = resv::acquire(self.nsid(), action, rtype, current_key, preempt_key);
        let goal = match action {
            AcquireAction::Acquire => Goal::Holds(rtype),
            AcquireAction::Preempt | AcquireAction::PreemptAndAbort => {
                Goal::Preempted(rtype, preempt_key)
            }
        };
        self.resv_cmd(action.op_name(), sqe, &data, goal).await
    }

    /// Reservation Release: `Release` gives up the reservation of
    /// `rtype` this host holds; `Clear` releases any reservation and
    /// unregisters every host (`rtype` is not checked then).
    pub async fn resv_release(
        &self,
        action: ReleaseAction,
        rtype: ReservationType,
        current_key: u64,
    ) -> Result<(), HostError> {
        let (sqe, data) = resv::release(self.nsid(), action, rtype, current_key);
        let goal = match action {
            ReleaseAction::Release => Goal::NotHolder,
            ReleaseAction::Clear => Goal::Unregistered,
        };
        self.resv_cmd(action.op_name(), sqe, &data, goal).await
    }

    /// Reservation Report: generation, reservation type and every
    /// registrant. Asks for the extended structure (128-bit host ids)
    /// and falls back to the 64-bit one when the controller refuses it.
    pub async fn resv_report(&self) -> Result<ReservationStatus, HostError> {
        const OP: &str = "reservation report";
        let max_bytes = (u64::from(self.max_blocks_per_command())
            * u64::from(BlockDevice::info(self).block_size))
        .min(u64::from(u32::MAX)) as usize;
        let mut extended = true;
        let mut len = REPORT_FIRST_BYTES.min(max_bytes);
        let mut grown = false;
        // At most: EDS refused once, buffer grown once.
        for _ in 0..3 {
            let mut buf = vec![0u8; len];
            let c = self
                .controller()
                .submit_io(
                    OP,
                    resv::report(self.nsid(), len as u32, extended),
                    Data::Read(&mut buf),
                )
                .await?;
            if extended
                && c.status.sct == sct::GENERIC
                && c.status.sc == sc::HOST_ID_INCONSISTENT_FORMAT
            {
                extended = false;
                continue;
            }
            check(c, OP)?;
            match ReservationStatus::parse(&buf, extended) {
                Ok(st) => return Ok(st),
                Err(ReportError::Truncated { need_bytes, .. }) if !grown && need_bytes > len => {
                    if need_bytes > max_bytes {
                        return Err(HostError::Protocol(format!(
                            "{OP}: {need_bytes} bytes of registrants exceed one transfer ({max_bytes} bytes)"
                        )));
                    }
                    len = need_bytes;
                    grown = true;
                }
                Err(e) => return Err(HostError::Protocol(format!("{OP}: {e}"))),
            }
        }
        Err(HostError::Protocol(format!(
            "{OP}: the controller's answer kept changing size"
        )))
    }

    async fn resv_cmd(
        &self,
        op: &'static str,
        sqe: nvmf::Sqe,
        data: &[u8],
        goal: Goal,
    ) -> Result<(), HostError> {
        let (c, replayed) = self
            .controller()
            .submit_io_replayed(op, sqe, Data::Write(data))
            .await?;
        let err = match check(c, op) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !(replayed && err.is_reservation_conflict()) {
            return Err(err);
        }
        // The lost attempt may have done the work already: look.
        let st = self.resv_report().await?;
        let hostid = *self.controller().options().hostid.as_bytes();
        if goal.reached(&st, &hostid) {
            tracing::debug!(
                op,
                "reservation command replayed after a reconnect had already taken effect"
            );
            Ok(())
        } else {
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(
        rtype: Option<ReservationType>,
        extended: bool,
        regs: &[(u8, bool, u64)],
    ) -> ReservationStatus {
        ReservationStatus {
            generation: 1,
            rtype,
            ptpls: false,
            extended,
            registrants: regs
                .iter()
                .map(|&(id, holds, rkey)| Registrant {
                    cntlid: u16::from(id),
                    holds,
                    hostid: if extended {
                        [id; 16]
                    } else {
                        let mut h = [0; 16];
                        h[..8].fill(id);
                        h
                    },
                    rkey,
                })
                .collect(),
        }
    }

    #[test]
    fn goals_are_judged_from_the_report() {
        let me = [1u8; 16];
        let ea = Some(ReservationType::ExclusiveAccess);
        let st = status(ea, true, &[(1, true, 10), (2, false, 20)]);
        assert!(Goal::Registered(10).reached(&st, &me));
        assert!(!Goal::Registered(11).reached(&st, &me));
        assert!(!Goal::Unregistered.reached(&st, &me));
        assert!(Goal::Holds(ReservationType::ExclusiveAccess).reached(&st, &me));
        assert!(!Goal::Holds(ReservationType::WriteExclusive).reached(&st, &me));
        assert!(!Goal::NotHolder.reached(&st, &me));
        assert!(!Goal::Preempted(ReservationType::ExclusiveAccess, 20).reached(&st, &me));
        assert!(Goal::Preempted(ReservationType::ExclusiveAccess, 30).reached(&st, &me));
        // Preempting our own key leaves us registered.
        assert!(Goal::Preempted(ReservationType::ExclusiveAccess, 10).reached(&st, &me));

        let other = [2u8; 16];
        assert!(Goal::NotHolder.reached(&st, &other));
        assert!(Goal::Unregistered.reached(&st, &[3; 16]));

        // A 64-bit report matches on the first 8 bytes of the host id.
        let st = status(None, false, &[(1, false, 10)]);
        assert!(Goal::Registered(10).reached(&st, &me));
        assert!(!Goal::Holds(ReservationType::ExclusiveAccess).reached(&st, &me));

        // All-registrants types: every registrant holds.
        let st = status(
            Some(ReservationType::ExclusiveAccessAllRegistrants),
            true,
            &[(1, false, 10), (2, true, 20)],
        );
        assert!(Goal::Holds(ReservationType::ExclusiveAccessAllRegistrants).reached(&st, &me));
    }
}
