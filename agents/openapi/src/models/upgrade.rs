//! Versions of the components and the durable record of a guided upgrade
//! (`GET /versions`, `GET|PUT|DELETE /upgrade-status`).
//!
//! The record is written by the upgrade tool (`kubectl mayastor upgrade`)
//! after every step, so an interrupted upgrade resumes where it stood and
//! `get upgrade-status` shows it. Times are RFC 3339 UTC strings.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Versions of the control plane's components (`GET /versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct Versions {
    /// The REST API server that answered.
    pub rest: String,
    /// The core agent.
    pub core: String,
    /// The store (etcd's version, or the embedded store's build).
    pub store: String,
}

/// Stage of an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum UpgradeStage {
    Validating,
    UpgradingControlPlane,
    UpgradingDataPlane,
    Successful,
    ValidationFailed,
    Failed,
}

impl UpgradeStage {
    /// Whether the upgrade has ended (successfully or refused by a
    /// validation); a `Failed` upgrade is unfinished: running `upgrade`
    /// again retries it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            UpgradeStage::Successful | UpgradeStage::ValidationFailed
        )
    }
}

impl std::fmt::Display for UpgradeStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Where one node (io-engine) stands in an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum NodeUpgradeState {
    /// Not started yet.
    Pending,
    /// Waiting for rebuilds and moving the published targets off it.
    Draining,
    /// Its engine is being restarted on the new version.
    Restarting,
    /// Waiting for its pools and replicas, and every volume Online.
    Rebuilding,
    /// On the new version, drain label removed.
    Upgraded,
    /// Did not come back in time (the drain label is left on it).
    Failed,
}

impl std::fmt::Display for NodeUpgradeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Progress of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeUpgradeStatus {
    pub node: String,
    pub state: NodeUpgradeState,
    /// The engine version when the upgrade found the node.
    pub from_version: String,
    /// When work on the node started (RFC 3339), if it has.
    pub started_at: Option<String>,
    /// When the node was done (RFC 3339), if it is.
    pub finished_at: Option<String>,
}

/// The durable record of the current or last upgrade
/// (`GET|PUT|DELETE /upgrade-status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeStatus {
    /// Version of the cluster when the upgrade started.
    pub from_version: String,
    /// Version of the binaries being rolled out.
    pub to_version: String,
    pub stage: UpgradeStage,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC, updated with every change.
    pub updated_at: String,
    /// Set when the upgrade ended (any final stage).
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Each storage node in roll-out order.
    #[serde(default)]
    pub nodes: Vec<NodeUpgradeStatus>,
    /// Why a validation refused or the upgrade failed.
    #[serde(default)]
    pub reason: Option<String>,
}

impl UpgradeStatus {
    /// Nodes already on the target version (`Upgraded`).
    pub fn upgraded_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.state == NodeUpgradeState::Upgraded)
            .count()
    }
}
