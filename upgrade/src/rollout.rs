//! The roll-out state machine: validate, upgrade the control plane, then
//! each storage node in turn; every step recorded (see [`crate::status`]).
//!
//! ```text
//! Validating ──► UpgradingControlPlane ──► UpgradingDataPlane ──► Successful
//!     │                    │                        │
//!     ▼                    └──────────► Failed ◄────┘   (`upgrade` again resumes)
//! ValidationFailed
//! ```
//!
//! Per node: Pending ──► Draining (wait for rebuilds, drain with
//! [`DRAIN_LABEL`]) ──► Restarting ──► Rebuilding (node Online on the
//! target version, its pools Online, every volume Online) ──► Upgraded
//! (label removed). A node whose engine already reports the target version
//! is never restarted. A failure leaves the node `Failed` with the drain
//! label on it, and the upgrade `Failed` with the reason.

use std::future::Future;
use std::time::{Duration, Instant};

use openapi::models::{
    Node, NodeStatus, NodeUpgradeState, PoolStatus, ReplicaStatus, UpgradeStage, UpgradeStatus,
    Versions, Volume, VolumeStatus,
};
use openapi::{CoreApi, ErrorKind};

use crate::platform::{ControlPlane, Platform};
use crate::progress::Progress;
use crate::status::{self, save, set_node, set_stage};
use crate::validate::{self, Skips};
use crate::version::{path_refusal, UNSUPPORTED_SOURCES};
use crate::{Result, UpgradeError, DRAIN_LABEL};

/// How often waits poll the REST API.
const POLL: Duration = Duration::from_millis(500);
/// How long a restarted node's volumes must stay Online before the next
/// step (a nexus notices a restarted child only at its next I/O).
const SETTLE: Duration = Duration::from_secs(3);

/// What to do and how long to wait (see [`crate::cli::UpgradeArgs`]).
#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    pub skip_data_plane_restart: bool,
    pub skips: Skips,
    pub control_plane_timeout: Duration,
    pub drain_timeout: Duration,
    pub node_timeout: Duration,
    pub rebuild_timeout: Duration,
}

/// Runs (or resumes) the upgrade to the platform's target version and
/// returns the final record; a dry run only validates and reports, and
/// returns `None` when the validations pass.
pub async fn run(
    api: &dyn CoreApi,
    platform: &dyn Platform,
    opts: &Options,
    progress: &Progress,
) -> Result<Option<UpgradeStatus>> {
    let target = platform.target_version().await?;
    progress.line(format!("Upgrading to {target} ({})", platform.describe()));
    let recorded = status::load(api).await?;
    let resume = match recorded {
        Some(r) if !r.stage.is_finished() && r.stage != UpgradeStage::Validating => {
            if r.to_version != target {
                return Err(UpgradeError::Input(format!(
                    "an unfinished upgrade to {} is recorded (stage {}); roll out the binaries of {} to finish it, or drop it with `kubectl mayastor delete upgrade --force`",
                    r.to_version, r.stage, r.to_version
                )));
            }
            Some(r)
        }
        _ => None,
    };

    let mut record = match resume {
        Some(r) => {
            progress.line(format!(
                "Resuming the upgrade from {} to {} started at {} (stage {}, {} of {} node(s) done); validations passed when it started",
                r.from_version,
                r.to_version,
                r.started_at,
                r.stage,
                r.upgraded_nodes(),
                r.nodes.len()
            ));
            if opts.dry_run {
                progress.line("Dry run: nothing changed.");
                return Ok(None);
            }
            r
        }
        None => match validate_fresh(api, &target, opts, progress).await? {
            Some(r) => r,
            None => return Ok(None),
        },
    };

    match roll_out(api, platform, opts, progress, &mut record).await {
        Ok(()) => Ok(Some(record)),
        Err(e) => {
            let reason = match &e {
                UpgradeError::Failed(reason) => reason.clone(),
                other => other.to_string(),
            };
            set_stage(&mut record, UpgradeStage::Failed, Some(reason.clone()));
            platform.record_event("UpgradeFailed", &reason).await;
            save(api, &mut record).await?;
            Err(UpgradeError::Failed(reason))
        }
    }
}

