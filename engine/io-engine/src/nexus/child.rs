//! Nexus children: their URIs, states and devices.
//!
//! A child is named by a URI: `bdev:///<replica-uuid>?uuid=<uuid>` for a
//! replica of this engine, `nvmf://host:port/<nqn>?uuid=<uuid>&hostnqn=...`
//! for a replica exported by another engine. Its uuid is the `uuid`
//! parameter, else the replica uuid of a `bdev:///` path, else the uuid at
//! the end of the NQN.
//!
//! State machine (DESIGN.md section 3):
//! - `Online`: in sync; takes reads and writes;
//! - `Degraded`: being rebuilt; takes writes (so it misses none) but no
//!   reads;
//! - `Faulted(reason)`: out of the I/O path; its device is closed. A child
//!   that was `Online` when it faulted keeps a dirty-region log so that
//!   bringing it back copies only what it missed.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use nvmf_host::{
    AcquireAction, ConnectOptions, Controller, Namespace, RegisterAction, ReservationType,
};
use nvmf_target::{Target, TargetError};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use uuid::Uuid;

use super::{device::ChildDevice, dirty::DirtyLog, ReservationArgs};
use crate::pool::PoolRegistry;

/// State of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildState {
    Online,
    /// Being rebuilt.
    Degraded,
    Faulted,
}

impl std::fmt::Display for ChildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChildState::Online => "online",
            ChildState::Degraded => "degraded",
            ChildState::Faulted => "faulted",
        })
    }
}

/// Why a child is (or was last) not online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FaultReason {
    None,
    /// A read, write or flush failed.
    IoFailure,
    /// A child I/O did not complete within the child I/O timeout.
    TimedOut,
    /// The child's device could not be opened.
    CannotOpen,
    /// Its rebuild failed (destination error or no source left).
    RebuildFailed,
    /// A thin replica ran out of space.
    NoSpace,
    /// Offlined or faulted by a client request.
    ByClient,
    /// Missed writes: needs a full rebuild before it is used.
    OutOfSync,
}

impl std::fmt::Display for FaultReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FaultReason::None => "none",
            FaultReason::IoFailure => "io_failure",
            FaultReason::TimedOut => "timed_out",
            FaultReason::CannotOpen => "cannot_open",
            FaultReason::RebuildFailed => "rebuild_failed",
            FaultReason::NoSpace => "no_space",
            FaultReason::ByClient => "by_client",
            FaultReason::OutOfSync => "out_of_sync",
        })
    }
}

/// The mutable part of a child.
#[derive(Debug, Clone, Copy)]
pub struct ChildStatus {
    pub state: ChildState,
    pub reason: FaultReason,
    pub faulted_at: Option<SystemTime>,
}

/// An open child device and what must be closed with it.
pub struct OpenedChild {
    pub device: ChildDevice,
    /// The namespace of a remote child (its controller is disconnected on
    /// close; reservations are taken through it).
    pub remote: Option<Namespace>,
    /// For a local replica: the engine's NVMe/TCP target that may export
    /// it to other engines (the reservation is taken there in-process).
    pub local: Option<LocalExport>,
}

/// A replica of this engine and the NVMe/TCP target that exports it while
/// it is shared: a nexus using the replica directly takes the volume's
/// reservation on the replica's subsystem in-process, as its own host
/// identity, so that every host reaching the replica over NVMe/TCP with an
/// older key (a previous target of the volume) is preempted.
#[derive(Clone)]
pub struct LocalExport {
    pub target: Target,
    /// The replica's subsystem NQN.
    pub nqn: String,
    /// The engine's host NQN (its host identifier is derived from it, as
    /// for its remote children: see [`host_id`]).
    pub host_nqn: String,
}

/// The host identifier of the engine with host NQN `host_nqn` towards
/// NVMe/TCP targets: stable across restarts, so a restarted engine is the
/// same registrant of its children's reservations.
pub fn host_id(host_nqn: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, host_nqn.as_bytes())
}

/// A boxed open future.
pub type OpenFuture<'a> = Pin<Box<dyn Future<Output = Result<OpenedChild, String>> + Send + 'a>>;

