//! Subsystems (one namespace each), controllers, the controller-ID
//! allocator and the namespace's reservation state.
//!
//! Threading: `std::sync` locks held for a few field updates, never across
//! an `.await`. The I/O path reads `resv_active` (an atomic) and takes the
//! reservation lock only while some host is registered.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
};

use blockdev::dynamic::SharedDevice;
use nvmf::admin::{rtype, Registrant};
use nvmf::nvme::{sc, sct, Status};
use tokio_util::sync::CancellationToken;

use crate::ana::{Ana, AnaState};
use crate::locks;

/// What [`crate::Target::subsystems`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemInfo {
    pub nqn: String,
    pub size_bytes: u64,
    pub block_size: u32,
    pub allowed_hosts: Vec<String>,
    /// Connected hosts: `(host nqn, controller id)`.
    pub hosts: Vec<(String, u16)>,
    /// Controller-ID window (inclusive) the subsystem's controllers take
    /// their ids from: its own, or the target's when it has none.
    pub cntlid_min: u16,
    pub cntlid_max: u16,
    /// ANA state of the namespace's group.
    pub ana_state: AnaState,
    /// ANA change count (bumped by every state change).
    pub ana_change_count: u64,
}

/// Options of [`crate::Target::add_subsystem_with`]. Build with
/// `..SubsystemOptions::default()` so later fields keep compiling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubsystemOptions {
    /// Host NQNs that may connect (empty: nobody).
    pub allowed_hosts: Vec<String>,
    /// Lowest controller id of the subsystem's own window (`None`: the
    /// target's `cntlid_min`). Setting either bound gives the subsystem
    /// a window of its own.
    pub cntlid_min: Option<u16>,
    /// Highest controller id of the subsystem's own window (`None`: the
    /// target's `cntlid_max`).
    pub cntlid_max: Option<u16>,
}

/// Round-robin allocator of controller ids within a window.
#[derive(Debug)]
pub(crate) struct CntlidAlloc {
    min: u16,
    max: u16,
    next: u16,
    used: HashSet<u16>,
}

impl CntlidAlloc {
    pub(crate) fn new(min: u16, max: u16) -> Self {
        Self {
            min,
            max,
            next: min,
            used: HashSet::new(),
        }
    }
    pub(crate) fn alloc(&mut self) -> Option<u16> {
        let span = u32::from(self.max - self.min) + 1;
        for _ in 0..span {
            let id = self.next;
            self.next = if self.next >= self.max {
                self.min
            } else {
                self.next + 1
            };
            if self.used.insert(id) {
                return Some(id);
            }
        }
        None
    }
    pub(crate) fn free(&mut self, id: u16) {
        self.used.remove(&id);
    }
}

/// Who a reservation belongs to: host identifier plus host NQN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HostKey {
    pub hostid: [u8; 16],
    pub hostnqn: String,
}

/// Reservation state of the namespace (in memory; no PTPL).
///
/// `holder` names the host that acquired the reservation. With an
/// all-registrants type every registrant is a holder; `holder` then names
/// one of them and moves to another registrant when it unregisters.
#[derive(Debug, Default)]
pub(crate) struct Reservation {
    pub gen: u32,
    /// Registered hosts: key and the controller id they registered from.
    pub regs: HashMap<HostKey, (u64, u16)>,
    /// Holder and type.
    pub holder: Option<(HostKey, u8)>,
}

fn all_regs(t: u8) -> bool {
    matches!(
        t,
        rtype::WRITE_EXCLUSIVE_ALL_REGS | rtype::EXCLUSIVE_ACCESS_ALL_REGS
    )
}

impl Reservation {
    /// Whether `host` holds the reservation (directly, or as a registrant
    /// of an all-registrants reservation).
    fn holds(&self, host: &HostKey) -> bool {
        match &self.holder {
            Some((h, t)) => h == host || (all_regs(*t) && self.regs.contains_key(host)),
            None => false,
        }
    }