/// Validations of a fresh upgrade. A dry run prints them and the plan and
/// returns `Err(Refused)`, or `None` when they pass; otherwise the record
/// is created (and, on refusal, left `ValidationFailed`).
async fn validate_fresh(
    api: &dyn CoreApi,
    target: &str,
    opts: &Options,
    progress: &Progress,
) -> Result<Option<UpgradeStatus>> {
    let versions = api
        .get_versions()
        .await
        .map_err(UpgradeError::rest("cannot read the versions"))?;
    let from = versions.core.clone();
    let nodes = api
        .get_nodes()
        .await
        .map_err(UpgradeError::rest("cannot list nodes"))?;
    let volumes = all_volumes(api).await?;
    let checks = validate::run(
        path_refusal(&from, target, UNSUPPORTED_SOURCES),
        &nodes,
        &volumes,
        opts.skips,
    );
    for c in &checks {
        progress.line(format!("validation {}", c.line()));
    }
    let refusals: Vec<String> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| format!("{}: {}", c.name, c.problems.join(", ")))
        .collect();
    if opts.dry_run {
        print_plan(&versions, &nodes, target, opts, progress);
        if refusals.is_empty() {
            progress.line("Dry run: the validations pass; nothing changed.");
            return Ok(None);
        }
        return Err(UpgradeError::Refused(refusals));
    }
    let mut record = status::new_record(&from, target);
    save(api, &mut record).await?;
    if !refusals.is_empty() {
        set_stage(
            &mut record,
            UpgradeStage::ValidationFailed,
            Some(refusals.join("; ")),
        );
        save(api, &mut record).await?;
        return Err(UpgradeError::Refused(refusals));
    }
    Ok(Some(record))
}

fn print_plan(
    versions: &Versions,
    nodes: &[Node],
    target: &str,
    opts: &Options,
    progress: &Progress,
) {
    progress.line(format!(
        "Plan: control plane (store {}, core {}, REST {}) to {target}",
        versions.store, versions.core, versions.rest
    ));
    if opts.skip_data_plane_restart {
        progress.line("Plan: io-engines are not restarted (--skip-data-plane-restart)");
        return;
    }
    for n in storage_nodes(nodes) {
        let version = node_version(n);
        let what = if version == target {
            "already on the target version, not restarted"
        } else {
            "drained, restarted, undrained"
        };
        progress.line(format!("Plan: node {} ({version}): {what}", n.id));
    }
}

async fn roll_out(
    api: &dyn CoreApi,
    platform: &dyn Platform,
    opts: &Options,
    progress: &Progress,
    record: &mut UpgradeStatus,
) -> Result<()> {
    let target = record.to_version.clone();
    if record.stage != UpgradeStage::UpgradingDataPlane {
        set_stage(record, UpgradeStage::UpgradingControlPlane, None);
        save(api, record).await?;
        platform
            .record_event("UpgradingControlPlane", &format!("to {target}"))
            .await;
        for component in platform.control_plane() {
            upgrade_component(api, platform, opts, progress, component, &target).await?;
        }
    }
    if opts.skip_data_plane_restart {
        set_stage(
            record,
            UpgradeStage::Successful,
            Some("data plane restart skipped (--skip-data-plane-restart)".into()),
        );
        save(api, record).await?;
        progress.line("✓ control plane upgraded; io-engines left as they were");
        return Ok(());
    }
    set_stage(record, UpgradeStage::UpgradingDataPlane, None);
    if record.nodes.is_empty() {
        list_nodes(api, opts, progress, record).await?;
    }
    save(api, record).await?;
    platform
        .record_event("UpgradingDataPlane", &format!("to {target}"))
        .await;
    let order: Vec<String> = record.nodes.iter().map(|n| n.node.clone()).collect();
    let total = order.len();
    for (k, node) in order.iter().enumerate() {
        let label = format!("node {} of {total} ({node})", k + 1);
        upgrade_node(api, platform, opts, progress, record, node, &label).await?;
    }
    set_stage(record, UpgradeStage::Successful, None);
    save(api, record).await?;
    platform
        .record_event("UpgradeSuccessful", &format!("to {target}"))
        .await;
    progress.line(format!(
        "✓ upgrade to {target} successful: control plane and {total} node(s)"
    ));
    Ok(())
}

