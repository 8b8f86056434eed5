//! Sharing replicas over NVMe/TCP.
//!
//! The [`ShareManager`] sits between the gRPC API and the [`PoolRegistry`]
//! for every operation that changes what the engine's NVMe/TCP target
//! exports: sharing and unsharing a replica, creating and destroying
//! replicas, and creating, importing, exporting and destroying pools.
//!
//! - A shared replica is subsystem `nqn.2019-05.io.openebs:<replica-uuid>`
//!   with one namespace whose uuid is the replica's uuid, reachable at
//!   `nvmf://<advertised-ip>:<port>/<nqn>?uuid=<uuid>`.
//! - Its allowed hosts are a strict allow-list: an empty list lets nobody
//!   connect (upstream's `allow_any_host=false`).
//! - The share (protocol and allowed hosts) is persisted in the pool's
//!   replica table, so it survives restarts: whenever a pool is created or
//!   imported, every replica of it whose persisted share is NVMe/TCP is
//!   exported again.
//! - A replica leaves the target before it (or its pool) is destroyed or
//!   exported, so no host keeps writing to space that is being released;
//!   hosts connected to an unshared replica see their I/O fail.
//!
//! Invariants: a replica is exported by the target exactly when its uuid is
//! in `exported`; an error leaves both the target and the persisted share as
//! they were (target changes are undone in memory when persisting fails).
//!
//! Threading model: share-changing operations are serialised by one async
//! lock (they are rare, like the registry's own management operations, and
//! it keeps "check, export, persist" atomic). Lists read `exported` (a
//! short-held synchronous lock, never held across `.await`) and never wait
//! for that lock. Lock order: this manager's lock, then the registry's.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use nvmf_target::{Target, TargetError};
use parking_lot::Mutex;
use tracing::{info, warn};
use uuid::Uuid;

use crate::pool::{
    CreatePoolArgs, CreateReplicaArgs, ErrorKind, PoolError, PoolInfo, PoolRegistry, ReplicaInfo,
    ReplicaSelector, ShareProtocol,
};

/// NQN prefix of replicas (and volume targets): `nqn.2019-05.io.openebs:`.
pub use io_engine_api::names::NQN_PREFIX;

/// The NQN of a replica's subsystem.
pub fn replica_nqn(uuid: &Uuid) -> String {
    io_engine_api::names::replica_nqn(uuid)
}

/// The URI of a shared replica: `nvmf://IP:PORT/<nqn>?uuid=<uuid>`
/// (an IPv6 address in brackets).
pub fn nvmf_uri(advertised: SocketAddr, uuid: &Uuid) -> String {
    format!("nvmf://{advertised}/{}?uuid={uuid}", replica_nqn(uuid))
}

/// The address to advertise in URIs for a target listening on `listen`:
/// `advertise` when given, else the listen address, else (when listening on
/// all addresses) the loopback address of the same family.
pub fn advertised_ip(listen: IpAddr, advertise: Option<IpAddr>) -> IpAddr {
    match (advertise, listen) {
        (Some(ip), _) => ip,
        (None, IpAddr::V4(v4)) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        (None, IpAddr::V6(v6)) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        (None, ip) => ip,
    }
}

/// Errors of share operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("this engine runs without an NVMe/TCP target; nothing can be shared")]
    NoTarget,
    #[error("nvmf subsystem {nqn}: {source}")]
    Target {
        nqn: String,
        #[source]
        source: TargetError,
    },
}

impl ShareError {
    /// The stable kind of this error (the same kinds as the pool layer's).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ShareError::Pool(e) => e.kind(),
            ShareError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ShareError::NoTarget => ErrorKind::FailedPrecondition,
            ShareError::Target { source, .. } => target_error_kind(source),
        }
    }
}

/// Kind of a target error. The manager checks its requests before they
/// reach the target, so these mean the target and the manager disagree.
fn target_error_kind(err: &TargetError) -> ErrorKind {
    match err {
        TargetError::InvalidNqn { .. } => ErrorKind::InvalidArgument,
        TargetError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        TargetError::NotFound { .. } => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    }
}