    /// Whether `host` may read (`write == false`) or write.
    pub(crate) fn allows(&self, host: &HostKey, write: bool) -> bool {
        let Some((_, t)) = &self.holder else {
            return true;
        };
        if self.holds(host) {
            return true;
        }
        let registered = self.regs.contains_key(host);
        match *t {
            rtype::WRITE_EXCLUSIVE => !write,
            rtype::EXCLUSIVE_ACCESS => false,
            rtype::WRITE_EXCLUSIVE_REG_ONLY | rtype::WRITE_EXCLUSIVE_ALL_REGS => {
                !write || registered
            }
            rtype::EXCLUSIVE_ACCESS_REG_ONLY | rtype::EXCLUSIVE_ACCESS_ALL_REGS => registered,
            _ => true,
        }
    }

    /// `(generation, type, registrants)` for a Reservation Report.
    /// `live` maps a host to the controller id it is connected with now
    /// (0xffff when it has several or none), so a host that reconnected
    /// is not reported under an id that may have been recycled.
    pub(crate) fn report(&self, live: impl Fn(&HostKey) -> u16) -> (u32, u8, Vec<Registrant>) {
        let t = self.holder.as_ref().map(|(_, t)| *t).unwrap_or(0);
        let mut regs: Vec<Registrant> = self
            .regs
            .iter()
            .map(|(k, (key, _))| Registrant {
                cntlid: live(k),
                holds: self.holds(k),
                hostid: k.hostid,
                rkey: *key,
            })
            .collect();
        regs.sort_by_key(|r| (r.cntlid, r.hostid));
        (self.gen, t, regs)
    }

    /// After registrants went away: a holder that is no longer registered
    /// loses the reservation, except that an all-registrants reservation
    /// passes to a remaining registrant.
    fn settle_holder(&mut self) {
        let Some((h, t)) = &self.holder else { return };
        if self.regs.contains_key(h) {
            return;
        }
        let t = *t;
        self.holder = if all_regs(t) {
            self.regs
                .keys()
                .min_by_key(|k| k.hostid)
                .map(|k| (k.clone(), t))
        } else {
            None
        };
    }

    /// Unregisters every host with `key` except `keep`.
    fn unregister_key(&mut self, key: u64, keep: &HostKey) {
        self.regs.retain(|k, (rk, _)| k == keep || *rk != key);
    }
}

const CONFLICT: Status = Status::dnr(sct::GENERIC, sc::RESERVATION_CONFLICT);
const INVALID_FIELD: Status = Status::dnr(sct::GENERIC, sc::INVALID_FIELD);

/// Reservation Register / Acquire / Release semantics (NVMe base 1.4,
/// 8.8). Replaying a command after a lost connection is harmless for
/// register (same key), acquire, preempt and release; unregister, replace
/// and clear answer a replay with a reservation conflict.
impl Reservation {
    pub(crate) fn register(
        &mut self,
        host: &HostKey,
        cntlid: u16,
        action: u8,
        iekey: bool,
        crkey: u64,
        nrkey: u64,
    ) -> Status {
        let cur = self.regs.get(host).map(|(k, _)| *k);
        match action {
            0 => match cur {
                None => {
                    self.regs.insert(host.clone(), (nrkey, cntlid));
                }
                Some(k) if k == nrkey => {}
                Some(_) => return CONFLICT,
            },
            1 => match cur {
                Some(k) if iekey || k == crkey => {
                    self.regs.remove(host);
                    self.settle_holder();
                }
                _ => return CONFLICT,
            },
            2 => match cur {
                Some(k) if iekey || k == crkey => {
                    self.regs.insert(host.clone(), (nrkey, cntlid));
                }
                None if iekey => {
                    self.regs.insert(host.clone(), (nrkey, cntlid));
                }
                _ => return CONFLICT,
            },
            _ => return INVALID_FIELD,
        }
        self.gen = self.gen.wrapping_add(1);
        Status::SUCCESS
    }