/// Enters the data plane: records every storage node `Pending` with its
/// version, once all of them are Online. A resumed upgrade keeps the list
/// it recorded (a node it stopped at may well be down).
async fn list_nodes(
    api: &dyn CoreApi,
    opts: &Options,
    progress: &Progress,
    record: &mut UpgradeStatus,
) -> Result<()> {
    // A restarted core agent knows the nodes from their specs at once and
    // their state when their engines register again.
    let nodes = wait_for(
        progress,
        "data plane: waiting for every node to be Online with the core agent",
        opts.node_timeout,
        || async {
            let nodes = api.get_nodes().await.map_err(|e| e.message)?;
            let missing: Vec<String> = storage_nodes(&nodes)
                .iter()
                .filter(|n| n.state.as_ref().map(|s| s.status) != Some(NodeStatus::Online))
                .map(|n| n.id.clone())
                .collect();
            if missing.is_empty() {
                Ok(Some(nodes))
            } else {
                Err(format!("not Online: {}", missing.join(", ")))
            }
        },
    )
    .await?;
    for n in storage_nodes(&nodes) {
        status::node_mut(record, &n.id, node_version(n));
    }
    Ok(())
}

async fn upgrade_component(
    api: &dyn CoreApi,
    platform: &dyn Platform,
    opts: &Options,
    progress: &Progress,
    component: ControlPlane,
    target: &str,
) -> Result<()> {
    let started = Instant::now();
    let versions = wait_for(
        progress,
        &format!("control plane: reading the {} version", component.name()),
        opts.control_plane_timeout,
        || async { api.get_versions().await.map(Some).map_err(|e| e.message) },
    )
    .await?;
    if component.version_in(&versions) == Some(target) {
        progress.line(format!("✓ {} already on {target}", component.name()));
        return Ok(());
    }
    progress.set(format!(
        "control plane: restarting the {}",
        component.name()
    ));
    platform
        .upgrade_control_plane(component, progress)
        .await
        .map_err(|e| UpgradeError::Failed(format!("{}: {e}", component.name())))?;
    if component.version_in(&versions).is_none() {
        progress.line(format!(
            "✓ {} rolled out on {target} in {} s",
            component.name(),
            started.elapsed().as_secs()
        ));
        return Ok(());
    }
    let what = format!(
        "control plane: waiting for the {} to answer on {target}",
        component.name()
    );
    wait_for(progress, &what, opts.control_plane_timeout, || async {
        let v = api.get_versions().await.map_err(|e| e.message)?;
        match component.version_in(&v) {
            Some(v) if v == target => Ok(Some(())),
            v => Err(format!("it reports {}", v.unwrap_or("no version"))),
        }
    })
    .await?;
    progress.line(format!(
        "✓ {} upgraded to {target} in {} s",
        component.name(),
        started.elapsed().as_secs()
    ));
    Ok(())
}