/// Opens child devices by URI.
pub trait ChildOpener: Send + Sync {
    fn open<'a>(&'a self, uri: &'a str, uuid: &'a Uuid) -> OpenFuture<'a>;
}

/// One child of a nexus.
pub struct Child {
    uri: String,
    uuid: Uuid,
    status: Mutex<ChildStatus>,
    device: RwLock<Option<Arc<OpenedChild>>>,
    dirty: Mutex<Option<DirtyLog>>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("uri", &self.uri)
            .field("uuid", &self.uuid)
            .field("status", &*self.status.lock())
            .finish()
    }
}

impl Child {
    pub(crate) fn new(uri: String, uuid: Uuid, status: ChildStatus) -> Self {
        Self {
            uri,
            uuid,
            status: Mutex::new(status),
            device: RwLock::new(None),
            dirty: Mutex::new(None),
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    pub fn status(&self) -> ChildStatus {
        *self.status.lock()
    }

    pub fn state(&self) -> ChildState {
        self.status.lock().state
    }

    pub(crate) fn set_status(&self, state: ChildState, reason: FaultReason) {
        let mut s = self.status.lock();
        if state == ChildState::Faulted && s.state != ChildState::Faulted {
            s.faulted_at = Some(SystemTime::now());
        }
        s.state = state;
        s.reason = reason;
    }

    /// A remote child whose controller is lost for good (its target went
    /// away and did not come back within the reconnect timeout).
    pub fn remote_lost(&self) -> bool {
        self.device
            .read()
            .as_ref()
            .and_then(|o| o.remote.as_ref())
            .is_some_and(|ns| ns.controller().is_lost())
    }

    /// The device, when open.
    pub fn device(&self) -> Option<ChildDevice> {
        self.device.read().as_ref().map(|o| o.device.clone())
    }

    /// The device when the child takes reads (online).
    pub(crate) fn read_device(&self) -> Option<ChildDevice> {
        if self.state() != ChildState::Online {
            return None;
        }
        self.device()
    }

    /// The device when the child takes writes (online or rebuilding), and
    /// whether it is online.
    pub(crate) fn write_device(&self) -> Option<(ChildDevice, bool)> {
        let online = match self.state() {
            ChildState::Online => true,
            ChildState::Degraded => false,
            ChildState::Faulted => return None,
        };
        self.device().map(|d| (d, online))
    }

    pub(crate) fn set_device(&self, opened: OpenedChild) {
        *self.device.write() = Some(Arc::new(opened));
    }

    /// Closes the device: in-flight I/O keeps its own reference; a remote
    /// controller is disconnected in the background.
    pub(crate) fn close(&self) {
        let opened = self.device.write().take();
        if let Some(opened) = opened {
            if let Some(ctrl) = opened.remote.as_ref().map(|ns| ns.controller().clone()) {
                tokio::spawn(async move {
                    if let Err(e) = ctrl.disconnect().await {
                        tracing::debug!(error = %e, "child controller disconnect");
                    }
                });
            }
        }
    }

    /// Starts a dirty-region log (the child just left the I/O path while
    /// in sync).
    pub(crate) fn start_log(&self, size: u64, block_size: u32) {
        *self.dirty.lock() = Some(DirtyLog::new(size, block_size));
    }

    pub(crate) fn drop_log(&self) {
        *self.dirty.lock() = None;
    }

    pub(crate) fn take_log(&self) -> Option<DirtyLog> {
        self.dirty.lock().take()
    }

    pub fn has_log(&self) -> bool {
        self.dirty.lock().is_some()
    }

    /// Marks a region the child missed (no-op without a log).
    pub(crate) fn mark_dirty(&self, offset: u64, len: u64) {
        if let Some(log) = self.dirty.lock().as_mut() {
            log.mark(offset, len);
        }
    }
}

/// The uuid of a child URI (see the module documentation).
pub fn child_uuid(uri: &str) -> Result<Uuid, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("child uri {uri:?} has no scheme"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(v) = pair.strip_prefix("uuid=") {
            return v
                .parse()
                .map_err(|_| format!("child uri {uri:?}: uuid {v:?} is not a uuid"));
        }
    }
    let tail = match scheme {
        "bdev" => path.trim_start_matches('/'),
        "nvmf" => path.rsplit(':').next().unwrap_or(""),
        _ => "",
    };
    tail.parse()
        .map_err(|_| format!("child uri {uri:?} names no uuid (add ?uuid=<uuid>)"))
}

/// Checks a child URI's shape before anything is opened.
pub fn check_child_uri(uri: &str) -> Result<Uuid, String> {
    let uuid = child_uuid(uri)?;
    if let Some(rest) = uri.strip_prefix("bdev:///") {
        let path = rest.split('?').next().unwrap_or("");
        path.parse::<Uuid>()
            .map_err(|_| format!("child uri {uri:?}: bdev:/// must name a replica uuid"))?;
    } else if uri.starts_with("nvmf://") {
        ConnectOptions::from_uri(uri).map_err(|e| format!("child uri {uri:?}: {e}"))?;
    }
    Ok(uuid)
}

/// Opens `bdev:///` children from the engine's pools and `nvmf://` ones
/// through the NVMe/TCP initiator.
pub struct DefaultOpener {
    pub registry: Arc<PoolRegistry>,
    /// Host NQN used when the URI names none.
    pub host_nqn: String,
    /// Per-command timeout of remote children (unless the URI sets one).
    pub io_timeout: Duration,
    /// How long a lost remote child is reconnected before its I/O fails.
    pub reconnect_timeout: Duration,
    /// The engine's NVMe/TCP target, where local replicas are shared (for
    /// the reservation of local children); `None`: no target.
    pub nvmf: Option<Target>,
}

fn has_param(uri: &str, key: &str) -> bool {
    uri.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|p| p.split_once('=').map_or(p, |(k, _)| k) == key)
    })
}