/// Checks a list of host NQNs and removes duplicates (first one kept).
///
/// An NQN is `nqn.yyyy-mm.<reverse-domain>[:<anything>]`, at most 223 bytes,
/// without whitespace or control characters (NVMe Base Specification,
/// "NVMe Qualified Names"; the `nqn.2014-08.org.nvmexpress:uuid:<uuid>` form
/// fits the same pattern).
pub fn check_host_nqns(hosts: Vec<String>) -> Result<Vec<String>, ShareError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(hosts.len());
    for host in hosts {
        if let Err(reason) = check_nqn(&host) {
            return Err(ShareError::InvalidArgument(format!(
                "allowed host '{}' is not a valid NQN: {reason}",
                host.escape_debug()
            )));
        }
        if seen.insert(host.clone()) {
            out.push(host);
        }
    }
    if out.len() > pool_format::MAX_ALLOWED_HOSTS {
        return Err(ShareError::InvalidArgument(format!(
            "{} allowed hosts given, at most {} are supported",
            out.len(),
            pool_format::MAX_ALLOWED_HOSTS
        )));
    }
    Ok(out)
}

fn check_nqn(nqn: &str) -> Result<(), String> {
    if nqn.len() > pool_format::MAX_NQN_LEN {
        return Err(format!(
            "{} bytes long, at most {} allowed",
            nqn.len(),
            pool_format::MAX_NQN_LEN
        ));
    }
    if nqn.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters".into());
    }
    let shape = "expected nqn.yyyy-mm.<reverse-domain>[:<name>]";
    let rest = nqn
        .strip_prefix("nqn.")
        .ok_or_else(|| format!("does not start with 'nqn.' ({shape})"))?;
    let date = rest.get(..7).unwrap_or_default().as_bytes();
    let month_ok = match date {
        [y1, y2, y3, y4, b'-', m1, m2] => {
            [y1, y2, y3, y4, m1, m2].iter().all(|b| b.is_ascii_digit())
                && matches!((m1, m2), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
        }
        _ => false,
    };
    if !month_ok {
        return Err(format!("no valid date after 'nqn.' ({shape})"));
    }
    let domain = rest
        .get(7..)
        .and_then(|d| d.strip_prefix('.'))
        .map(|d| d.split(':').next().unwrap_or(d))
        .unwrap_or_default();
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(format!(
            "no valid reverse domain name after the date ({shape})"
        ));
    }
    Ok(())
}

/// The engine's NVMe/TCP target and the address it is advertised under.
#[derive(Clone)]
pub struct NvmfEndpoint {
    pub target: Target,
    /// IP (and the target's bound port) put into `nvmf://` URIs.
    pub advertised: SocketAddr,
}

impl NvmfEndpoint {
    /// A bound target, advertised under `advertise_ip` and its bound port.
    pub fn new(target: Target, advertise_ip: IpAddr) -> Self {
        let advertised = SocketAddr::new(advertise_ip, target.local_addr().port());
        Self { target, advertised }
    }
}

/// Keeps the NVMe/TCP target's subsystems in line with the replicas'
/// persisted shares. See the module documentation.
pub struct ShareManager {
    registry: Arc<PoolRegistry>,
    nvmf: Option<NvmfEndpoint>,
    /// Serialises every operation that changes a share.
    op_lock: tokio::sync::Mutex<()>,
    /// Replicas the target currently exports.
    exported: Mutex<HashSet<Uuid>>,
}

impl ShareManager {
    /// A manager over `registry`; `nvmf` is `None` for an engine without an
    /// NVMe/TCP target (sharing then fails with [`ShareError::NoTarget`]).
    pub fn new(registry: Arc<PoolRegistry>, nvmf: Option<NvmfEndpoint>) -> Self {
        Self {
            registry,
            nvmf,
            op_lock: tokio::sync::Mutex::new(()),
            exported: Mutex::new(HashSet::new()),
        }
    }

    /// The pool registry.
    pub fn registry(&self) -> &Arc<PoolRegistry> {
        &self.registry
    }

    /// The NVMe/TCP endpoint, when the engine runs one.
    pub fn nvmf(&self) -> Option<&NvmfEndpoint> {
        self.nvmf.as_ref()
    }