    pub(crate) fn acquire(
        &mut self,
        host: &HostKey,
        action: u8,
        iekey: bool,
        t: u8,
        crkey: u64,
        prkey: u64,
    ) -> Status {
        if !(1..=6).contains(&t) {
            return INVALID_FIELD;
        }
        match self.regs.get(host) {
            Some((k, _)) if iekey || *k == crkey => {}
            _ => return CONFLICT,
        }
        match action {
            0 => match &self.holder {
                None => self.holder = Some((host.clone(), t)),
                Some((_, ht)) if *ht == t && self.holds(host) => {}
                Some(_) => return CONFLICT,
            },
            1 | 2 => {
                // Preempt-and-abort behaves like preempt: commands of the
                // preempted hosts are not aborted.
                match self.holder.clone() {
                    None => {
                        if prkey == 0 {
                            return INVALID_FIELD;
                        }
                        self.unregister_key(prkey, host);
                    }
                    Some((_, ht)) if all_regs(ht) => {
                        if prkey == 0 {
                            self.regs.retain(|k, _| k == host);
                            self.holder = Some((host.clone(), t));
                        } else {
                            self.unregister_key(prkey, host);
                            self.settle_holder();
                        }
                    }
                    Some((h, _)) => {
                        let holder_key = self.regs.get(&h).map(|(k, _)| *k);
                        if holder_key == Some(prkey) {
                            self.unregister_key(prkey, host);
                            self.holder = Some((host.clone(), t));
                        } else if prkey == 0 {
                            return INVALID_FIELD;
                        } else {
                            self.unregister_key(prkey, host);
                            self.settle_holder();
                        }
                    }
                }
                self.gen = self.gen.wrapping_add(1);
            }
            _ => return INVALID_FIELD,
        }
        Status::SUCCESS
    }

    pub(crate) fn release(
        &mut self,
        host: &HostKey,
        action: u8,
        iekey: bool,
        t: u8,
        crkey: u64,
    ) -> Status {
        match self.regs.get(host) {
            Some((k, _)) if iekey || *k == crkey => {}
            _ => return CONFLICT,
        }
        match action {
            0 => {
                if let Some((_, ht)) = &self.holder {
                    if self.holds(host) {
                        if *ht != t {
                            return INVALID_FIELD;
                        }
                        self.holder = None;
                    }
                }
            }
            1 => {
                self.holder = None;
                self.regs.clear();
                self.gen = self.gen.wrapping_add(1);
            }
            _ => return INVALID_FIELD,
        }
        Status::SUCCESS
    }
}

/// Controller id recorded for a registrant that registered in-process
/// (no controller): "none or several" in reports.
const NO_CNTLID: u16 = 0xffff;

impl Reservation {
    /// Registers `key` for `host` (replacing another key of the same host)
    /// and acquires a reservation of type `t`, preempting the holders
    /// registered with `preempt_key` when it is not 0 and not `key`. When
    /// nobody holds a reservation after the preempt, `host` acquires it.
    /// `t == 0` only registers. One step under one lock: no other host's
    /// command can come between the register and the acquire.
    pub(crate) fn take(&mut self, host: &HostKey, key: u64, preempt_key: u64, t: u8) -> Status {
        let mut st = self.register(host, NO_CNTLID, 0, false, 0, key);
        if st == CONFLICT {
            st = self.register(host, NO_CNTLID, 2, true, 0, key);
        }
        if !st.is_success() || t == 0 {
            return st;
        }
        if preempt_key != 0 && preempt_key != key {
            let st = self.acquire(host, 1, false, t, key, preempt_key);
            if !st.is_success() || self.holder.is_some() {
                return st;
            }
        }
        self.acquire(host, 0, false, t, key, 0)
    }
}