impl ChildOpener for DefaultOpener {
    fn open<'a>(&'a self, uri: &'a str, uuid: &'a Uuid) -> OpenFuture<'a> {
        Box::pin(async move {
            if let Some(rest) = uri.strip_prefix("bdev:///") {
                let replica: Uuid = rest
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| format!("{uri:?} does not name a replica uuid"))?;
                let dev = self
                    .registry
                    .open_replica(&replica)
                    .map_err(|e| e.to_string())?;
                return Ok(OpenedChild {
                    device: ChildDevice::Local(dev),
                    remote: None,
                    local: self.nvmf.as_ref().map(|target| LocalExport {
                        target: target.clone(),
                        nqn: io_engine_api::names::replica_nqn(replica),
                        host_nqn: self.host_nqn.clone(),
                    }),
                });
            }
            if uri.starts_with("nvmf://") {
                let mut opts = ConnectOptions::from_uri(uri).map_err(|e| e.to_string())?;
                if !has_param(uri, "hostnqn") {
                    opts.hostnqn = self.host_nqn.clone();
                }
                if !has_param(uri, "hostid") {
                    // Stable across restarts, so that a restarted engine is
                    // the same registrant of its children's reservations.
                    opts.hostid = host_id(&opts.hostnqn);
                }
                if !has_param(uri, "io_timeout_ms") {
                    opts.io_timeout_ms = millis(self.io_timeout);
                }
                if !has_param(uri, "reconnect_timeout_ms") {
                    opts.reconnect_timeout_ms = millis(self.reconnect_timeout);
                }
                let ctrl = Controller::connect(opts).await.map_err(|e| e.to_string())?;
                let ns = match ctrl.namespace(1).await {
                    Ok(ns) => ns,
                    Err(e) => {
                        let _ = ctrl.disconnect().await;
                        return Err(e.to_string());
                    }
                };
                tracing::debug!(child = %uuid, uri, "remote child connected");
                return Ok(OpenedChild {
                    device: ChildDevice::Remote(Arc::new(ns.clone())),
                    remote: Some(ns),
                    local: None,
                });
            }
            Err(format!(
                "unsupported child uri {uri:?} (bdev:///<replica-uuid> or nvmf://host:port/<nqn>)"
            ))
        })
    }
}

