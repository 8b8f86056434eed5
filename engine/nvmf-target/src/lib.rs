//! NVMe/TCP target: serves [`blockdev::dynamic::SharedDevice`]s as NVMe-oF
//! namespaces (one namespace, NSID 1, per subsystem) to the Linux kernel
//! host and to our own initiator. Wire format from the `nvmf` codec crate.
//!
//! Structure:
//! - [`Target`]: listener, subsystem table, the target-wide controller-ID
//!   allocator, counters. `serve` runs the accept loop;
//! - `subsystem`: subsystems, controllers, reservations;
//! - `ana`: the ANA state of a subsystem's namespace (OPTIMIZED by
//!   default; INACCESSIBLE turns a multipath host to another path), its
//!   log page and change notices;
//! - `conn`: one task per TCP connection (= one queue): ICReq, Connect,
//!   Fabrics/admin commands, R2T/H2CData, keep-alive; a writer task per
//!   connection drains a bounded channel of encoded PDUs;
//! - `io`: execution of NVM I/O commands against the device.
//!
//! Invariants:
//! - a controller id is unique within its subsystem while the controller
//!   lives and is recycled after (round robin, so a just-freed id is not
//!   reused at once). It comes from the subsystem's own window when it was
//!   added with one ([`SubsystemOptions`]), otherwise from the target's
//!   window `[cntlid_min, cntlid_max]` (shared by every such subsystem and
//!   the discovery controllers);
//! - allow-list semantics: an empty list admits nobody; the discovery
//!   subsystem admits every host but lists only the subsystems that host
//!   may connect to;
//! - a controller lives as long as its admin queue connection; when it
//!   goes (disconnect, keep-alive timeout, subsystem removal, target
//!   shutdown) every I/O queue of the controller is closed too;
//! - nothing on the input path panics: malformed PDUs end the connection
//!   with a C2HTermReq, malformed commands complete with an error status.
//!
//! Threading: tokio, multi-thread runtime. Shared state lives behind
//! `std::sync` locks that are never held across an `.await`; per-I/O paths
//! touch only atomics (and the reservation lock only while a reservation
//! is registered).

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod ana;
mod conn;
mod io;
mod locks;
mod subsystem;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use blockdev::dynamic::SharedDevice;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use ana::{AnaState, ANA_GROUP};
use subsystem::{CntlidAlloc, Subsystem};
pub use subsystem::{SubsystemInfo, SubsystemOptions};

/// Configuration of a target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Controller-ID window (inclusive), within 1..=0xffef, of the
    /// discovery controllers and of every subsystem added without a window
    /// of its own (see [`SubsystemOptions`]).
    pub cntlid_min: u16,
    pub cntlid_max: u16,
    /// I/O queues per controller.
    pub max_io_queues: u16,
    /// Entries per queue (CAP.MQES + 1, MAXCMD).
    pub max_queue_depth: u16,
    /// In-capsule data accepted on I/O queues (IOCCSZ), at least 4096.
    pub in_capsule_data_bytes: u32,
    /// MAXH2CDATA advertised in ICResp (and the R2T size).
    pub max_h2c_data_bytes: u32,
    /// Largest transfer of one command (MDTS), a power of two >= 4096.
    pub mdts_bytes: u32,
    /// Smallest keep-alive timeout accepted; smaller values are raised.
    pub keep_alive_min_ms: u32,
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8420)),
            cntlid_min: 1,
            cntlid_max: 0xffef,
            max_io_queues: 8,
            max_queue_depth: 128,
            in_capsule_data_bytes: 8192,
            max_h2c_data_bytes: 1 << 20,
            mdts_bytes: 1 << 20,
            keep_alive_min_ms: 1000,
            model: "Mayastor NVMe controller".into(),
            serial: "mayastor-rs".into(),
            firmware: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Errors of the target's management API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    #[error("subsystem {nqn} already exists")]
    AlreadyExists { nqn: String },
    #[error("subsystem {nqn} not found")]
    NotFound { nqn: String },
    #[error("invalid nqn {nqn:?}")]
    InvalidNqn { nqn: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "invalid controller-id window {min}..={max}: it must lie within 1..=0xffef with min <= max"
    )]
    InvalidCntlidWindow { min: u16, max: u16 },
    #[error("subsystem {nqn}: reservation refused (status code {status:#05x})")]
    Reservation { nqn: String, status: u16 },
}