async fn upgrade_node(
    api: &dyn CoreApi,
    platform: &dyn Platform,
    opts: &Options,
    progress: &Progress,
    record: &mut UpgradeStatus,
    node: &str,
    label: &str,
) -> Result<()> {
    let target = record.to_version.clone();
    let state = record
        .nodes
        .iter()
        .find(|n| n.node == node)
        .map_or(NodeUpgradeState::Pending, |n| n.state);
    if state == NodeUpgradeState::Upgraded {
        return Ok(());
    }
    let current = api
        .get_node(node)
        .await
        .map_err(UpgradeError::rest(format!("cannot read node {node}")))?;
    let on_target = current
        .state
        .as_ref()
        .is_some_and(|s| s.status == NodeStatus::Online && s.version == target);
    let started = Instant::now();
    if on_target && state == NodeUpgradeState::Pending {
        set_node(record, node, NodeUpgradeState::Upgraded);
        save(api, record).await?;
        progress.line(format!("✓ {label}: already on {target}, not restarted"));
        return Ok(());
    }
    if !on_target {
        set_node(record, node, NodeUpgradeState::Draining);
        save(api, record).await?;
        wait_for(
            progress,
            &format!("{label}: waiting for rebuilds to finish"),
            opts.rebuild_timeout,
            || async {
                let volumes = all_volumes(api).await.map_err(|e| e.to_string())?;
                let busy = validate::rebuilds_in_progress(&volumes);
                if busy.is_empty() {
                    Ok(Some(()))
                } else {
                    Err(busy.join(", "))
                }
            },
        )
        .await
        .map_err(|e| fail_reason(node, e))?;
        api.put_node_drain(node, DRAIN_LABEL).await.map_err(|e| {
            UpgradeError::Failed(format!("node {node}: cannot drain: {}", e.message))
        })?;
        wait_for(
            progress,
            &format!("{label}: moving volume targets off the node"),
            opts.drain_timeout,
            || async {
                let n = api.get_node(node).await.map_err(|e| e.message)?;
                let drained = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.cordon_drain_state.drain_status)
                    == Some(openapi::models::DrainStatus::Drained);
                if drained {
                    Ok(Some(()))
                } else {
                    Err("targets still on the node".into())
                }
            },
        )
        .await
        .map_err(|e| fail_reason(node, e))?;
        set_node(record, node, NodeUpgradeState::Restarting);
        save(api, record).await?;
        progress.set(format!("{label}: restarting the io-engine"));
        if let Err(e) = platform.restart_engine(node, progress).await {
            return Err(fail_node(api, record, node, e.to_string()).await);
        }
        let back = wait_for(
            progress,
            &format!("{label}: waiting for the engine to be Online on {target}"),
            opts.node_timeout,
            || async {
                let n = api.get_node(node).await.map_err(|e| e.message)?;
                match n.state {
                    Some(s) if s.status == NodeStatus::Online && s.version == target => {
                        Ok(Some(()))
                    }
                    Some(s) => Err(format!("it is {:?} on version {}", s.status, s.version)),
                    None => Err("it has not registered".into()),
                }
            },
        )
        .await;
        if let Err(e) = back {
            let reason = format!(
                "the io-engine did not come back on {target}: {}",
                fail_text(e)
            );
            return Err(fail_node(api, record, node, reason).await);
        }
    }
    set_node(record, node, NodeUpgradeState::Rebuilding);
    save(api, record).await?;
    let online_since: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
    let waited = wait_for(
        progress,
        &format!("{label}: waiting for its pools, replicas and every volume to be Online"),
        opts.rebuild_timeout,
        || {
            let since = &online_since;
            async move {
                match settled(api, node).await {
                    Ok(()) => {
                        let at = since.get().unwrap_or_else(Instant::now);
                        since.set(Some(at));
                        if at.elapsed() >= SETTLE {
                            Ok(Some(()))
                        } else {
                            Err("online, settling".into())
                        }
                    }
                    Err(why) => {
                        since.set(None);
                        Err(why)
                    }
                }
            }
        },
    )
    .await;
    if let Err(e) = waited {
        let reason = format!("volumes did not recover: {}", fail_text(e));
        return Err(fail_node(api, record, node, reason).await);
    }
    match api.del_node_cordon(node, DRAIN_LABEL).await {
        Ok(_) => {}
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => {
            let reason = format!("cannot remove the drain label: {}", e.message);
            return Err(fail_node(api, record, node, reason).await);
        }
    }
    set_node(record, node, NodeUpgradeState::Upgraded);
    save(api, record).await?;
    platform
        .record_event("NodeUpgraded", &format!("{node} on {target}"))
        .await;
    progress.line(format!(
        "✓ {label}: upgraded to {target} in {} s",
        started.elapsed().as_secs()
    ));
    Ok(())
}