    fn endpoint(&self) -> Result<&NvmfEndpoint, ShareError> {
        self.nvmf.as_ref().ok_or(ShareError::NoTarget)
    }

    fn is_exported(&self, uuid: &Uuid) -> bool {
        self.exported.lock().contains(uuid)
    }

    /// A replica as the API reports it: its URI is the `nvmf://` one while
    /// the target exports it (the registry always says `bdev:///`).
    pub fn present(&self, mut info: ReplicaInfo) -> ReplicaInfo {
        if let Some(nvmf) = &self.nvmf {
            if self.is_exported(&info.uuid) {
                info.uri = nvmf_uri(nvmf.advertised, &info.uuid);
            }
        }
        info
    }

    /// Every replica, as the API reports it.
    pub fn list_replicas(&self) -> Vec<ReplicaInfo> {
        self.registry
            .list_replicas()
            .into_iter()
            .map(|r| self.present(r))
            .collect()
    }

    /// Shares a replica over NVMe/TCP with exactly `hosts` allowed to
    /// connect. Sharing a shared replica again replaces its allowed hosts.
    pub async fn share_replica(
        &self,
        sel: &ReplicaSelector,
        hosts: Vec<String>,
    ) -> Result<ReplicaInfo, ShareError> {
        let hosts = check_host_nqns(hosts)?;
        self.endpoint()?;
        let _guard = self.op_lock.lock().await;
        let info = self.registry.replica(sel)?;
        self.share_locked(info, hosts).await
    }

    async fn share_locked(
        &self,
        info: ReplicaInfo,
        hosts: Vec<String>,
    ) -> Result<ReplicaInfo, ShareError> {
        let nvmf = self.endpoint()?;
        let uuid = info.uuid;
        let nqn = replica_nqn(&uuid);
        let persisted = info.share == ShareProtocol::Nvmf && info.allowed_hosts == hosts;
        // Undo for the target change, should persisting fail.
        let undo: Option<Vec<String>> = if self.is_exported(&uuid) {
            if persisted {
                return Ok(self.present(info));
            }
            nvmf.target
                .set_allowed_hosts(&nqn, hosts.clone())
                .map_err(|source| ShareError::Target {
                    nqn: nqn.clone(),
                    source,
                })?;
            Some(info.allowed_hosts.clone())
        } else {
            self.export(nvmf, &uuid, hosts.clone())?;
            None
        };
        if !persisted {
            let sel = ReplicaSelector::Uuid(uuid);
            if let Err(e) = self
                .registry
                .set_replica_share(&sel, ShareProtocol::Nvmf, hosts.clone())
                .await
            {
                match undo {
                    Some(old_hosts) => {
                        if let Err(undo_err) = nvmf.target.set_allowed_hosts(&nqn, old_hosts) {
                            warn!(replica = %uuid, error = %undo_err, "cannot restore the allowed hosts");
                        }
                    }
                    None => self.withdraw(nvmf, &uuid).await,
                }
                return Err(e.into());
            }
        }
        info!(replica = %uuid, hosts = ?hosts, "replica shared over nvmf");
        let info = self.registry.replica(&ReplicaSelector::Uuid(uuid))?;
        Ok(self.present(info))
    }

    /// Adds a replica's subsystem to the target.
    fn export(
        &self,
        nvmf: &NvmfEndpoint,
        uuid: &Uuid,
        hosts: Vec<String>,
    ) -> Result<(), ShareError> {
        let nqn = replica_nqn(uuid);
        let dev = self.registry.open_replica(uuid)?;
        nvmf.target
            .add_subsystem(&nqn, dev, *uuid, hosts)
            .map_err(|source| ShareError::Target { nqn, source })?;
        self.exported.lock().insert(*uuid);
        Ok(())
    }

    /// Removes a replica's subsystem from the target (if it is there):
    /// connected hosts' I/O fails from then on.
    async fn withdraw(&self, nvmf: &NvmfEndpoint, uuid: &Uuid) {
        if !self.exported.lock().remove(uuid) {
            return;
        }
        let nqn = replica_nqn(uuid);
        if let Err(e) = nvmf.target.remove_subsystem(&nqn).await {
            warn!(replica = %uuid, error = %e, "cannot remove the nvmf subsystem");
        }
    }

