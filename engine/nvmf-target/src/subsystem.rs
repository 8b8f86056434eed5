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

/// What [`crate::Target::subsystems`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemInfo {
    pub nqn: String,
    pub size_bytes: u64,
    pub block_size: u32,
    pub allowed_hosts: Vec<String>,
    /// Connected hosts: `(host nqn, controller id)`.
    pub hosts: Vec<(String, u16)>,
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

#[derive(Debug, Default)]
pub(crate) struct Reservation {
    pub gen: u32,
    /// Registered hosts and their keys.
    pub regs: HashMap<HostKey, (u64, u16)>,
    /// Holder and type.
    pub holder: Option<(HostKey, u8)>,
}

impl Reservation {
    /// Whether `host` may read (`write == false`) or write.
    pub(crate) fn allows(&self, host: &HostKey, write: bool) -> bool {
        let Some((holder, t)) = &self.holder else {
            return true;
        };
        let registered = self.regs.contains_key(host);
        let is_holder = holder == host
            || (matches!(
                *t,
                rtype::WRITE_EXCLUSIVE_ALL_REGS | rtype::EXCLUSIVE_ACCESS_ALL_REGS
            ) && registered);
        if is_holder {
            return true;
        }
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

    pub(crate) fn report(&self) -> (u32, u8, Vec<Registrant>) {
        let t = self.holder.as_ref().map(|(_, t)| *t).unwrap_or(0);
        let regs = self
            .regs
            .iter()
            .map(|(k, (key, cntlid))| Registrant {
                cntlid: *cntlid,
                holds: self.holder.as_ref().is_some_and(|(h, _)| h == k),
                hostid: k.hostid,
                rkey: *key,
            })
            .collect();
        (self.gen, t, regs)
    }
}

const CONFLICT: Status = Status::dnr(sct::GENERIC, sc::RESERVATION_CONFLICT);
const INVALID_FIELD: Status = Status::dnr(sct::GENERIC, sc::INVALID_FIELD);

/// Reservation Register / Acquire / Release semantics.
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
                    if self.holder.as_ref().is_some_and(|(h, _)| h == host) {
                        self.holder = None;
                    }
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
                Some((h, ht)) if h == host && *ht == t => {}
                Some(_) => return CONFLICT,
            },
            1 | 2 => {
                let holder_key = self
                    .holder
                    .as_ref()
                    .and_then(|(h, _)| self.regs.get(h).map(|(k, _)| *k));
                if self.holder.is_none() || holder_key == Some(prkey) {
                    // Preempt: drop every registrant with PRKEY (but not us).
                    self.regs.retain(|k, (key, _)| k == host || *key != prkey);
                    self.holder = Some((host.clone(), t));
                } else {
                    if prkey == 0 {
                        return INVALID_FIELD;
                    }
                    self.regs.retain(|k, (key, _)| k == host || *key != prkey);
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
                if let Some((h, ht)) = &self.holder {
                    if h == host {
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
    allowed: RwLock<Vec<String>>,
    pub ctrls: Mutex<HashMap<u16, Arc<Controller>>>,
    pub resv: Mutex<Reservation>,
    /// Some host is registered: I/O must check the reservation.
    pub resv_active: AtomicBool,
    pub cancel: CancellationToken,
    conns: AtomicUsize,
}

impl Subsystem {
    pub(crate) fn new(
        nqn: &str,
        dev: SharedDevice,
        uuid: uuid::Uuid,
        allowed: Vec<String>,
    ) -> Self {
        Self {
            nqn: nqn.to_owned(),
            dev,
            uuid,
            allowed: RwLock::new(allowed),
            ctrls: Mutex::new(HashMap::new()),
            resv: Mutex::new(Reservation::default()),
            resv_active: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            conns: AtomicUsize::new(0),
        }
    }
    /// Replaces the allow-list; controllers of hosts no longer allowed are
    /// torn down (their queues close, their I/O ends with errors).
    pub(crate) fn set_allowed(&self, hosts: Vec<String>) {
        if let Ok(mut a) = self.allowed.write() {
            *a = hosts;
        }
        if let Ok(ctrls) = self.ctrls.lock() {
            for c in ctrls.values() {
                if !self.allows(&c.host.hostnqn) {
                    c.cancel.cancel();
                }
            }
        }
    }
    pub(crate) fn allows(&self, hostnqn: &str) -> bool {
        self.allowed
            .read()
            .map(|a| a.iter().any(|h| h == hostnqn))
            .unwrap_or(false)
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
    pub(crate) fn info(&self) -> SubsystemInfo {
        let info = self.dev.info();
        let mut hosts: Vec<(String, u16)> = self
            .ctrls
            .lock()
            .map(|c| {
                c.values()
                    .map(|c| (c.host.hostnqn.clone(), c.cntlid))
                    .collect()
            })
            .unwrap_or_default();
        hosts.sort();
        SubsystemInfo {
            nqn: self.nqn.clone(),
            size_bytes: info.size_bytes(),
            block_size: info.block_size,
            allowed_hosts: self.allowed.read().map(|a| a.clone()).unwrap_or_default(),
            hosts,
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
}