/// The node's pools and replicas are Online and every volume is Online;
/// the error says what is still missing, with rebuild percentages.
async fn settled(api: &dyn CoreApi, node: &str) -> std::result::Result<(), String> {
    let pools = api.get_node_pools(node).await.map_err(|e| e.message)?;
    let pools_down: Vec<String> = pools
        .iter()
        .filter(|p| p.state.as_ref().map(|s| s.status) != Some(PoolStatus::Online))
        .map(|p| format!("pool {} not Online", p.id))
        .collect();
    if !pools_down.is_empty() {
        return Err(pools_down.join(", "));
    }
    let specs = api.get_specs().await.map_err(|e| e.message)?;
    let replicas = api.get_replicas().await.map_err(|e| e.message)?;
    let missing: Vec<String> = specs
        .replicas
        .iter()
        .filter(|r| r.node == node)
        .filter(|r| {
            !replicas
                .iter()
                .any(|o| o.uuid == r.uuid && o.status == ReplicaStatus::Online)
        })
        .map(|r| format!("replica {} not back", r.uuid))
        .collect();
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    let volumes = all_volumes(api).await.map_err(|e| e.to_string())?;
    let rebuilding = validate::rebuilds_in_progress(&volumes);
    if !rebuilding.is_empty() {
        return Err(rebuilding.join(", "));
    }
    let not_online: Vec<String> = volumes
        .iter()
        .filter(|v| v.state.status != VolumeStatus::Online)
        .map(|v| format!("volume {} {:?}", v.spec.uuid, v.state.status))
        .collect();
    if not_online.is_empty() {
        Ok(())
    } else {
        Err(not_online.join(", "))
    }
}

/// Marks the node and the upgrade Failed (drain label left on the node).
async fn fail_node(
    api: &dyn CoreApi,
    record: &mut UpgradeStatus,
    node: &str,
    reason: String,
) -> UpgradeError {
    set_node(record, node, NodeUpgradeState::Failed);
    let reason = format!(
        "node {node}: {reason} (the drain label {DRAIN_LABEL} is left on it; run `kubectl mayastor upgrade` again to retry)"
    );
    set_stage(record, UpgradeStage::Failed, Some(reason.clone()));
    match save(api, record).await {
        Ok(()) => UpgradeError::Failed(reason),
        Err(e) => e,
    }
}

fn fail_text(e: UpgradeError) -> String {
    match e {
        UpgradeError::Failed(r) => r,
        other => other.to_string(),
    }
}

fn fail_reason(node: &str, e: UpgradeError) -> UpgradeError {
    UpgradeError::Failed(format!("node {node}: {}", fail_text(e)))
}

/// Polls `probe` until it gives `Some`, showing `what` and the probe's
/// last complaint; `Failed` with both after `timeout`.
pub(crate) async fn wait_for<T, F, Fut>(
    progress: &Progress,
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::new(),
            Err(why) => why,
        };
        progress.set(if last.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {last}")
        });
        if Instant::now() >= deadline {
            return Err(UpgradeError::Failed(format!(
                "timed out after {} s {}{}",
                timeout.as_secs(),
                what.split_once(": ").map_or(what, |(_, w)| w),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(" ({last})")
                }
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Nodes that run an engine (registered now or known from their spec),
/// sorted by id.
fn storage_nodes(nodes: &[Node]) -> Vec<&Node> {
    let mut out: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.state.is_some() || n.spec.is_some())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn node_version(node: &Node) -> &str {
    node.state.as_ref().map_or("", |s| s.version.as_str())
}

/// Every volume, page by page.
async fn all_volumes(api: &dyn CoreApi) -> Result<Vec<Volume>> {
    api.all_volumes(500)
        .await
        .map_err(UpgradeError::rest("cannot list volumes"))
}
