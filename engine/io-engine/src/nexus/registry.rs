//! The nexuses of one engine: creation (with the nexus-info rules),
//! publishing over NVMe/TCP, child management and rebuild control.
//!
//! Creation rules (DESIGN.md section 3), given the nexus info found in the
//! store under the nexus's key:
//! - no info: a new volume; every child that opens is online;
//! - info with `clean_shutdown = true`: the children it records as healthy
//!   are online; every other child is rebuilt in full;
//! - info with `clean_shutdown = false` (the engine died): exactly one
//!   child it records as healthy is online (the first, in request order,
//!   that opens); every other child, healthy or not, is rebuilt in full
//!   from it, so a child that missed writes is never a source;
//! - info that records none of the requested children as healthy: refused.
//!
//! Threading model: create, destroy, publish and unpublish are serialised
//! by one async lock; the other calls go straight to the nexus.

use std::{collections::BTreeMap, sync::Arc};

use blockdev::BlockDevice;

use parking_lot::Mutex;
use serde::Serialize;
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    check_child_uri,
    child::{
        take_reservation, Child, ChildOpener, ChildState, ChildStatus, FaultReason, OpenedChild,
    },
    info::{self, InfoStore, NexusInfo},
    rebuild::{Control, RebuildStats},
    Nexus, NexusConfig, NexusError, NexusView, Published,
};
use crate::share::{check_host_nqns, NvmfEndpoint};
use nvmf_target::SubsystemOptions;

/// NVMe reservation a nexus takes on its children (see
/// [`super::child::take_reservation`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReservationArgs {
    /// Registration key (0: no reservation is taken).
    pub key: u64,
    /// Key of the previous holder to preempt (0: none).
    pub preempt_key: u64,
    /// Reservation type (NVMe value; 0: none).
    pub rtype: u8,
}

/// Arguments of [`NexusRegistry::create`].
#[derive(Debug, Clone)]
pub struct CreateNexusArgs {
    pub uuid: Uuid,
    /// Volume uuid (the NQN is derived from it); defaults to the uuid.
    pub name: Option<String>,
    pub size_bytes: u64,
    pub children: Vec<String>,
    pub reservation: ReservationArgs,
    /// Store key of the nexus info; defaults to the engine's prefix plus
    /// `volume/<name>/nexus/<uuid>/info`.
    pub info_key: Option<String>,
}

/// Arguments of [`NexusRegistry::publish`].
#[derive(Debug, Clone, Default)]
pub struct PublishArgs {
    pub allowed_hosts: Vec<String>,
    pub min_cntlid: Option<u16>,
    pub max_cntlid: Option<u16>,
    pub reservation: Option<ReservationArgs>,
}

/// How long setting a nexus INACCESSIBLE waits for its writes in flight.
pub const ANA_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every nexus of the engine.
pub struct NexusRegistry {
    cfg: Arc<NexusConfig>,
    opener: Arc<dyn ChildOpener>,
    store: Option<Arc<dyn InfoStore>>,
    nvmf: Option<NvmfEndpoint>,
    nexuses: Mutex<BTreeMap<Uuid, Arc<Nexus>>>,
    op_lock: tokio::sync::Mutex<()>,
}

