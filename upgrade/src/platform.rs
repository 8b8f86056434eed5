//! What restarts the components: the one seam between the roll-out and
//! the place the cluster runs.
//!
//! The roll-out ([`crate::rollout`]) decides what to restart and waits for
//! the result through the REST API; a [`Platform`] only swaps a component
//! to the new version. [`local::LocalPlatform`] drives `mayastor-local`.
//! A Kubernetes platform implements the same trait: the control-plane
//! Deployments get the new images (`upgrade_control_plane`), and
//! `restart_engine` deletes the io-engine DaemonSet's pod of one node
//! (update strategy OnDelete) and waits for its replacement to be Ready;
//! `record_event` writes an Event ([`kubernetes::KubernetesPlatform`]).

pub mod kubernetes;
pub mod local;

use async_trait::async_trait;
use openapi::models::Versions;

use crate::progress::Progress;
use crate::Result;

/// A component upgraded before the io-engines, in upgrade order. The
/// store, the core agent and the REST API report their version over REST;
/// the others (Kubernetes only) are done when their workload has rolled
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    Store,
    Core,
    Rest,
    /// `agent-ha-cluster` (Deployment).
    HaCluster,
    /// `operator-diskpool` (Deployment).
    DiskPoolOperator,
    /// `csi-controller` (Deployment).
    CsiController,
    /// `csi-node` (DaemonSet, rolling update: the kernel's NVMe
    /// connections outlive the plugin).
    CsiNode,
    /// `agent-ha-node` (DaemonSet, rolling update).
    HaNode,
}

impl ControlPlane {
    /// Its version in `GET /versions`, for the components that report one.
    pub fn version_in(self, versions: &Versions) -> Option<&str> {
        match self {
            ControlPlane::Store => Some(&versions.store),
            ControlPlane::Core => Some(&versions.core),
            ControlPlane::Rest => Some(&versions.rest),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ControlPlane::Store => "store",
            ControlPlane::Core => "core agent",
            ControlPlane::Rest => "REST API",
            ControlPlane::HaCluster => "HA cluster agent",
            ControlPlane::DiskPoolOperator => "DiskPool operator",
            ControlPlane::CsiController => "CSI controller",
            ControlPlane::CsiNode => "CSI node plugin",
            ControlPlane::HaNode => "HA node agent",
        }
    }
}

/// Where the cluster runs.
#[async_trait]
pub trait Platform: Send + Sync {
    /// For messages, e.g. `local cluster in /path`.
    fn describe(&self) -> String;

    /// The version of the binaries (images) being rolled out; an error
    /// when they do not agree on one.
    async fn target_version(&self) -> Result<String>;

    /// The control-plane components this platform upgrades, in order (an
    /// external store is not one of them).
    fn control_plane(&self) -> Vec<ControlPlane>;

    /// Restarts one control-plane component on the new version; returns
    /// once it runs (the roll-out then waits for its version over REST,
    /// where it reports one). Waits show on `progress`.
    async fn upgrade_control_plane(
        &self,
        component: ControlPlane,
        progress: &Progress,
    ) -> Result<()>;

    /// Restarts the io-engine of `node` on the new version; returns once
    /// the new process runs. Does nothing when the node's engine already
    /// runs the new binaries (a retried or resumed step).
    async fn restart_engine(&self, node: &str, progress: &Progress) -> Result<()>;

    /// Records a step where the platform keeps events (Kubernetes).
    async fn record_event(&self, _reason: &str, _message: &str) {}
}