/// A controller: created by an admin-queue Connect, lives as long as that
/// connection.
pub(crate) struct Controller {
    pub cntlid: u16,
    pub host: HostKey,
    /// `None` for a discovery controller.
    pub subsys: Option<Arc<Subsystem>>,
    pub kato_ms: AtomicU32,
    pub cc: AtomicU32,
    pub csts: AtomicU32,
    pub aec: AtomicU32,
    pub io_queues: Mutex<HashSet<u16>>,
    /// Allocated I/O queues (Set Features Number of Queues), 1-based.
    pub nr_io_queues: AtomicU32,
    pub cancel: CancellationToken,
}

/// One NVM subsystem with one namespace.
pub(crate) struct Subsystem {
    pub nqn: String,
    pub dev: SharedDevice,
    pub uuid: uuid::Uuid,
    pub(crate) allowed: RwLock<Vec<String>>,
    pub ctrls: Mutex<HashMap<u16, Arc<Controller>>>,
    pub resv: Mutex<Reservation>,
    /// Some host is registered: I/O must check the reservation.
    pub resv_active: AtomicBool,
    /// ANA state of the namespace's group.
    pub ana: Ana,
    pub cancel: CancellationToken,
    conns: AtomicUsize,
    /// Effective controller-ID window (for reports).
    window: (u16, u16),
    /// The subsystem's own allocator; `None`: the target's.
    pub own_cntlids: Option<Mutex<CntlidAlloc>>,
}

impl Subsystem {
    /// `window` is the subsystem's own when `own_window`, else a copy of
    /// the target's (reported only).
    pub(crate) fn new(
        nqn: &str,
        dev: SharedDevice,
        uuid: uuid::Uuid,
        allowed: Vec<String>,
        window: (u16, u16),
        own_window: bool,
    ) -> Self {
        Self {
            window,
            own_cntlids: own_window.then(|| Mutex::new(CntlidAlloc::new(window.0, window.1))),
            nqn: nqn.to_owned(),
            dev,
            uuid,
            allowed: RwLock::new(allowed),
            ctrls: Mutex::new(HashMap::new()),
            resv: Mutex::new(Reservation::default()),
            resv_active: AtomicBool::new(false),
            ana: Ana::new(),
            cancel: CancellationToken::new(),
            conns: AtomicUsize::new(0),
        }
    }
    /// Replaces the allow-list; controllers of hosts no longer allowed are
    /// torn down (their queues close, their I/O ends with errors).
    pub(crate) fn set_allowed(&self, hosts: Vec<String>) {
        *locks::write("allowed hosts", &self.allowed) = hosts;
        for c in locks::lock("controllers", &self.ctrls).values() {
            if !self.allows(&c.host.hostnqn) {
                c.cancel.cancel();
            }
        }
    }
    pub(crate) fn allows(&self, hostnqn: &str) -> bool {
        locks::read("allowed hosts", &self.allowed)
            .iter()
            .any(|h| h == hostnqn)
    }
    pub(crate) fn shutdown(&self) {
        self.cancel.cancel();
    }
    pub(crate) fn connections(&self) -> usize {
        self.conns.load(Ordering::Acquire)
    }
    /// Counts a connection attached to this subsystem until the guard drops.
    pub(crate) fn attach(self: &Arc<Self>) -> ConnGuard {
        self.conns.fetch_add(1, Ordering::AcqRel);
        ConnGuard(self.clone())
    }
    /// The controller id each connected host uses now (0xffff for a
    /// host with several controllers), for Reservation Report.
    pub(crate) fn live_cntlids(&self) -> HashMap<HostKey, u16> {
        let mut m: HashMap<HostKey, u16> = HashMap::new();
        let ctrls = locks::lock("controllers", &self.ctrls);
        for c in ctrls.values().filter(|c| !c.cancel.is_cancelled()) {
            m.entry(c.host.clone())
                .and_modify(|id| *id = 0xffff)
                .or_insert(c.cntlid);
        }
        m
    }

    /// [`Reservation::take`] in-process, keeping `resv_active` in step.
    pub(crate) fn take_reservation(
        &self,
        host: &HostKey,
        key: u64,
        preempt_key: u64,
        t: u8,
    ) -> Status {
        let Ok(mut r) = self.resv.lock() else {
            return Status::retry(sct::GENERIC, sc::INTERNAL);
        };
        let st = r.take(host, key, preempt_key, t);
        self.resv_active
            .store(!r.regs.is_empty() || r.holder.is_some(), Ordering::Release);
        st
    }