impl NexusRegistry {
    pub fn new(
        cfg: NexusConfig,
        opener: Arc<dyn ChildOpener>,
        store: Option<Arc<dyn InfoStore>>,
        nvmf: Option<NvmfEndpoint>,
    ) -> Self {
        Self {
            cfg: Arc::new(cfg),
            opener,
            store,
            nvmf,
            nexuses: Mutex::new(BTreeMap::new()),
            op_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &NexusConfig {
        &self.cfg
    }

    /// The nexus with this uuid.
    pub fn get(&self, uuid: &Uuid) -> Result<Arc<Nexus>, NexusError> {
        self.nexuses
            .lock()
            .get(uuid)
            .cloned()
            .ok_or_else(|| NexusError::NotFound(format!("nexus {uuid} not found")))
    }

    pub fn list(&self) -> Vec<NexusView> {
        let all: Vec<_> = self.nexuses.lock().values().cloned().collect();
        all.iter().map(|n| n.view()).collect()
    }

    /// I/O statistics of every nexus, in uuid order.
    pub fn io_stats(&self) -> Vec<crate::stats::EntityIoStats> {
        let all: Vec<_> = self.nexuses.lock().values().cloned().collect();
        all.iter()
            .map(|n| crate::stats::EntityIoStats {
                name: n.name().to_string(),
                uuid: n.uuid(),
                pool: None,
                stats: n.io_stats(),
                tick_us: crate::stats::tick_us(),
            })
            .collect()
    }

    /// Creates a nexus (see the module documentation for which children
    /// start online). Creating an existing nexus again with the same size
    /// and children returns it.
    pub async fn create(&self, args: CreateNexusArgs) -> Result<NexusView, NexusError> {
        let name = args
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| args.uuid.to_string());
        if args.uuid.is_nil() {
            return Err(NexusError::InvalidArgument(
                "nexus uuid must not be nil".into(),
            ));
        }
        if args.size_bytes == 0 {
            return Err(NexusError::InvalidArgument("nexus size must be > 0".into()));
        }
        if args.children.is_empty() {
            return Err(NexusError::InvalidArgument(
                "a nexus needs at least one child".into(),
            ));
        }
        let mut planned: Vec<(String, Uuid)> = Vec::new();
        for uri in &args.children {
            let uuid = check_child_uri(uri).map_err(NexusError::InvalidArgument)?;
            if planned.iter().any(|(u, id)| u == uri || *id == uuid) {
                return Err(NexusError::InvalidArgument(format!(
                    "child {uri} is given twice"
                )));
            }
            planned.push((uri.clone(), uuid));
        }
        let _op = self.op_lock.lock().await;
        if let Some(existing) = self.nexuses.lock().get(&args.uuid).cloned() {
            let same = existing.size_bytes() == args.size_bytes
                && existing.name() == name
                && existing.children().len() == planned.len()
                && planned
                    .iter()
                    .all(|(_, id)| existing.children().iter().any(|c| c.uuid() == *id));
            return if same {
                Ok(existing.view())
            } else {
                Err(NexusError::AlreadyExists(format!(
                    "nexus {} exists with other parameters",
                    args.uuid
                )))
            };
        }
        let key = args
            .info_key
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| info::info_key(&self.cfg.info_prefix, &name, &args.uuid));
        let prior = match &self.store {
            Some(store) => info::load(store.as_ref(), &key)
                .await
                .map_err(NexusError::Store)?,
            None => None,
        };
        let (children, block_size) = self
            .open_children(&planned, prior.as_ref(), &args.reservation)
            .await?;
        if !args.size_bytes.is_multiple_of(u64::from(block_size)) {
            close_all(&children);
            return Err(NexusError::InvalidArgument(format!(
                "nexus size {} is not a multiple of the block size {block_size}",
                args.size_bytes
            )));
        }
        for c in &children {
            if let Some(dev) = c.device() {
                if dev.info().size_bytes() < args.size_bytes {
                    let have = dev.info().size_bytes();
                    close_all(&children);
                    return Err(NexusError::FailedPrecondition(format!(
                        "child {} has {have} bytes, less than the nexus size {}",
                        c.uri(),
                        args.size_bytes
                    )));
                }
            }
        }
        let nexus = Nexus::new(
            args.uuid,
            name,
            args.size_bytes,
            block_size,
            self.cfg.clone(),
            self.opener.clone(),
            self.store.clone(),
            key,
            args.reservation,
            children,
        );
        if let Err(e) = nexus.persist().await {
            close_all(&nexus.children());
            return Err(e);
        }
        self.nexuses.lock().insert(args.uuid, nexus.clone());
        watch_remote_children(Arc::downgrade(&nexus));
        info!(nexus = %args.uuid, name = nexus.name(), size = args.size_bytes,
            prior = prior.is_some(), state = %nexus.state(), "nexus created");
        for c in nexus.children().iter() {
            if c.state() == ChildState::Faulted && c.device().is_some() {
                if let Err(e) = nexus.start_rebuild_of(c, None).await {
                    warn!(nexus = %args.uuid, child = c.uri(), error = %e, "cannot start the rebuild");
                }
            }
        }
        Ok(nexus.view())
    }

