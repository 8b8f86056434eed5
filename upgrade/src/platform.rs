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
//! `record_event` writes an Event. The chart exists
//! (`deploy/helm/mayastor`); that platform is not written yet.

pub mod local;

use async_trait::async_trait;
use openapi::models::Versions;

use crate::Result;

/// A control-plane component, in upgrade order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    Store,
    Core,
    Rest,
}

impl ControlPlane {
    /// Its version in `GET /versions`.
    pub fn version_in(self, versions: &Versions) -> &str {
        match self {
            ControlPlane::Store => &versions.store,
            ControlPlane::Core => &versions.core,
            ControlPlane::Rest => &versions.rest,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ControlPlane::Store => "store",
            ControlPlane::Core => "core agent",
            ControlPlane::Rest => "REST API",
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
    /// once it runs (the roll-out then waits for its version over REST).
    async fn upgrade_control_plane(&self, component: ControlPlane) -> Result<()>;

    /// Restarts the io-engine of `node` on the new version; returns once
    /// the new process runs. Does nothing when the node's engine already
    /// runs the new binaries (a retried or resumed step).
    async fn restart_engine(&self, node: &str) -> Result<()>;

    /// Records a step where the platform keeps events (Kubernetes).
    async fn record_event(&self, _reason: &str, _message: &str) {}
}