    /// Grows a replica. A shared replica's subsystem is made again with
    /// the same allowed hosts, since a namespace keeps the size it was
    /// exported with: connected hosts reconnect (the initiator retries
    /// what was in flight) and see the new size.
    pub async fn resize_replica(
        &self,
        sel: &ReplicaSelector,
        size_bytes: u64,
    ) -> Result<ReplicaInfo, ShareError> {
        let _guard = self.op_lock.lock().await;
        let before = self.registry.replica(sel)?;
        let info = self.registry.resize_replica(sel, size_bytes).await?;
        if let Some(nvmf) = &self.nvmf {
            if info.size_bytes != before.size_bytes && self.is_exported(&info.uuid) {
                self.withdraw(nvmf, &info.uuid).await;
                self.export(nvmf, &info.uuid, info.allowed_hosts.clone())?;
                info!(replica = %info.uuid, size = info.size_bytes, "shared replica exported again at its new size");
            }
        }
        Ok(self.present(info))
    }

    /// Stops sharing a replica. Unsharing a replica that is not shared
    /// returns it unchanged.
    pub async fn unshare_replica(&self, sel: &ReplicaSelector) -> Result<ReplicaInfo, ShareError> {
        let _guard = self.op_lock.lock().await;
        let info = self.registry.replica(sel)?;
        let uuid = info.uuid;
        // Persist first: when that fails nothing has changed.
        if info.share != ShareProtocol::None {
            self.registry
                .set_replica_share(
                    &ReplicaSelector::Uuid(uuid),
                    ShareProtocol::None,
                    info.allowed_hosts.clone(),
                )
                .await?;
        }
        if let Some(nvmf) = &self.nvmf {
            self.withdraw(nvmf, &uuid).await;
        }
        info!(replica = %uuid, "replica unshared");
        let info = self.registry.replica(&ReplicaSelector::Uuid(uuid))?;
        Ok(self.present(info))
    }

    /// Creates a replica; with `share: Nvmf` it is shared right away (and a
    /// replica created by this call is destroyed again when that fails).
    pub async fn create_replica(&self, args: CreateReplicaArgs) -> Result<ReplicaInfo, ShareError> {
        let mut args = args;
        let share = args.share == ShareProtocol::Nvmf;
        if share {
            args.allowed_hosts = check_host_nqns(std::mem::take(&mut args.allowed_hosts))?;
            self.endpoint()?;
        }
        let _guard = self.op_lock.lock().await;
        let existed = self
            .registry
            .replica(&ReplicaSelector::Uuid(args.uuid))
            .is_ok();
        let hosts = args.allowed_hosts.clone();
        let info = self.registry.create_replica(args).await?;
        if !share {
            return Ok(self.present(info));
        }
        let uuid = info.uuid;
        match self.share_locked(info, hosts).await {
            Ok(info) => Ok(info),
            Err(e) => {
                if !existed {
                    if let Err(undo) = self
                        .registry
                        .destroy_replica(&ReplicaSelector::Uuid(uuid))
                        .await
                    {
                        warn!(replica = %uuid, error = %undo, "cannot destroy the replica whose share failed");
                    }
                }
                Err(e)
            }
        }
    }

