//! Asymmetric Namespace Access (ANA) of a subsystem: one ANA group (id 1,
//! the namespace NSID 1) whose state the engine sets, the ANA log page
//! built from it, and the change notice the admin queues wait on.
//!
//! A multipath host (Linux native NVMe multipath) sends I/O only to paths
//! whose group is OPTIMIZED (or NON-OPTIMIZED). A command that reaches a
//! subsystem in another state ends with the matching path status (SCT 3,
//! DNR clear): the host then retries it on another path, or queues it
//! while some controller of the subsystem is still live or reconnecting,
//! instead of failing it to the application. That is how a volume target
//! hands its I/O over to the next one without an I/O error.
//!
//! Invariants: the state and the change count change together under the
//! watch channel's lock, so the log page never shows a new state with an
//! old count; every change bumps the count (starting at 1).
//!
//! Hot path: [`Ana::io_status`] is one relaxed atomic load when the group
//! is OPTIMIZED.

use std::sync::atomic::{AtomicU8, Ordering};

use nvmf::admin::{self as adm, ana_state};
use nvmf::nvme::{sc_path, sct, Status};
use tokio::sync::watch;

/// The ANA group id of every subsystem's namespace.
pub const ANA_GROUP: u32 = 1;

/// ANA states a subsystem can be put in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnaState {
    /// Serves I/O (the default).
    Optimized,
    /// Serves I/O; a host prefers an optimized path when it has one.
    NonOptimized,
    /// Serves no I/O: commands end with "ANA inaccessible" and the host
    /// uses (or waits for) another path.
    Inaccessible,
    /// Serves no I/O, for good.
    PersistentLoss,
    /// Changing: commands end with "ANA transition"; the host retries.
    Change,
}

impl AnaState {
    /// The state's code in the ANA log page.
    pub const fn code(self) -> u8 {
        match self {
            AnaState::Optimized => ana_state::OPTIMIZED,
            AnaState::NonOptimized => ana_state::NON_OPTIMIZED,
            AnaState::Inaccessible => ana_state::INACCESSIBLE,
            AnaState::PersistentLoss => ana_state::PERSISTENT_LOSS,
            AnaState::Change => ana_state::CHANGE,
        }
    }

    /// The state of a log page code (`None`: not a state).
    pub const fn from_code(code: u8) -> Option<AnaState> {
        Some(match code {
            ana_state::OPTIMIZED => AnaState::Optimized,
            ana_state::NON_OPTIMIZED => AnaState::NonOptimized,
            ana_state::INACCESSIBLE => AnaState::Inaccessible,
            ana_state::PERSISTENT_LOSS => AnaState::PersistentLoss,
            ana_state::CHANGE => AnaState::Change,
            _ => return None,
        })
    }

    /// Lower-case name (`optimized`, `inaccessible`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            AnaState::Optimized => "optimized",
            AnaState::NonOptimized => "non_optimized",
            AnaState::Inaccessible => "inaccessible",
            AnaState::PersistentLoss => "persistent_loss",
            AnaState::Change => "change",
        }
    }

    /// The status a namespace command ends with in this state (`None`:
    /// the command runs). DNR is clear: it is a path error.
    pub const fn io_status(self) -> Option<Status> {
        match self {
            AnaState::Optimized | AnaState::NonOptimized => None,
            AnaState::Inaccessible => Some(Status::retry(sct::PATH, sc_path::ANA_INACCESSIBLE)),
            AnaState::PersistentLoss => {
                Some(Status::retry(sct::PATH, sc_path::ANA_PERSISTENT_LOSS))
            }
            AnaState::Change => Some(Status::retry(sct::PATH, sc_path::ANA_TRANSITION)),
        }
    }
}

impl std::fmt::Display for AnaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ANA group of one subsystem.
pub(crate) struct Ana {
    /// The state's code, read on every I/O.
    state: AtomicU8,
    /// (state code, change count); receivers learn of every change.
    tx: watch::Sender<(u8, u64)>,
}

impl Ana {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU8::new(ana_state::OPTIMIZED),
            tx: watch::Sender::new((ana_state::OPTIMIZED, 1)),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> AnaState {
        AnaState::from_code(self.state.load(Ordering::Acquire)).unwrap_or(AnaState::Optimized)
    }