    /// Opens the planned children and decides their initial states.
    async fn open_children(
        &self,
        planned: &[(String, Uuid)],
        prior: Option<&NexusInfo>,
        resv: &ReservationArgs,
    ) -> Result<(Vec<Arc<Child>>, u32), NexusError> {
        if let Some(info) = prior {
            if !planned.iter().any(|(_, id)| info.is_healthy(id)) {
                return Err(NexusError::FailedPrecondition(
                    "the nexus info records none of the given children as healthy".into(),
                ));
            }
        }
        let mut children = Vec::new();
        let mut block_size = None;
        let mut online = 0usize;
        for (uri, uuid) in planned {
            let may_be_online = match prior {
                None => true,
                Some(info) if info.clean_shutdown => info.is_healthy(uuid),
                Some(info) => online == 0 && info.is_healthy(uuid),
            };
            let mut opened: Result<OpenedChild, String> = self.opener.open(uri, uuid).await;
            if let Ok(o) = &opened {
                if let Err(e) = take_reservation(resv, o).await {
                    close_opened(o);
                    opened = Err(e);
                }
            }
            let (state, reason) = match &opened {
                Err(e) => {
                    warn!(child = %uri, error = %e, "cannot open child");
                    (ChildState::Faulted, FaultReason::CannotOpen)
                }
                Ok(_) if may_be_online => (ChildState::Online, FaultReason::None),
                Ok(_) => (ChildState::Faulted, FaultReason::OutOfSync),
            };
            let child = Arc::new(Child::new(
                uri.clone(),
                *uuid,
                ChildStatus {
                    state,
                    reason,
                    faulted_at: None,
                },
            ));
            if let Ok(o) = opened {
                let bs = o.device.info().block_size;
                match block_size {
                    None => block_size = Some(bs),
                    Some(b) if b != bs => {
                        children.push(child);
                        close_all(&children);
                        let _ = o;
                        return Err(NexusError::FailedPrecondition(format!(
                            "child {uri} has block size {bs}, the others {b}"
                        )));
                    }
                    Some(_) => {}
                }
                child.set_device(o);
                if state == ChildState::Online {
                    online += 1;
                }
            }
            children.push(child);
        }
        match block_size {
            Some(bs) if online > 0 => Ok((children, bs)),
            _ => {
                close_all(&children);
                Err(NexusError::FailedPrecondition(
                    "no healthy child of the nexus could be opened".into(),
                ))
            }
        }
    }

    /// Unpublishes, shuts down and forgets a nexus. Destroying a nexus that
    /// does not exist succeeds.
    pub async fn destroy(&self, uuid: &Uuid) -> Result<(), NexusError> {
        let _op = self.op_lock.lock().await;
        let Some(nexus) = self.nexuses.lock().get(uuid).cloned() else {
            return Ok(());
        };
        self.unpublish_locked(&nexus).await;
        let result = nexus.shutdown().await;
        self.nexuses.lock().remove(uuid);
        info!(nexus = %uuid, "nexus destroyed");
        if let Err(e) = result {
            warn!(nexus = %uuid, error = %e, "the clean shutdown could not be persisted");
        }
        Ok(())
    }

    /// Shuts a nexus down (it stays listed, in state shutdown).
    pub async fn shutdown(&self, uuid: &Uuid) -> Result<NexusView, NexusError> {
        let _op = self.op_lock.lock().await;
        let nexus = self.get(uuid)?;
        self.unpublish_locked(&nexus).await;
        nexus.shutdown().await?;
        Ok(nexus.view())
    }

    /// Shuts every nexus down (engine stop).
    pub async fn shutdown_all(&self) {
        let _op = self.op_lock.lock().await;
        let all: Vec<_> = self.nexuses.lock().values().cloned().collect();
        for nexus in all {
            self.unpublish_locked(&nexus).await;
            if let Err(e) = nexus.shutdown().await {
                warn!(nexus = %nexus.uuid(), error = %e, "nexus shutdown");
            }
        }
    }