/// Takes the nexus's NVMe reservation on a child: registers `key`
/// (replacing an older key of this host) and acquires the reservation,
/// preempting `preempt_key` when one is given. That fences the previous
/// target of the volume: its writes to the child fail from then on.
///
/// A remote child: over the wire, through its namespace. A local replica:
/// in-process on its subsystem in this engine's target, as this engine's
/// host identity, when the replica is shared (a previous target on another
/// node reached it over NVMe/TCP and may still hold the reservation); an
/// unshared replica is reachable by nobody else and needs nothing. A zero
/// key takes nothing.
pub async fn take_reservation(resv: &ReservationArgs, opened: &OpenedChild) -> Result<(), String> {
    if resv.key == 0 {
        return Ok(());
    }
    if let Some(local) = &opened.local {
        return take_local_reservation(resv, local);
    }
    let Some(ns) = &opened.remote else {
        return Ok(());
    };
    if let Err(e) = ns
        .resv_register(RegisterAction::Register, 0, resv.key, false)
        .await
    {
        if !e.is_reservation_conflict() {
            return Err(format!("reservation register failed: {e}"));
        }
        // Registered already with another key: replace it.
        ns.resv_register(RegisterAction::Replace, 0, resv.key, true)
            .await
            .map_err(|e| format!("reservation register (replace) failed: {e}"))?;
    }
    let Some(rtype) = ReservationType::from_u8(resv.rtype) else {
        return Ok(());
    };
    if resv.preempt_key != 0 && resv.preempt_key != resv.key {
        ns.resv_acquire(AcquireAction::Preempt, rtype, resv.key, resv.preempt_key)
            .await
            .map_err(|e| format!("reservation preempt failed: {e}"))?;
    }
    // A preempt of a key that held nothing (the replica was new to the
    // previous target, or the reservation was lost with a re-export) only
    // unregisters it: acquire too. For the holder this is a no-op.
    ns.resv_acquire(AcquireAction::Acquire, rtype, resv.key, 0)
        .await
        .map_err(|e| format!("reservation acquire failed: {e}"))
}

/// The local half of [`take_reservation`].
fn take_local_reservation(resv: &ReservationArgs, local: &LocalExport) -> Result<(), String> {
    let rtype = ReservationType::from_u8(resv.rtype).map_or(0, |_| resv.rtype);
    match local.target.take_reservation(
        &local.nqn,
        &local.host_nqn,
        *host_id(&local.host_nqn).as_bytes(),
        resv.key,
        resv.preempt_key,
        rtype,
    ) {
        Ok(()) => {
            tracing::info!(subsystem = %local.nqn, key = resv.key, preempt = resv.preempt_key,
                "reservation taken on the local replica's subsystem");
            Ok(())
        }
        // Not shared: nobody else can reach it.
        Err(TargetError::NotFound { .. }) => Ok(()),
        Err(e) => Err(format!("reservation on the local replica failed: {e}")),
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_come_from_the_parameter_the_path_or_the_nqn() {
        let u = Uuid::new_v4();
        let v = Uuid::new_v4();
        assert_eq!(child_uuid(&format!("bdev:///{u}")).unwrap(), u);
        assert_eq!(child_uuid(&format!("bdev:///{u}?uuid={v}")).unwrap(), v);
        assert_eq!(
            child_uuid(&format!(
                "nvmf://127.0.0.1:8420/nqn.2019-05.io.openebs:{u}?hostnqn=nqn.2019-05.io.openebs:node-name:a"
            ))
            .unwrap(),
            u
        );
        assert!(child_uuid("bdev:///not-a-uuid").is_err());
        assert!(child_uuid("nothing").is_err());
        assert!(child_uuid(&format!("bdev:///{u}?uuid=zz")).is_err());
    }

    #[test]
    fn bad_uris_are_refused_before_opening() {
        let u = Uuid::new_v4();
        assert!(check_child_uri(&format!("nvmf://nohost/nqn.2019-05.io.openebs:{u}")).is_err());
        assert!(check_child_uri(&format!("bdev:///x?uuid={u}")).is_err());
        assert!(check_child_uri(&format!("bdev:///{u}")).is_ok());
        assert!(has_param("nvmf://a/b?x=1&hostnqn=y", "hostnqn"));
        assert!(!has_param("nvmf://a/b?hostnqnx=1", "hostnqn"));
    }
}