    /// Sets the state; the change count is bumped (and the admin queues
    /// told) only when it changes. Returns the previous state.
    pub(crate) fn set(&self, to: AnaState) -> AnaState {
        let mut prev = to;
        self.tx.send_if_modified(|(code, chgcnt)| {
            prev = AnaState::from_code(*code).unwrap_or(AnaState::Optimized);
            if prev == to {
                return false;
            }
            *code = to.code();
            *chgcnt = chgcnt.wrapping_add(1).max(1);
            self.state.store(to.code(), Ordering::Release);
            true
        });
        prev
    }

    /// The status a namespace command ends with now (`None`: it runs).
    #[inline]
    pub(crate) fn io_status(&self) -> Option<Status> {
        let code = self.state.load(Ordering::Relaxed);
        if code == ana_state::OPTIMIZED {
            return None;
        }
        AnaState::from_code(code).and_then(AnaState::io_status)
    }

    /// A receiver of the changes (for an admin queue's change notices).
    pub(crate) fn subscribe(&self) -> watch::Receiver<(u8, u64)> {
        self.tx.subscribe()
    }

    /// The change count now.
    pub(crate) fn change_count(&self) -> u64 {
        self.tx.borrow().1
    }

    /// The ANA log page (`groups_only`: LSP bit 0, without the NSID list).
    pub(crate) fn log_page(&self, groups_only: bool) -> Vec<u8> {
        let (code, chgcnt) = *self.tx.borrow();
        adm::ana_log(
            chgcnt,
            &[adm::AnaGroup {
                grpid: ANA_GROUP,
                state: code,
                chgcnt,
                nsids: vec![1],
            }],
            groups_only,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvmf::nvme::sc;

    /// (change count, group state, group change count, NSIDs) of a page.
    fn parse(page: &[u8]) -> (u64, u8, u64, Vec<u32>) {
        let u64_ = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().unwrap());
        let u32_ = |o: usize| u32::from_le_bytes(page[o..o + 4].try_into().unwrap());
        assert_eq!(u16::from_le_bytes([page[8], page[9]]), 1, "one group");
        assert_eq!(u32_(16), ANA_GROUP);
        let n = u32_(20) as usize;
        let nsids = (0..n).map(|i| u32_(48 + 4 * i)).collect();
        (u64_(0), page[32], u64_(24), nsids)
    }

    #[test]
    fn the_log_page_follows_the_state_and_counts_each_change() {
        let a = Ana::new();
        assert_eq!(a.state(), AnaState::Optimized);
        assert_eq!(parse(&a.log_page(false)), (1, 0x01, 1, vec![1]));
        let mut rx = a.subscribe();
        assert_eq!(a.set(AnaState::Inaccessible), AnaState::Optimized);
        assert!(rx.has_changed().unwrap(), "the admin queues are told");
        assert_eq!(parse(&a.log_page(false)), (2, 0x03, 2, vec![1]));
        // Groups only: the NSID list is left out.
        assert_eq!(parse(&a.log_page(true)), (2, 0x03, 2, vec![]));
        rx.borrow_and_update();
        // Setting the same state changes nothing and tells no one.
        assert_eq!(a.set(AnaState::Inaccessible), AnaState::Inaccessible);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(a.change_count(), 2);
        assert_eq!(a.set(AnaState::Optimized), AnaState::Inaccessible);
        assert_eq!(parse(&a.log_page(false)), (3, 0x01, 3, vec![1]));
    }

    #[test]
    fn io_fails_with_a_path_status_without_dnr_unless_the_group_serves() {
        let a = Ana::new();
        assert_eq!(a.io_status(), None);
        a.set(AnaState::NonOptimized);
        assert_eq!(a.io_status(), None);
        for (state, code) in [
            (AnaState::Inaccessible, sc_path::ANA_INACCESSIBLE),
            (AnaState::PersistentLoss, sc_path::ANA_PERSISTENT_LOSS),
            (AnaState::Change, sc_path::ANA_TRANSITION),
        ] {
            a.set(state);
            let s = a.io_status().expect("a path error");
            assert_eq!((s.sct, s.sc, s.dnr), (sct::PATH, code, false), "{state}");
            // Linux reads 0x301..=0x303 as ANA errors: (sct << 8) | sc.
            assert_eq!(
                (u16::from(s.sct) << 8) | u16::from(s.sc),
                0x300 | u16::from(code)
            );
            assert_ne!(s.sc, sc::RESERVATION_CONFLICT);
        }
        for code in 0..=0xffu8 {
            if let Some(s) = AnaState::from_code(code) {
                assert_eq!(s.code(), code);
            }
        }
    }
}