    /// Exports the nexus over NVMe/TCP as `nqn.2019-05.io.openebs:<name>`.
    /// Publishing again replaces the allowed hosts.
    pub async fn publish(&self, uuid: &Uuid, args: PublishArgs) -> Result<NexusView, NexusError> {
        let hosts = check_host_nqns(args.allowed_hosts)
            .map_err(|e| NexusError::InvalidArgument(e.to_string()))?;
        if let (Some(min), Some(max)) = (args.min_cntlid, args.max_cntlid) {
            if min == 0 || min > max || max > 0xffef {
                return Err(NexusError::InvalidArgument(format!(
                    "controller-ID window {min}-{max} is not within 1-65519"
                )));
            }
        }
        let _op = self.op_lock.lock().await;
        let nexus = self.get(uuid)?;
        if nexus.is_shut_down() {
            return Err(NexusError::FailedPrecondition(format!(
                "nexus {uuid} is shut down"
            )));
        }
        let nvmf = self.nvmf.as_ref().ok_or_else(|| {
            NexusError::FailedPrecondition(
                "this engine runs without an NVMe/TCP target; nothing can be published".into(),
            )
        })?;
        if let Some(r) = args.reservation {
            *nexus.reservation.lock() = r;
        }
        let nqn = io_engine_api::names::volume_nqn(nexus.name());
        let existing = nexus.published.lock().clone();
        if let Some(mut p) = existing {
            nvmf.target
                .set_allowed_hosts(&p.nqn, hosts.clone())
                .map_err(|e| NexusError::Io(e.to_string()))?;
            p.allowed_hosts = hosts;
            *nexus.published.lock() = Some(p);
            return Ok(nexus.view());
        }
        let ns_uuid = nexus.name().parse::<Uuid>().unwrap_or(nexus.uuid());
        let dev: blockdev::dynamic::SharedDevice = nexus.clone();
        nvmf.target
            .add_subsystem_with(
                &nqn,
                dev,
                ns_uuid,
                SubsystemOptions {
                    allowed_hosts: hosts.clone(),
                    cntlid_min: args.min_cntlid,
                    cntlid_max: args.max_cntlid,
                },
            )
            .map_err(|e| match e {
                nvmf_target::TargetError::AlreadyExists { .. } => NexusError::AlreadyExists(
                    format!("subsystem {nqn} is exported already (another nexus of the volume?)"),
                ),
                other => NexusError::Io(other.to_string()),
            })?;
        let published = Published {
            uri: format!("nvmf://{}/{nqn}", nvmf.advertised),
            nqn,
            allowed_hosts: hosts,
            min_cntlid: args.min_cntlid.unwrap_or(1),
            max_cntlid: args.max_cntlid.unwrap_or(0xffef),
        };
        info!(nexus = %uuid, uri = %published.uri, "nexus published");
        *nexus.published.lock() = Some(published);
        Ok(nexus.view())
    }

    /// Sets the ANA state hosts see on the nexus's path. INACCESSIBLE: the
    /// subsystem answers every command with "ANA inaccessible" (a
    /// multipath host retries it on, or queues it for, another path), the
    /// nexus fails new I/O the same way, and this returns once its writes
    /// in flight ended (at most [`ANA_DRAIN_LIMIT`]). OPTIMIZED: both serve
    /// again. A nexus that is not published only has its own state set.
    pub async fn set_ana_state(
        &self,
        uuid: &Uuid,
        state: nvmf_target::AnaState,
    ) -> Result<NexusView, NexusError> {
        let nexus = self.get(uuid)?;
        let nqn = nexus.published.lock().as_ref().map(|p| p.nqn.clone());
        let target = |state| -> Result<(), NexusError> {
            if let (Some(nqn), Some(nvmf)) = (&nqn, &self.nvmf) {
                nvmf.target
                    .set_ana_state(nqn, state)
                    .map_err(|e| NexusError::Io(e.to_string()))?;
            }
            Ok(())
        };
        match state {
            nvmf_target::AnaState::Optimized | nvmf_target::AnaState::NonOptimized => {
                nexus.set_accessible();
                target(state)?;
            }
            _ => {
                // The subsystem first: from now on no new command reaches
                // the nexus; then the writes in flight end.
                target(state)?;
                if !nexus.set_inaccessible(ANA_DRAIN_LIMIT).await {
                    warn!(nexus = %uuid, "writes still in flight after {ANA_DRAIN_LIMIT:?} on an inaccessible nexus");
                }
            }
        }
        info!(nexus = %uuid, ana_state = %state, "nexus ANA state set");
        Ok(nexus.view())
    }

    /// Stops exporting the nexus (idempotent).
    pub async fn unpublish(&self, uuid: &Uuid) -> Result<NexusView, NexusError> {
        let _op = self.op_lock.lock().await;
        let nexus = self.get(uuid)?;
        self.unpublish_locked(&nexus).await;
        Ok(nexus.view())
    }