/// Highest controller id a window may contain (0xfff0..=0xffff are
/// reserved by NVMe-oF).
pub const CNTLID_MAX: u16 = 0xffef;

/// Event counters (monotonic).
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_accepted: AtomicU64,
    pub connections_closed: AtomicU64,
    pub controllers_created: AtomicU64,
    pub keep_alive_timeouts: AtomicU64,
    pub commands: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub r2ts: AtomicU64,
    pub error_completions: AtomicU64,
    pub term_reqs_sent: AtomicU64,
    pub protocol_errors: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub controllers_created: u64,
    pub keep_alive_timeouts: u64,
    pub commands: u64,
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub r2ts: u64,
    pub error_completions: u64,
    pub term_reqs_sent: u64,
    pub protocol_errors: u64,
}

pub(crate) struct Inner {
    pub(crate) cfg: TargetConfig,
    local: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    pub(crate) subsystems: RwLock<HashMap<String, Arc<Subsystem>>>,
    pub(crate) cntlids: Mutex<CntlidAlloc>,
    pub(crate) counters: Counters,
    /// Discovery log generation counter (bumped on every change).
    pub(crate) genctr: AtomicU64,
}

impl Inner {
    pub(crate) fn subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        locks::read("subsystems", &self.subsystems)
            .get(nqn)
            .cloned()
    }

    /// A controller id for a new controller of `subsys` (`None`: the
    /// discovery subsystem): from the subsystem's own window if it has
    /// one, else from the target's. `None` when the window is exhausted.
    pub(crate) fn alloc_cntlid(&self, subsys: Option<&Subsystem>) -> Option<u16> {
        match subsys.and_then(|s| s.own_cntlids.as_ref()) {
            Some(a) => locks::lock("cntlids", a).alloc(),
            None => locks::lock("cntlids", &self.cntlids).alloc(),
        }
    }

    /// Returns `id` to the allocator it came from.
    pub(crate) fn free_cntlid(&self, subsys: Option<&Subsystem>, id: u16) {
        let mut a = match subsys.and_then(|s| s.own_cntlids.as_ref()) {
            Some(a) => locks::lock("cntlids", a),
            None => locks::lock("cntlids", &self.cntlids),
        };
        a.free(id);
    }
}

/// The NVMe/TCP target. Cheap to clone.
#[derive(Clone)]
pub struct Target {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("local", &self.inner.local)
            .finish()
    }
}

fn check_nqn(nqn: &str) -> Result<(), TargetError> {
    if nqn.is_empty()
        || nqn.len() > nvmf::NQN_MAX_LEN
        || !nqn.starts_with("nqn.")
        || nqn == nvmf::DISCOVERY_NQN
    {
        return Err(TargetError::InvalidNqn {
            nqn: nqn.to_owned(),
        });
    }
    Ok(())
}

