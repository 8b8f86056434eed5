//! The reconciler of one DiskPool: make its pool exist (or go), and keep
//! its status current.
//!
//! ```text
//!            add finalizer            PUT pool ok
//!  (new) ──────────────────> Creating ───────────> Created ──┐ resync every
//!                              │  ▲ error: Warning event,    │ --interval:
//!                              └──┘ retry with backoff       │ pool_status,
//!  deleted ──> Terminating ── DELETE pool ok / not found ──> finalizer removed
//!                  │  ▲ pool holds replicas: Warning event, retry
//!                  └──┘
//! ```
//!
//! Every step reads the control plane first and only then acts, so a
//! restart at any point converges: a pool already created (even by an
//! operator killed before it wrote the status) is adopted, a create is
//! repeated only while the pool is missing or its spec is still
//! `Creating` (the REST create is idempotent for the same node and disk).
//!
//! Errors go to [`error_policy`]: a per-resource backoff
//! ([`backoff_after`]: 5 s doubling to 5 min), never a hot loop. The
//! controller is fed only generation and deletion changes (the operator's
//! own status patches do not re-trigger it, see `controller.rs`).
//! Status is patched only when it changes; an event is published for each
//! transition and each failure.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kube::{
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
    },
    Api, Resource, ResourceExt,
};
use openapi::{models::CreatePoolBody, CoreApi, ErrorKind, RestClient, RestError};
use tracing::{info, warn};

use crate::crd::{
    CrState, DiskPool, DiskPoolStatus, PoolStatus, CREATED_BY_KEY, CREATED_BY_VALUE, FINALIZER,
};

/// Failure of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("REST API: {0}")]
    Rest(#[source] RestError),
    #[error("pool {pool} exists with node {node} and disks {disks:?}, not as the DiskPool asks")]
    Conflict {
        pool: String,
        node: String,
        disks: Vec<String>,
    },
    #[error("DiskPool has no namespace")]
    NoNamespace,
}

impl From<kube::Error> for ReconcileError {
    fn from(e: kube::Error) -> Self {
        ReconcileError::Kube(e)
    }
}

impl From<RestError> for ReconcileError {
    fn from(e: RestError) -> Self {
        ReconcileError::Rest(e)
    }
}