    async fn unpublish_locked(&self, nexus: &Arc<Nexus>) {
        let published = nexus.published.lock().take();
        if let (Some(p), Some(nvmf)) = (published, &self.nvmf) {
            if let Err(e) = nvmf.target.remove_subsystem(&p.nqn).await {
                warn!(nexus = %nexus.uuid(), error = %e, "cannot remove the nexus subsystem");
            }
            info!(nexus = %nexus.uuid(), "nexus unpublished");
        }
    }

    pub async fn add_child(
        &self,
        uuid: &Uuid,
        uri: &str,
        norebuild: bool,
    ) -> Result<NexusView, NexusError> {
        let nexus = self.get(uuid)?;
        nexus.add_child(uri, norebuild).await?;
        Ok(nexus.view())
    }

    pub async fn remove_child(&self, uuid: &Uuid, uri: &str) -> Result<NexusView, NexusError> {
        let nexus = self.get(uuid)?;
        nexus.remove_child(uri).await?;
        Ok(nexus.view())
    }

    /// Onlines a child (rebuilding it), or offlines / faults it (both keep
    /// a dirty-region log when it was in sync).
    pub async fn child_operation(
        &self,
        uuid: &Uuid,
        uri: &str,
        action: ChildAction,
    ) -> Result<NexusView, NexusError> {
        let nexus = self.get(uuid)?;
        match action {
            ChildAction::Online => nexus.online_child(uri, None).await?,
            ChildAction::Offline | ChildAction::Fault => nexus.fault_by_client(uri).await?,
        }
        Ok(nexus.view())
    }

    pub async fn start_rebuild(
        &self,
        uuid: &Uuid,
        uri: &str,
        max_bandwidth: Option<u64>,
    ) -> Result<RebuildStats, NexusError> {
        let nexus = self.get(uuid)?;
        let child = nexus.child(uri)?;
        if child.state() == ChildState::Online {
            return Err(NexusError::FailedPrecondition(format!(
                "child {uri} is in sync; there is nothing to rebuild"
            )));
        }
        nexus.online_child(uri, max_bandwidth).await?;
        nexus.rebuild_stats(uri)
    }

    pub async fn stop_rebuild(&self, uuid: &Uuid, uri: &str) -> Result<RebuildStats, NexusError> {
        self.get(uuid)?.stop_rebuild(uri).await
    }

    pub fn pause_rebuild(&self, uuid: &Uuid, uri: &str) -> Result<RebuildStats, NexusError> {
        self.get(uuid)?.control_rebuild(uri, Control::Pause)
    }

    pub fn resume_rebuild(&self, uuid: &Uuid, uri: &str) -> Result<RebuildStats, NexusError> {
        self.get(uuid)?.control_rebuild(uri, Control::Run)
    }

    pub fn rebuild_stats(&self, uuid: &Uuid, uri: &str) -> Result<RebuildStats, NexusError> {
        self.get(uuid)?.rebuild_stats(uri)
    }

    pub fn rebuild_history(&self, uuid: &Uuid) -> Result<Vec<RebuildStats>, NexusError> {
        Ok(self.get(uuid)?.rebuild_history())
    }
}

/// How often a nexus looks for remote children whose controller is lost.
const LOST_CHILD_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Faults the remote children whose target went away for good, even when
/// no I/O reaches them (an idle volume still shows the lost replica, and
/// the control plane can heal it). I/O to such a child would fail anyway;
/// the dirty log is kept so a returning child gets a partial rebuild. Ends
/// when the nexus is gone.
fn watch_remote_children(nexus: std::sync::Weak<Nexus>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LOST_CHILD_CHECK).await;
            let Some(n) = nexus.upgrade() else { return };
            if n.is_shut_down() {
                return;
            }
            for c in n.children().iter() {
                if c.state() == ChildState::Faulted || !c.remote_lost() {
                    continue;
                }
                match n.fault_on_io(c, FaultReason::IoFailure, None, true).await {
                    Ok(true) => {
                        info!(nexus = %n.uuid(), child = c.uri(), "remote child lost: faulted")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(nexus = %n.uuid(), child = c.uri(), error = %e, "cannot record the lost child")
                    }
                }
            }
        }
    });
}

/// A client's child operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildAction {
    Online,
    Offline,
    Fault,
}

fn close_opened(o: &OpenedChild) {
    if let Some(ns) = &o.remote {
        let ctrl = ns.controller().clone();
        tokio::spawn(async move {
            let _ = ctrl.disconnect().await;
        });
    }
}

fn close_all(children: &[Arc<Child>]) {
    for c in children {
        c.close();
    }
}