    /// Destroys a replica, unsharing it first.
    pub async fn destroy_replica(&self, sel: &ReplicaSelector) -> Result<(), ShareError> {
        let _guard = self.op_lock.lock().await;
        let info = self.registry.replica(sel)?;
        let withdrawn = self.before_destroy(std::slice::from_ref(&info)).await;
        let res = self
            .registry
            .destroy_replica(&ReplicaSelector::Uuid(info.uuid))
            .await;
        if let Err(e) = res {
            self.reexport(&withdrawn);
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes the given replicas from the target ahead of destroying or
    /// exporting them; returns those that were exported.
    async fn before_destroy(&self, replicas: &[ReplicaInfo]) -> Vec<ReplicaInfo> {
        let Some(nvmf) = &self.nvmf else {
            return Vec::new();
        };
        let mut withdrawn = Vec::new();
        for r in replicas {
            if self.is_exported(&r.uuid) {
                self.withdraw(nvmf, &r.uuid).await;
                withdrawn.push(r.clone());
            }
        }
        withdrawn
    }

    /// Exports again replicas withdrawn by [`Self::before_destroy`] when the
    /// operation that followed failed.
    fn reexport(&self, replicas: &[ReplicaInfo]) {
        let Some(nvmf) = &self.nvmf else {
            return;
        };
        for r in replicas {
            if let Err(e) = self.export(nvmf, &r.uuid, r.allowed_hosts.clone()) {
                warn!(replica = %r.uuid, error = %e, "cannot share the replica again");
            }
        }
    }

    fn pool_replicas(&self, pool: &PoolInfo) -> Vec<ReplicaInfo> {
        self.registry
            .list_replicas()
            .into_iter()
            .filter(|r| r.pool_uuid == pool.uuid)
            .collect()
    }

    /// Creates a pool (or imports it, see [`PoolRegistry::create_pool`])
    /// and shares its replicas again.
    pub async fn create_pool(&self, args: CreatePoolArgs) -> Result<PoolInfo, ShareError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.registry.create_pool(args).await?;
        self.reshare_pool_locked(&pool);
        Ok(pool)
    }

    /// Imports a pool and shares its replicas again.
    pub async fn import_pool(&self, args: CreatePoolArgs) -> Result<PoolInfo, ShareError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.registry.import_pool(args).await?;
        self.reshare_pool_locked(&pool);
        Ok(pool)
    }

    /// Exports again every replica of `pool` whose persisted share is
    /// NVMe/TCP and that the target does not export yet. A replica that
    /// cannot be exported is logged and skipped: the pool stays imported,
    /// and the replica is listed with its persisted share and a `bdev:///`
    /// URI until it is shared again.
    pub async fn reshare_pool(&self, pool: &str) -> Result<(), ShareError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.registry.pool(pool)?;
        self.reshare_pool_locked(&pool);
        Ok(())
    }

    fn reshare_pool_locked(&self, pool: &PoolInfo) {
        let wanted: Vec<ReplicaInfo> = self
            .pool_replicas(pool)
            .into_iter()
            .filter(|r| r.share == ShareProtocol::Nvmf && !self.is_exported(&r.uuid))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let Some(nvmf) = &self.nvmf else {
            warn!(pool = %pool.name, replicas = wanted.len(), "shared replicas found, but this engine runs without an nvmf target");
            return;
        };
        for r in wanted {
            match self.export(nvmf, &r.uuid, r.allowed_hosts.clone()) {
                Ok(()) => {
                    info!(pool = %pool.name, replica = %r.uuid, "replica shared again over nvmf")
                }
                Err(e) => {
                    warn!(pool = %pool.name, replica = %r.uuid, error = %e, "cannot share the replica again")
                }
            }
        }
    }

    /// Destroys a pool, unsharing its replicas first.
    pub async fn destroy_pool(&self, name: &str) -> Result<(), ShareError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.registry.pool(name)?;
        let withdrawn = self.before_destroy(&self.pool_replicas(&pool)).await;
        if let Err(e) = self.registry.destroy_pool(name).await {
            self.reexport(&withdrawn);
            return Err(e.into());
        }
        Ok(())
    }

    /// Exports a pool (flush and release), unsharing its replicas first;
    /// their persisted shares are restored when the pool is imported again.
    pub async fn export_pool(&self, name: &str) -> Result<(), ShareError> {
        let _guard = self.op_lock.lock().await;
        let pool = self.registry.pool(name)?;
        let withdrawn = self.before_destroy(&self.pool_replicas(&pool)).await;
        if let Err(e) = self.registry.export_pool(name).await {
            self.reexport(&withdrawn);
            return Err(e.into());
        }
        Ok(())
    }

    /// Engine shutdown, after the target stopped serving: removes every
    /// subsystem (releasing the replica handles), then flushes and releases
    /// every pool.
    pub async fn shutdown(&self) {
        let _guard = self.op_lock.lock().await;
        if let Some(nvmf) = &self.nvmf {
            let uuids: Vec<Uuid> = self.exported.lock().iter().copied().collect();
            for uuid in uuids {
                self.withdraw(nvmf, &uuid).await;
            }
        }
        self.registry.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