/// What every reconcile shares.
pub struct Context {
    pub kube: kube::Client,
    pub rest: RestClient,
    pub recorder: Recorder,
    /// Resync period of a healthy resource (and of one waiting for its
    /// pool's replicas to go).
    pub interval: Duration,
    /// Consecutive failures per resource (namespace/name), for the
    /// backoff. A std mutex: never held across an await.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        kube: kube::Client,
        rest: RestClient,
        recorder: Recorder,
        interval: Duration,
    ) -> Self {
        Self {
            kube,
            rest,
            recorder,
            interval,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failed(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Delay before the next attempt after `failures` consecutive failures
/// (1 → 5 s, 2 → 10 s, 3 → 20 s, ... capped at 5 min).
pub fn backoff_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

fn key(dp: &DiskPool) -> String {
    format!("{}/{}", dp.namespace().unwrap_or_default(), dp.name_any())
}

/// The controller's error policy: log, and retry after the backoff.
pub fn error_policy(dp: Arc<DiskPool>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let failures = ctx.failed(&key(&dp));
    let delay = backoff_after(failures);
    warn!(
        pool = %dp.name_any(),
        failures,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed: {error}"
    );
    Action::requeue(delay)
}

/// Reconciles one DiskPool (see the module header).
#[tracing::instrument(skip_all, fields(pool = %dp.name_any()))]
pub async fn reconcile(dp: Arc<DiskPool>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = dp.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<DiskPool> = Api::namespaced(ctx.kube.clone(), &namespace);
    let has_finalizer = dp.finalizers().iter().any(|f| f == FINALIZER);
    let action = if dp.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        cleanup(&dp, &api, &ctx).await?
    } else {
        if !has_finalizer {
            set_finalizers(&api, &dp, dp.resource_version(), true).await?;
        }
        apply(&dp, &api, &ctx).await?
    };
    ctx.succeeded(&key(&dp));
    Ok(action)
}

/// The labels the operator puts on the pool: its own mark plus the
/// resource's topology labels.
pub fn pool_labels(dp: &DiskPool) -> std::collections::BTreeMap<String, String> {
    let mut labels = dp
        .spec
        .topology
        .as_ref()
        .map(|t| t.labelled.clone())
        .unwrap_or_default();
    labels.insert(CREATED_BY_KEY.to_owned(), CREATED_BY_VALUE.to_owned());
    labels
}

/// The status of a pool the control plane knows (spec and/or state).
pub fn created_status(pool: &openapi::models::Pool) -> DiskPoolStatus {
    match &pool.state {
        Some(state) => DiskPoolStatus {
            cr_state: CrState::Created,
            pool_status: Some(state.status.into()),
            capacity: state.capacity,
            used: state.used,
            available: state.capacity.saturating_sub(state.used),
        },
        // The spec exists but its node does not report the pool (node
        // offline, engine restarting): figures unknown.
        None => DiskPoolStatus {
            cr_state: CrState::Created,
            pool_status: Some(PoolStatus::Unknown),
            ..DiskPoolStatus::default()
        },
    }
}

async fn apply(
    dp: &DiskPool,
    api: &Api<DiskPool>,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let name = dp.name_any();
    let mut status = dp.status.clone();
    if status.is_none() {
        // A new resource says so before anything else is asked.
        update_status(dp, api, ctx, &mut status, DiskPoolStatus::default()).await?;
    }
    let existing = match ctx.rest.get_pool(&name).await {
        Ok(pool) => Some(pool),
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(pool) = &existing {
        if let Some(spec) = &pool.spec {
            if spec.node != dp.spec.node || spec.disks != dp.spec.disks {
                let error = ReconcileError::Conflict {
                    pool: name.clone(),
                    node: spec.node.clone(),
                    disks: spec.disks.clone(),
                };
                publish(ctx, dp, EventType::Warning, "Conflict", &error.to_string()).await;
                return Err(error);
            }
        }
        let still_creating = pool.state.is_none()
            && pool.spec.as_ref().map(|s| s.status) == Some(openapi::models::SpecStatus::Creating);
        if !still_creating {
            update_status(dp, api, ctx, &mut status, created_status(pool)).await?;
            return Ok(Action::requeue(ctx.interval));
        }
    }

    // Create (or finish an interrupted create: idempotent for the same
    // node and disk).
    if status.as_ref().map(|s| s.cr_state) != Some(CrState::Creating) {
        let creating = DiskPoolStatus {
            cr_state: CrState::Creating,
            ..status.clone().unwrap_or_default()
        };
        update_status(dp, api, ctx, &mut status, creating).await?;
    }
    let body = CreatePoolBody {
        disks: dp.spec.disks.clone(),
        labels: Some(pool_labels(dp)),
    };
    match ctx.rest.put_node_pool(&dp.spec.node, &name, body).await {
        Ok(pool) => {
            info!(node = %dp.spec.node, "pool created");
            update_status(dp, api, ctx, &mut status, created_status(&pool)).await?;
            Ok(Action::requeue(ctx.interval))
        }
        Err(e) => {
            // NotFound is also what a missing disk gets: only the node
            // lookup tells an unknown node apart.
            let unknown_node = e.kind == ErrorKind::NotFound
                && matches!(ctx.rest.get_node(&dp.spec.node).await,
                    Err(n) if n.kind == ErrorKind::NotFound);
            let (reason, note) = if unknown_node {
                (
                    "NodeNotFound",
                    format!(
                        "cannot create pool {name}: node {} is not known to the control plane ({})",
                        dp.spec.node, e.message
                    ),
                )
            } else {
                (
                    "CreateFailed",
                    format!(
                        "cannot create pool {name} on node {} with disk {}: {e}",
                        dp.spec.node,
                        dp.spec.disks.join(",")
                    ),
                )
            };
            publish(ctx, dp, EventType::Warning, reason, &note).await;
            Err(e.into())
        }
    }
}

async fn cleanup(
    dp: &DiskPool,
    api: &Api<DiskPool>,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let name = dp.name_any();
    let mut status = dp.status.clone();
    let mut resource_version = dp.resource_version();
    if status.as_ref().map(|s| s.cr_state) != Some(CrState::Terminating) {
        let terminating = DiskPoolStatus {
            cr_state: CrState::Terminating,
            ..status.clone().unwrap_or_default()
        };
        if let Some(patched) = update_status(dp, api, ctx, &mut status, terminating).await? {
            resource_version = patched;
        }
    }
    let pool = match ctx.rest.get_pool(&name).await {
        Ok(pool) => Some(pool),
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(pool) = pool {
        let ours = pool.spec.as_ref().is_some_and(|s| {
            s.labels.get(CREATED_BY_KEY).map(String::as_str) == Some(CREATED_BY_VALUE)
        });
        if !ours {
            let note = format!(
                "pool {name} was not created by the operator ({CREATED_BY_KEY} label absent): left in place"
            );
            publish(ctx, dp, EventType::Normal, "Released", &note).await;
        } else {
            match ctx.rest.del_pool(&name).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) if e.kind == ErrorKind::InUse => {
                    let volumes = volumes_on(ctx, &name).await;
                    let note = format!(
                        "pool {name} still holds replicas of volumes [{}]: it is deleted once they are gone ({})",
                        volumes.join(", "),
                        e.message
                    );
                    publish(ctx, dp, EventType::Warning, "PoolInUse", &note).await;
                    return Ok(Action::requeue(ctx.interval));
                }
                Err(e) => {
                    let note = format!("cannot delete pool {name}: {e}");
                    publish(ctx, dp, EventType::Warning, "DeleteFailed", &note).await;
                    return Err(e.into());
                }
            }
            info!("pool deleted");
            publish(
                ctx,
                dp,
                EventType::Normal,
                "Deleted",
                &format!("pool {name} deleted"),
            )
            .await;
        }
    }
    set_finalizers(api, dp, resource_version, false).await?;
    Ok(Action::await_change())
}

/// The volumes owning replicas on `pool` (best effort, for the event).
async fn volumes_on(ctx: &Context, pool: &str) -> Vec<String> {
    let mut volumes: Vec<String> = match ctx.rest.get_replicas().await {
        Ok(replicas) => replicas
            .into_iter()
            .filter(|r| r.pool == pool)
            .map(|r| r.uuid)
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Ok(specs) = ctx.rest.get_specs().await {
        let owners: Vec<String> = specs
            .replicas
            .iter()
            .filter(|r| r.pool == pool)
            .filter_map(|r| r.owners.volume.clone())
            .collect();
        if !owners.is_empty() {
            volumes = owners;
        }
    }
    volumes.sort();
    volumes.dedup();
    volumes
}

/// Adds (`add`) or removes the finalizer. The merge patch carries the
/// resource version the list was read at (`resource_version`: the
/// resource's, or the one the operator's own status patch returned), so
/// it fails rather than overwrite a concurrent change.
async fn set_finalizers(
    api: &Api<DiskPool>,
    dp: &DiskPool,
    resource_version: Option<String>,
    add: bool,
) -> Result<(), kube::Error> {
    let mut finalizers: Vec<String> = dp
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if add {
        finalizers.push(FINALIZER.to_owned());
    }
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": resource_version,
        }
    });
    api.patch(
        &dp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Writes `status` when it differs from `current` (what the resource
/// holds, updated here), with an event for a change of state or of pool
/// status. Returns the resource version the patch made (None when there
/// was nothing to write).
async fn update_status(
    dp: &DiskPool,
    api: &Api<DiskPool>,
    ctx: &Context,
    current: &mut Option<DiskPoolStatus>,
    status: DiskPoolStatus,
) -> Result<Option<Option<String>>, kube::Error> {
    if current.as_ref() == Some(&status) {
        return Ok(None);
    }
    let old = current.replace(status.clone());
    let patch = serde_json::json!({ "status": status });
    let patched = api
        .patch_status(
            &dp.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let name = dp.name_any();
    let old_state = old.as_ref().map(|s| s.cr_state);
    if old_state != Some(status.cr_state) {
        let note = match status.cr_state {
            CrState::Creating => format!(
                "creating pool {name} on node {} with disk {}",
                dp.spec.node,
                dp.spec.disks.join(",")
            ),
            CrState::Created => format!(
                "pool {name} created on node {}: capacity {} bytes, used {}",
                dp.spec.node, status.capacity, status.used
            ),
            CrState::Terminating => format!("deleting pool {name}"),
        };
        publish(
            ctx,
            dp,
            EventType::Normal,
            &format!("{:?}", status.cr_state),
            &note,
        )
        .await;
    }
    let old_pool = old.as_ref().and_then(|s| s.pool_status);
    if let (Some(was), Some(now)) = (old_pool, status.pool_status) {
        if was != now {
            let kind = if now == PoolStatus::Online {
                EventType::Normal
            } else {
                EventType::Warning
            };
            let note = format!("pool {name} is {now:?} (was {was:?})");
            publish(ctx, dp, kind, "PoolStatusChanged", &note).await;
        }
    }
    Ok(Some(patched.resource_version()))
}

/// Publishes an event about `dp`; a failure is logged, never fatal.
async fn publish(ctx: &Context, dp: &DiskPool, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &dp.object_ref(&())).await {
        warn!("cannot publish event {reason}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DiskPoolSpec, PoolTopology};
    use openapi::models::{Pool, PoolState};

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_after(0), Duration::from_secs(5));
        assert_eq!(backoff_after(1), Duration::from_secs(5));
        assert_eq!(backoff_after(2), Duration::from_secs(10));
        assert_eq!(backoff_after(3), Duration::from_secs(20));
        assert_eq!(backoff_after(7), Duration::from_secs(300));
        assert_eq!(backoff_after(u32::MAX), BACKOFF_MAX);
        // No more than four attempts in the first minute.
        let mut at = Duration::ZERO;
        let mut attempts = 0;
        while at < Duration::from_secs(60) {
            attempts += 1;
            at += backoff_after(attempts);
        }
        assert!(attempts <= 4, "{attempts}");
    }

    #[test]
    fn labels_are_the_mark_plus_the_topology() {
        let mut dp = DiskPool::new(
            "p",
            DiskPoolSpec {
                node: "n".into(),
                disks: vec!["/dev/x".into()],
                topology: None,
            },
        );
        assert_eq!(
            pool_labels(&dp),
            [(CREATED_BY_KEY.to_owned(), CREATED_BY_VALUE.to_owned())].into()
        );
        dp.spec.topology = Some(PoolTopology {
            labelled: [("zone".to_owned(), "a".to_owned())].into(),
        });
        let labels = pool_labels(&dp);
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["zone"], "a");
    }

    #[test]
    fn status_follows_the_pool_state() {
        let mut pool = Pool {
            id: "p".into(),
            spec: None,
            state: Some(PoolState {
                node: "n".into(),
                id: "p".into(),
                disks: vec!["/dev/x".into()],
                status: openapi::models::PoolStatus::Degraded,
                capacity: 1000,
                used: 300,
                committed: 300,
            }),
        };
        let status = created_status(&pool);
        assert_eq!(status.cr_state, CrState::Created);
        assert_eq!(status.pool_status, Some(PoolStatus::Degraded));
        assert_eq!(
            (status.capacity, status.used, status.available),
            (1000, 300, 700)
        );
        pool.state = None;
        let status = created_status(&pool);
        assert_eq!(status.pool_status, Some(PoolStatus::Unknown));
        assert_eq!(status.capacity, 0);
    }
}