impl Target {
    /// Validates `cfg` and binds the listener.
    pub async fn bind(cfg: TargetConfig) -> std::io::Result<Target> {
        let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_owned());
        if cfg.cntlid_min == 0 || cfg.cntlid_min > cfg.cntlid_max || cfg.cntlid_max > CNTLID_MAX {
            return Err(invalid("controller-id window must lie within 1..=0xffef"));
        }
        if cfg.in_capsule_data_bytes < 4096 || !cfg.in_capsule_data_bytes.is_multiple_of(16) {
            return Err(invalid(
                "in_capsule_data_bytes must be >= 4096 and a multiple of 16",
            ));
        }
        if cfg.max_h2c_data_bytes < nvmf::pdu::MIN_MAXH2CDATA
            || !cfg.max_h2c_data_bytes.is_multiple_of(4)
        {
            return Err(invalid(
                "max_h2c_data_bytes must be >= 4096 and a multiple of 4",
            ));
        }
        if cfg.mdts_bytes < 4096 || !cfg.mdts_bytes.is_power_of_two() {
            return Err(invalid("mdts_bytes must be a power of two >= 4096"));
        }
        if cfg.max_queue_depth < 2 || cfg.max_io_queues == 0 {
            return Err(invalid(
                "max_queue_depth must be >= 2 and max_io_queues >= 1",
            ));
        }
        let listener = TcpListener::bind(cfg.listen).await?;
        let local = listener.local_addr()?;
        let cntlids = CntlidAlloc::new(cfg.cntlid_min, cfg.cntlid_max);
        Ok(Target {
            inner: Arc::new(Inner {
                cfg,
                local,
                listener: Mutex::new(Some(listener)),
                subsystems: RwLock::new(HashMap::new()),
                cntlids: Mutex::new(cntlids),
                counters: Counters::default(),
                genctr: AtomicU64::new(1),
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Accepts connections until `cancel` fires, then closes every
    /// connection and waits (bounded) for their tasks. A second call
    /// returns at once.
    pub async fn serve(&self, cancel: CancellationToken) {
        let listener = locks::lock("listener", &self.inner.listener).take();
        let Some(listener) = listener else {
            tracing::warn!("nvmf target: serve called twice");
            return;
        };
        tracing::info!(addr = %self.inner.local, "nvmf target listening");
        let tracker = TaskTracker::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((sock, peer)) => {
                        self.inner.counters.connections_accepted.fetch_add(1, Ordering::Relaxed);
                        let inner = self.inner.clone();
                        let token = cancel.child_token();
                        tracker.spawn(conn::run(inner, sock, peer, token));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "nvmf target: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("nvmf target: connections still closing after 10 s");
        }
        tracing::info!(addr = %self.inner.local, "nvmf target stopped");
    }

    /// Adds a subsystem exporting `ns` as NSID 1; its controllers take
    /// ids from the target's window.
    pub fn add_subsystem(
        &self,
        nqn: &str,
        ns: SharedDevice,
        ns_uuid: uuid::Uuid,
        allowed_hosts: Vec<String>,
    ) -> Result<(), TargetError> {
        self.add_subsystem_with(
            nqn,
            ns,
            ns_uuid,
            SubsystemOptions {
                allowed_hosts,
                ..SubsystemOptions::default()
            },
        )
    }

    /// Adds a subsystem exporting `ns` as NSID 1 with `opts`.
    ///
    /// When `opts` sets `cntlid_min` or `cntlid_max`, the subsystem gets a
    /// controller-ID window of its own (a bound left `None` is the
    /// target's) and its controllers take ids only from it; a window
    /// outside 1..=0xffef or with min > max is refused with
    /// [`TargetError::InvalidCntlidWindow`] and nothing is added.
    pub fn add_subsystem_with(
        &self,
        nqn: &str,
        ns: SharedDevice,
        ns_uuid: uuid::Uuid,
        opts: SubsystemOptions,
    ) -> Result<(), TargetError> {
        check_nqn(nqn)?;
        let cfg = &self.inner.cfg;
        let own_window = if opts.cntlid_min.is_some() || opts.cntlid_max.is_some() {
            let min = opts.cntlid_min.unwrap_or(cfg.cntlid_min);
            let max = opts.cntlid_max.unwrap_or(cfg.cntlid_max);
            if min == 0 || min > max || max > CNTLID_MAX {
                return Err(TargetError::InvalidCntlidWindow { min, max });
            }
            Some((min, max))
        } else {
            None
        };
        let mut map = locks::write("subsystems", &self.inner.subsystems);
        if map.contains_key(nqn) {
            return Err(TargetError::AlreadyExists {
                nqn: nqn.to_owned(),
            });
        }
        let window = own_window.unwrap_or((cfg.cntlid_min, cfg.cntlid_max));
        map.insert(
            nqn.to_owned(),
            Arc::new(Subsystem::new(
                nqn,
                ns,
                ns_uuid,
                opts.allowed_hosts,
                window,
                own_window.is_some(),
            )),
        );
        self.inner.genctr.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            nqn,
            cntlid_min = window.0,
            cntlid_max = window.1,
            "nvmf subsystem added"
        );
        Ok(())
    }

    /// Replaces the allow-list of a subsystem; hosts that lose access are
    /// disconnected (their I/O ends with errors).
    pub fn set_allowed_hosts(&self, nqn: &str, hosts: Vec<String>) -> Result<(), TargetError> {
        let s = self
            .inner
            .subsystem(nqn)
            .ok_or_else(|| TargetError::NotFound {
                nqn: nqn.to_owned(),
            })?;
        s.set_allowed(hosts);
        self.inner.genctr.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes a subsystem: its controllers are torn down (outstanding I/O
    /// is dropped, connections close). Waits at most 5 s for them.
    pub async fn remove_subsystem(&self, nqn: &str) -> Result<(), TargetError> {
        let removed = locks::write("subsystems", &self.inner.subsystems).remove(nqn);
        let s = removed.ok_or_else(|| TargetError::NotFound {
            nqn: nqn.to_owned(),
        })?;
        self.inner.genctr.fetch_add(1, Ordering::Relaxed);
        s.shutdown();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while s.connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(nqn, remaining = s.connections(), "nvmf subsystem removed");
        Ok(())
    }

    /// Sets the ANA state of subsystem `nqn`'s namespace group; returns the
    /// previous state. A change bumps the ANA change count and sends an
    /// ANA change notice on every admin queue of the subsystem that enabled
    /// it (a host then reads the ANA log page). While the state is not
    /// (non-)optimized, namespace commands end with the matching path
    /// status (DNR clear), which a multipath host retries elsewhere.
    pub fn set_ana_state(&self, nqn: &str, state: AnaState) -> Result<AnaState, TargetError> {
        let s = self
            .inner
            .subsystem(nqn)
            .ok_or_else(|| TargetError::NotFound {
                nqn: nqn.to_owned(),
            })?;
        let prev = s.ana.set(state);
        if prev != state {
            tracing::info!(nqn, from = %prev, to = %state, "nvmf subsystem ANA state changed");
        }
        Ok(prev)
    }

    /// The ANA state of subsystem `nqn`'s namespace group.
    pub fn ana_state(&self, nqn: &str) -> Result<AnaState, TargetError> {
        self.inner
            .subsystem(nqn)
            .map(|s| s.ana.state())
            .ok_or_else(|| TargetError::NotFound {
                nqn: nqn.to_owned(),
            })
    }

    /// Takes the NVMe reservation of subsystem `nqn`'s namespace
    /// in-process, as the host `(host_nqn, host_id)` would with Reservation
    /// Register and Acquire over the wire: `key` is registered (replacing
    /// another key of that host) and a reservation of type `rtype` (NVMe
    /// value; 0: register only) acquired, preempting the hosts registered
    /// with `preempt_key` (0: none). From then on the preempted hosts'
    /// commands end with a reservation conflict. For a process that uses
    /// the namespace's device directly (a nexus on the replica's own
    /// engine) and must fence the hosts that reach it over NVMe/TCP.
    pub fn take_reservation(
        &self,
        nqn: &str,
        host_nqn: &str,
        host_id: [u8; 16],
        key: u64,
        preempt_key: u64,
        rtype: u8,
    ) -> Result<(), TargetError> {
        let s = self
            .inner
            .subsystem(nqn)
            .ok_or_else(|| TargetError::NotFound {
                nqn: nqn.to_owned(),
            })?;
        let host = subsystem::HostKey {
            hostid: host_id,
            hostnqn: host_nqn.to_owned(),
        };
        let st = s.take_reservation(&host, key, preempt_key, rtype);
        if st.is_success() {
            Ok(())
        } else {
            Err(TargetError::Reservation {
                nqn: nqn.to_owned(),
                status: st.code(),
            })
        }
    }

    /// Every subsystem with its namespace geometry and connected hosts.
    pub fn subsystems(&self) -> Vec<SubsystemInfo> {
        let map = locks::read("subsystems", &self.inner.subsystems);
        let mut v: Vec<SubsystemInfo> = map.values().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.nqn.cmp(&b.nqn));
        v
    }

    /// A snapshot of the event counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            connections_accepted: l(&c.connections_accepted),
            connections_closed: l(&c.connections_closed),
            controllers_created: l(&c.controllers_created),
            keep_alive_timeouts: l(&c.keep_alive_timeouts),
            commands: l(&c.commands),
            reads: l(&c.reads),
            writes: l(&c.writes),
            read_bytes: l(&c.read_bytes),
            write_bytes: l(&c.write_bytes),
            r2ts: l(&c.r2ts),
            error_completions: l(&c.error_completions),
            term_reqs_sent: l(&c.term_reqs_sent),
            protocol_errors: l(&c.protocol_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Poisons `m` by panicking on another thread while holding it.
    fn poison<T: Send>(m: &Mutex<T>) {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _g = m.lock();
                    panic!("poisoning the lock on purpose");
                })
                .join();
        });
        assert!(m.is_poisoned());
    }

    fn poison_rw<T: Send + Sync>(l: &RwLock<T>) {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _g = l.write();
                    panic!("poisoning the lock on purpose");
                })
                .join();
        });
        assert!(l.is_poisoned());
    }

    #[tokio::test]
    async fn poisoned_locks_are_not_read_as_not_found() {
        let t = Target::bind(TargetConfig {
            listen: SocketAddr::from(([127, 0, 90, 10], 0)),
            cntlid_min: 5,
            cntlid_max: 6,
            ..TargetConfig::default()
        })
        .await
        .unwrap();
        let dev = blockdev::open_uri("malloc:///poison?size_mb=4", &Default::default())
            .await
            .unwrap();
        let nqn = "nqn.2019-05.io.openebs:poison";
        t.add_subsystem(
            nqn,
            Arc::new(dev),
            uuid::Uuid::new_v4(),
            vec!["nqn.h".into()],
        )
        .unwrap();
        let inner = &t.inner;
        poison_rw(&inner.subsystems);
        poison(&inner.cntlids);
        let s = inner
            .subsystem(nqn)
            .expect("subsystem found through a poisoned table");
        poison(&s.ctrls);
        poison_rw(&s.allowed);
        assert!(s.allows("nqn.h"), "allow-list read through a poisoned lock");
        assert_eq!(s.info().allowed_hosts, vec!["nqn.h".to_string()]);
        assert_eq!(t.subsystems().len(), 1, "listed through a poisoned table");
        assert_eq!(inner.alloc_cntlid(Some(&s)), Some(5), "ids not exhausted");
        inner.free_cntlid(Some(&s), 5);
        assert!(matches!(
            t.add_subsystem(nqn, s.dev.clone(), uuid::Uuid::new_v4(), Vec::new()),
            Err(TargetError::AlreadyExists { .. })
        ));
        t.remove_subsystem(nqn)
            .await
            .expect("removed, not 'not found'");
        assert!(matches!(
            t.remove_subsystem(nqn).await,
            Err(TargetError::NotFound { .. })
        ));
    }
}