    pub(crate) fn info(&self) -> SubsystemInfo {
        let info = self.dev.info();
        let mut hosts: Vec<(String, u16)> = locks::lock("controllers", &self.ctrls)
            .values()
            .map(|c| (c.host.hostnqn.clone(), c.cntlid))
            .collect();
        hosts.sort();
        SubsystemInfo {
            nqn: self.nqn.clone(),
            size_bytes: info.size_bytes(),
            block_size: info.block_size,
            allowed_hosts: locks::read("allowed hosts", &self.allowed).clone(),
            hosts,
            cntlid_min: self.window.0,
            cntlid_max: self.window.1,
            ana_state: self.ana.state(),
            ana_change_count: self.ana.change_count(),
        }
    }
}

pub(crate) struct ConnGuard(Arc<Subsystem>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cntlids_are_unique_and_recycled_round_robin() {
        let mut a = CntlidAlloc::new(5, 7);
        assert_eq!(a.alloc(), Some(5));
        assert_eq!(a.alloc(), Some(6));
        assert_eq!(a.alloc(), Some(7));
        assert_eq!(a.alloc(), None);
        a.free(6);
        assert_eq!(a.alloc(), Some(6));
    }

    #[test]
    fn exclusive_access_preempt_fences_old_holder() {
        let a = HostKey {
            hostid: [1; 16],
            hostnqn: "a".into(),
        };
        let b = HostKey {
            hostid: [2; 16],
            hostnqn: "b".into(),
        };
        let mut r = Reservation::default();
        assert!(r.register(&a, 1, 0, false, 0, 10).is_success());
        assert!(r
            .acquire(&a, 0, false, rtype::EXCLUSIVE_ACCESS, 10, 0)
            .is_success());
        assert!(!r.allows(&b, false));
        assert!(r.register(&b, 2, 0, false, 0, 20).is_success());
        assert_eq!(
            r.acquire(&b, 0, false, rtype::EXCLUSIVE_ACCESS, 20, 0),
            CONFLICT
        );
        assert!(r
            .acquire(&b, 1, false, rtype::EXCLUSIVE_ACCESS, 20, 10)
            .is_success());
        assert!(r.allows(&b, true));
        assert!(!r.allows(&a, false));
        assert!(!r.regs.contains_key(&a));
        assert!(r
            .release(&b, 0, false, rtype::EXCLUSIVE_ACCESS, 20)
            .is_success());
        assert!(r.allows(&a, true));
    }

    fn host(n: u8) -> HostKey {
        HostKey {
            hostid: [n; 16],
            hostnqn: format!("h{n}"),
        }
    }

    #[test]
    fn preempt_without_a_reservation_only_unregisters() {
        let (a, b) = (host(1), host(2));
        let mut r = Reservation::default();
        assert!(r.register(&a, 1, 0, false, 0, 10).is_success());
        assert!(r.register(&b, 2, 0, false, 0, 20).is_success());
        assert_eq!(
            r.acquire(&b, 1, false, rtype::EXCLUSIVE_ACCESS, 20, 0),
            INVALID_FIELD
        );
        assert!(r
            .acquire(&b, 1, false, rtype::EXCLUSIVE_ACCESS, 20, 10)
            .is_success());
        assert!(r.holder.is_none());
        assert!(!r.regs.contains_key(&a));
        // A replayed preempt is harmless.
        assert!(r
            .acquire(&b, 1, false, rtype::EXCLUSIVE_ACCESS, 20, 10)
            .is_success());
    }

    #[test]
    fn all_registrants_reservations_follow_the_registrants() {
        let (a, b, c) = (host(1), host(2), host(3));
        let t = rtype::EXCLUSIVE_ACCESS_ALL_REGS;
        let mut r = Reservation::default();
        for (h, k) in [(&a, 10), (&b, 20)] {
            assert!(r.register(h, 1, 0, false, 0, k).is_success());
        }
        assert!(r.acquire(&a, 0, false, t, 10, 0).is_success());
        // Every registrant holds: B may acquire the same type, do I/O
        // and is reported as holding; C (unregistered) is kept out.
        assert!(r.acquire(&b, 0, false, t, 20, 0).is_success());
        assert!(r.allows(&b, true) && !r.allows(&c, false));
        let (_, rt, regs) = r.report(|_| 0xffff);
        assert_eq!(rt, t);
        assert!(regs.iter().all(|g| g.holds));
        // The acquiring host leaves: the reservation stays with B.
        assert!(r.register(&a, 1, 1, false, 10, 0).is_success());
        assert_eq!(r.holder.as_ref().map(|(h, t)| (h, *t)), Some((&b, t)));
        // Any holder may release it.
        assert!(r.register(&c, 3, 0, false, 0, 30).is_success());
        assert!(r.release(&c, 0, false, t, 30).is_success());
        assert!(r.holder.is_none());
        // Preempt with key 0 takes it over and drops everyone else.
        assert!(r.acquire(&b, 0, false, t, 20, 0).is_success());
        assert!(r
            .acquire(&c, 1, false, rtype::WRITE_EXCLUSIVE, 30, 0)
            .is_success());
        assert_eq!(r.regs.len(), 1);
        assert_eq!(
            r.holder.as_ref().map(|(h, t)| (h, *t)),
            Some((&c, rtype::WRITE_EXCLUSIVE))
        );
    }

    #[test]
    fn an_in_process_take_preempts_the_old_holder_in_one_step() {
        let (a, b) = (host(1), host(2));
        let t = rtype::EXCLUSIVE_ACCESS;
        let mut r = Reservation::default();
        // The old target registered and holds with key 1.
        assert!(r.take(&a, 1, 0, t).is_success());
        assert!(r.allows(&a, true));
        // Taking again is harmless.
        assert!(r.take(&a, 1, 0, t).is_success());
        // The new target: key 2 preempting 1.
        assert!(r.take(&b, 2, 1, t).is_success());
        assert!(r.allows(&b, true));
        assert!(!r.allows(&a, true) && !r.allows(&a, false));
        assert!(!r.regs.contains_key(&a));
        // A host registered under another key is re-keyed.
        assert!(r.take(&b, 3, 0, t).is_success());
        assert_eq!(r.regs.get(&b).map(|(k, _)| *k), Some(3));
        assert!(r.allows(&b, true));
        // Preempting a key nobody holds still leaves the taker holding.
        let mut r = Reservation::default();
        assert!(r.take(&b, 5, 4, t).is_success());
        assert!(r.allows(&b, true) && !r.allows(&a, false));
        // Without a type: registered only.
        let mut r = Reservation::default();
        assert!(r.take(&a, 7, 0, 0).is_success());
        assert!(r.holder.is_none() && r.regs.contains_key(&a));
    }

    #[test]
    fn unregistering_holder_releases_and_report_uses_live_ids() {
        let (a, b) = (host(1), host(2));
        let mut r = Reservation::default();
        assert!(r.register(&a, 7, 0, false, 0, 10).is_success());
        assert!(r.register(&b, 8, 0, false, 0, 20).is_success());
        assert!(r
            .acquire(&a, 0, false, rtype::WRITE_EXCLUSIVE, 10, 0)
            .is_success());
        let (gen, _, regs) = r.report(|k| if k == &a { 9 } else { 0xffff });
        assert_eq!(gen, 2);
        assert_eq!(
            regs.iter().map(|g| (g.cntlid, g.holds)).collect::<Vec<_>>(),
            vec![(9, true), (0xffff, false)]
        );
        assert!(r.register(&a, 7, 1, true, 0, 0).is_success());
        assert!(r.holder.is_none());
        assert!(r.allows(&a, true));
    }
}
